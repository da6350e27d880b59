"""The viewer's wire format (widgets/_serialization.py), without a widget: the codec round trip."""

import numpy as np
import pytest

from empanada_nb.widgets import _serialization as S
from empanada_nb.widgets import label_color
from empanada_nb.widgets._serialization import decode_labels, encode_labels


@pytest.mark.parametrize("kind", ["runs", "blocks", "noise", "big ids", "empty"])
def test_label_encoding_round_trip(kind, rng):
    a = {
        "runs": np.repeat(np.arange(40, dtype=np.uint32), 500).reshape(100, 200),
        "blocks": np.kron(rng.integers(0, 300, (20, 20)), np.ones((2, 3), int)).astype(np.int64),
        "noise": rng.integers(0, 60000, (64, 64)).astype(np.uint32),
        "big ids": np.full((8, 8), 2**40 + 5, np.uint64),
        "empty": np.zeros((0, 5), np.uint8),
    }[kind]
    meta, buf = encode_labels(a)
    np.testing.assert_array_equal(decode_labels(meta, buf), a.ravel())
    assert meta["encoding"] == {"runs": "rle", "blocks": "zlib", "noise": "raw", "big ids": "rle", "empty": "raw"}[kind]
    assert (
        meta["dtype"]
        == {"runs": "uint8", "blocks": "uint16", "noise": "uint16", "big ids": "float64", "empty": "uint8"}[kind]
    )


def test_label_color_is_stable():
    assert label_color(1) == label_color(1)
    assert label_color(1) != label_color(2)
    assert all(0 <= c <= 255 for c in label_color(2**40 + 3))


def test_transfer_dtypes_and_row_chunks():
    assert [S.display_dtype(np.dtype(d)) for d in ("uint8", "uint16", "int16", "float64", "bool")] == [
        "uint8",
        "uint16",
        "float32",
        "float32",
        "float32",
    ]
    ids = {255: "uint8", 256: "uint16", 65535: "uint16", 65536: "uint32", 2**32: "float64"}
    for hi, want in ids.items():
        assert S.label_transfer_dtype(np.array([0, hi], np.int64)) == want
    assert S.label_transfer_dtype(np.array([-1, 3])) == "float64"
    for h, row_bytes in ((1, 10), (7, S.CHUNK_BYTES // 3), (100, S.CHUNK_BYTES * 2)):
        chunks = S.row_chunks(h, row_bytes)
        assert chunks[0][0] == 0 and chunks[-1][1] == h
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))  # contiguous, no gaps
        assert all((r1 - r0) * row_bytes <= S.CHUNK_BYTES or r1 - r0 == 1 for r0, r1 in chunks)


def test_image_and_label_parts_reassemble_the_slice(monkeypatch, rng):
    monkeypatch.setattr(S, "CHUNK_BYTES", 1000)
    img = rng.normal(size=(50, 40)).astype(np.float64)
    lab = np.zeros((50, 40), np.uint32)
    lab[5:30, 3:20] = 300
    parts = S.image_parts(img)
    assert len(parts) == parts[0][0]["nchunks"] > 1 and all(len(b) <= 1000 for _, b in parts)
    out = np.zeros(img.shape, np.float32)
    for m, b in parts:
        out[m["row0"] : m["row0"] + m["rows"]] = np.frombuffer(b, m["dtype"]).reshape(m["rows"], 40)
    np.testing.assert_array_equal(out, img.astype(np.float32))
    parts = S.label_parts(lab, (50, 40), layer=3, version=2)
    assert {m["dtype"] for m, _ in parts} == {"uint16"}  # one dtype, although some chunks are all 0
    back = np.concatenate([S.decode_labels(m, b).reshape(m["rows"], 40) for m, b in parts])
    np.testing.assert_array_equal(back, lab)
    assert all(m["layer"] == 3 and m["version"] == 2 for m, _ in parts)
    ((m, b),) = S.label_parts(np.zeros((50, 40), np.uint8), (50, 40), 3, 2)
    assert m["empty"] and b is None


def test_group_parts_keeps_messages_small():
    parts = [({"i": i}, b"x" * n) for i, n in enumerate([3, 3, 5, 1])]
    groups = S.group_parts(parts, max_bytes=6)
    assert [[m["i"] for m, _ in g] for g in groups] == [[0, 1], [2, 3]]
    assert S.group_parts([]) == [[]]


def test_update_messages_round_trip():
    where = {"axis": "xz", "index": 4, "r0": 2, "c0": 3, "h": 2, "w": 2}
    patch = np.array([[1, 2], [70000, 0]], np.uint32)
    msg, buf = S.patch_update(7, 9, where, patch, stroke=5)
    assert {k: msg[k] for k in ("type", "layer", "version", "scope", "full", "stroke")} == {
        "type": "labels_update",
        "layer": 7,
        "version": 9,
        "scope": "slice",
        "full": False,
        "stroke": 5,
    }
    assert {k: msg[k] for k in where} == where
    np.testing.assert_array_equal(S.decode_labels(msg, buf).reshape(2, 2), patch)
    view = np.zeros((6, 8), np.uint16)
    view[1:3] = 4
    msg, bufs = S.full_update(7, 9, "xy", 0, (6, 8), view)
    assert msg["scope"] == "all" and msg["full"] and msg["shape"] == [6, 8]
    np.testing.assert_array_equal(S.decode_labels(msg, bufs[0]).reshape(6, 8), view)
    assert S.noop_update(7, 9, "xy", 0, 11) == {
        "type": "labels_update",
        "layer": 7,
        "version": 9,
        "scope": "none",
        "full": False,
        "axis": "xy",
        "index": 0,
        "stroke": 11,
        "noop": True,
    }


def test_incompressible_full_update_is_fetched_in_chunks(monkeypatch, rng):
    monkeypatch.setattr(S, "MAX_MESSAGE_BYTES", 1000)
    noise = rng.integers(0, 2**20, (40, 40)).astype(np.uint32)
    msg, bufs = S.full_update(1, 1, "xy", 0, (40, 40), noise)
    assert msg["stale"] and not msg["full"] and bufs == []
