"""Viewer state and messages, driven by calling the message handler with fake browser content."""

import json

import numpy as np
import pytest

from empanada_nb.widgets import Viewer
from empanada_nb.widgets import _serialization as ser_mod
from empanada_nb.widgets._serialization import decode_labels


class Recorder:
    def __init__(self, widget):
        self.msgs = []
        widget.send = self.send

    def send(self, content, buffers=None):
        self.msgs.append((content, [bytes(b) for b in (buffers or [])]))

    def of(self, kind):
        return [(c, b) for c, b in self.msgs if c["type"] == kind]

    def clear(self):
        self.msgs.clear()


def msg(v, **content):
    v._on_custom_msg(v, content, [])


@pytest.fixture
def vol(rng):
    return rng.integers(0, 255, size=(12, 64, 96)).astype(np.uint8)


@pytest.fixture
def viewer(vol):
    lab = np.zeros(vol.shape, np.uint32)
    lab[3, 10:20, 10:20] = 5
    v = Viewer(vol, labels=lab)
    v._rec = Recorder(v)
    return v


# ------------------------------------------------------------------------------------------- viewer


def test_viewer_initial_state(viewer, vol):
    v = viewer
    assert v.shape == [12, 64, 96] and v.ndim == 3 and v.dtype == "uint8"
    assert v.slice_index == 6 and v.axis == "xy" and v.picks == [] and v.regions == []
    assert v.contrast_limits == [0.0, 255.0]
    assert [l["name"] for l in v.layers] == ["labels"] and v.active_layer == v.label_layers[0].uid
    assert "export default" in str(v._esm) and ".enb-viewer" in str(v._css)
    # no pixel data in synced state
    state = v.get_state()
    assert len(json.dumps({k: val for k, val in state.items() if k not in ("_esm", "_css")}, default=str)) < 5000
    v.axis = "yz"
    v.slice_index = 500
    assert v.slice_index == 95
    with pytest.raises(Exception):
        v.axis = "zz"


def test_viewer_2d_and_dtypes(rng):
    img = rng.normal(100, 20, size=(50, 40)).astype(np.float32)
    v = Viewer(img)
    assert v.ndim == 2 and v.shape == [1, 50, 40] and v.dtype == "float32"
    lo, hi = v.contrast_limits
    assert 20 < lo < 100 < hi < 180
    with pytest.raises(ValueError):
        Viewer(img, axis="xz")
    u16 = rng.integers(1000, 3000, size=(3, 20, 20)).astype(np.uint16)
    v = Viewer(u16)
    assert 1000 <= v.contrast_limits[0] < v.contrast_limits[1] <= 3000
    rec = Recorder(v)
    msg(v, type="get", rid=1, axis="xy", index=1, image=True, layers=[])
    ((c, bufs),) = rec.msgs
    assert c["parts"][0]["dtype"] == "uint16"
    np.testing.assert_array_equal(np.frombuffer(bufs[0], np.uint16).reshape(20, 20), u16[1])
    v = Viewer(rng.integers(-5, 5, size=(2, 8, 8)).astype(np.int16))
    rec = Recorder(v)
    msg(v, type="get", rid=1, axis="xy", index=0, image=True, layers=[])
    assert rec.msgs[0][0]["parts"][0]["dtype"] == "float32"


def test_get_sends_binary_slices(viewer, vol):
    v, rec = viewer, viewer._rec
    uid = v.label_layers[0].uid
    msg(v, type="get", rid=7, axis="xy", index=3, image=True, layers=[uid])
    ((c, bufs),) = rec.msgs
    assert c["type"] == "data" and c["rid"] == 7 and c["last"] and c["axis"] == "xy" and c["index"] == 3
    img, lab = c["parts"]
    assert img["kind"] == "image" and img["shape"] == [64, 96] and len(bufs[0]) == 64 * 96
    np.testing.assert_array_equal(np.frombuffer(bufs[0], np.uint8).reshape(64, 96), vol[3])
    assert lab["kind"] == "labels" and lab["encoding"] == "rle" and lab["dtype"] == "uint8" and lab["version"] >= 1
    assert len(bufs[1]) < 200  # 21 runs
    got = decode_labels(lab, bufs[1]).reshape(64, 96)
    assert (got == 5).sum() == 100
    rec.clear()
    msg(v, type="get", rid=8, axis="xz", index=15, image=False, layers=[uid])
    ((c, bufs),) = rec.msgs
    assert [p["kind"] for p in c["parts"]] == ["labels"] and c["parts"][0]["shape"] == [12, 96]
    rec.clear()
    msg(v, type="get", rid=9, axis="xy", index=0, image=False, layers=[uid])  # empty slice: no buffer
    ((c, bufs),) = rec.msgs
    assert c["parts"][0]["empty"] and bufs == []


def test_big_slices_are_split_into_small_messages(monkeypatch, rng):
    monkeypatch.setattr(ser_mod, "CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(ser_mod, "MAX_MESSAGE_BYTES", 200 * 1024)
    img = rng.random((2, 512, 512)).astype(np.float32)  # 1 MiB a slice
    lab = rng.integers(0, 2**20, size=img.shape).astype(np.uint32)  # incompressible
    lab[1, :8] = 1  # the first chunk alone would fit in uint8
    v = Viewer(img, labels=lab)
    rec = Recorder(v)
    msg(v, type="get", rid=1, axis="xy", index=1, image=True, layers=[v.label_layers[0].uid])
    assert len(rec.msgs) > 5
    assert all(sum(len(b) for b in bufs) <= 200 * 1024 for _, bufs in rec.msgs)
    assert [c["last"] for c, _ in rec.msgs] == [False] * (len(rec.msgs) - 1) + [True]
    out = np.zeros((512, 512), np.float32)
    labs = np.zeros((512, 512), np.uint32)
    for c, bufs in rec.msgs:
        assert len(c["parts"]) == len(bufs)
        for p, b in zip(c["parts"], bufs):
            if p["kind"] == "image":
                out[p["row0"] : p["row0"] + p["rows"]] = np.frombuffer(b, np.float32).reshape(p["rows"], 512)
            else:
                assert p["encoding"] == "raw"  # noise: neither runs nor zlib pay off
                labs[p["row0"] : p["row0"] + p["rows"]] = decode_labels(p, b).reshape(-1, 512)
    np.testing.assert_array_equal(out, img[1])
    np.testing.assert_array_equal(labs, lab[1])


def test_pick_messages(viewer):
    v = viewer
    msg(v, type="pick", axis="xy", index=4, row=30.6, col=50.2)
    msg(v, type="pick", axis="xz", index=10, row=5, col=20)
    assert isinstance(v.picks, list)
    assert v.picks[0] == {"axis": "xy", "z": 4, "y": 32, "x": 50, "size": 256} or v.picks[0]["size"] == 256
    v.patch_size = 16
    msg(v, type="pick", axis="xy", index=4, row=30.6, col=50.2)
    assert v.picks[-1] == {"axis": "xy", "z": 4, "y": 30, "x": 50, "size": 16}
    assert v.picks[1]["axis"] == "xz" and v.picks[1]["y"] == 10
    msg(v, type="delete_pick", i=0)
    assert len(v.picks) == 2 and v.picks[0]["axis"] == "xz"
    msg(v, type="clear_picks")
    assert v.picks == []
    v.picks = [{"axis": "xy", "z": 1, "y": 0, "x": 0, "size": 16, "note": "mine"}]
    assert v.picks[0]["y"] == 8 and v.picks[0]["note"] == "mine"  # clamped, extra keys kept


def test_regions_and_random_picks(viewer):
    v = viewer
    v.patch_size = 16
    msg(v, type="region", shape="rectangle", axis="xy", index=2, points=[[0, 0], [32, 48]])
    msg(v, type="region", shape="polygon", axis="xy", index=5, points=[[10, 10], [10, 60], [50, 60], [50, 10]])
    assert [r["name"] for r in v.regions] == ["region 1", "region 2"]
    assert v.regions[0] == {
        "name": "region 1",
        "axis": "xy",
        "slice": 2,
        "shape": "rectangle",
        "points": [[0.0, 0.0], [32.0, 48.0]],
        "all_slices": False,
    }
    m = v.context_mask()
    assert m.shape == (12, 64, 96) and m.dtype == bool
    assert m[2].sum() == 32 * 48 and m[5].sum() == 40 * 50 and m.sum() == 32 * 48 + 40 * 50
    assert v.context_mask("region 1").sum() == 32 * 48
    assert set(v.region_masks()) == {"region 1", "region 2"}
    assert v.slice_roi("xy", 2).sum() == 32 * 48 and v.slice_roi("xy", 3).sum() == 0
    assert v.roi() is None
    v.confine_to_regions = True
    assert v.roi().sum() == m.sum()
    msg(v, type="random_picks", n=6)
    assert len(v.picks) == 6 and "added 6" in v.message
    zs = [p["z"] for p in v.picks]
    assert sum(z == 5 for z in zs) == 3  # three per region
    msg(v, type="update_region", i=0, name="cells", all_slices=True)
    assert v.regions[0]["name"] == "cells" and v.context_mask("cells").sum() == 12 * 32 * 48
    msg(v, type="delete_region", i=1)
    assert [r["name"] for r in v.regions] == ["cells"]
    v.regions = []
    v.fill_random_picks(2, seed=0)  # without regions: the current slice
    assert len(v.picks) == 8 and all(p["z"] == v.slice_index for p in v.picks[-2:])


def test_context_mask_2d(rng):
    v = Viewer(rng.random((40, 50)))
    assert v.context_mask().shape == (40, 50) and not v.context_mask().any()
    v.add_region([[0, 0], [10, 10]], shape="rectangle")
    assert v.context_mask().sum() == 100


def test_stroke_fill_undo_redo_messages(viewer):
    v, rec = viewer, viewer._rec
    lab = v.label_layers[0].data
    uid = v.label_layers[0].uid
    version = v.layers[0]["version"]
    msg(
        v,
        type="stroke",
        stroke=11,
        layer=uid,
        axis="xy",
        index=3,
        points=[[40, 40], [40, 70]],
        size=6,
        label=9,
        erase=False,
    )
    assert (lab[3] == 9).sum() > 150 and (lab[2] == 9).sum() == 0
    ((c, bufs),) = rec.of("labels_update")
    assert c["stroke"] == 11 and c["scope"] == "slice" and not c["full"] and c["version"] == version + 1
    patch = decode_labels(c, bufs[0]).reshape(c["h"], c["w"])
    np.testing.assert_array_equal(patch, lab[3, c["r0"] : c["r0"] + c["h"], c["c0"] : c["c0"] + c["w"]])
    assert v.layers[0]["version"] == version + 1 and v.can_undo
    assert len(bufs[0]) < 2000  # a small patch, not the slice
    rec.clear()
    msg(v, type="stroke", stroke=12, layer=uid, axis="xy", index=3, points=[[40, 50]], size=4, label=0, erase=True)
    assert (lab[3, 39:42, 49:52] == 0).all()
    msg(v, type="fill", layer=uid, axis="xy", index=3, row=15, col=15, label=6)
    assert (lab[3] == 6).sum() == 100 and (lab[3] == 5).sum() == 0
    msg(v, type="undo")
    assert (lab[3] == 5).sum() == 100
    msg(v, type="undo")
    assert (lab[3, 39:42, 49:52] == 9).all()
    msg(v, type="redo")
    assert (lab[3, 39:42, 49:52] == 0).all()
    undo_updates = rec.of("labels_update")
    assert len(undo_updates) == 5 and all(c["scope"] == "slice" for c, _ in undo_updates)
    # nothing painted (outside the image): the browser is told to drop its preview
    rec.clear()
    msg(v, type="stroke", stroke=13, layer=uid, axis="xy", index=3, points=[[-100, -100]], size=2, label=1)
    ((c, _),) = rec.of("labels_update")
    assert c["noop"] and c["stroke"] == 13


def test_many_undo_steps(viewer):
    v = viewer
    lab = v.label_layers[0].data
    for k in range(25):
        v.paint([[k + 0.5, 80.5]], size=1, label=k + 100, index=0)
    assert (lab[0, :25, 80] > 0).all()
    for _ in range(25):
        assert v.undo()
    assert not lab[0, :25, 80].any()
    assert not v.undo() and v.message == "nothing to undo"


def test_layers_and_new_label(viewer, vol):
    v, rec = viewer, viewer._rec
    pred = np.zeros(vol.shape, np.int32)
    pred[0, 0, 0] = 41
    layer = v.add_labels(pred, name="labels")
    assert layer.name == "labels [1]" and len(v.layers) == 2
    assert v.active_layer == v.label_layers[0].uid  # the first layer stays the edited one
    assert v.layer("labels [1]") is layer and v.layer(1) is layer
    msg(v, type="layer", layer=layer.uid, opacity=0.25, visible=False)
    assert v.layers[1]["opacity"] == 0.25 and v.layers[1]["visible"] is False
    msg(v, type="new_label")
    assert v.current_label == 6
    v.active_layer = layer.uid
    msg(v, type="new_label")
    assert v.current_label == 42
    with pytest.raises(ValueError):
        v.add_labels(np.zeros((3, 3), np.uint8))
    rec.clear()
    pred[2] = 3
    v.refresh("labels [1]")
    ((c, bufs),) = rec.of("labels_update")
    assert c["full"] and c["scope"] == "all" and c["index"] == v.slice_index
    v.set_labels("preview", np.ones((64, 96), np.uint8), plane=("xy", 6), editable=False)
    assert v.layer("preview").plane == ("xy", 6)
    v.remove_labels("preview")
    msg(v, type="new_layer")
    assert v.layers[-1]["name"] == "labels [2]" and v.active_layer == v.label_layers[-1].uid


def test_paint_without_layers_creates_one(vol):
    v = Viewer(vol)
    Recorder(v)
    assert v.labels is None
    msg(v, type="stroke", stroke=1, layer=None, axis="xy", index=1, points=[[5, 5]], size=3, label=2)
    assert v.labels is not None and v.labels.shape == vol.shape and v.labels[1, 5, 5] == 2


def test_proofreading_messages(viewer):
    v = viewer
    pytest.importorskip("empanada_nb.labels")
    assert set(v.proofreading) >= {"merge", "delete", "split", "morph", "filter"}
    lab = v.label_layers[0].data
    lab[3, 30:40, 30:40] = 7
    v.refresh()
    sel = [
        {"id": 5, "axis": "xy", "index": 3, "row": 15, "col": 15},
        {"id": 7, "axis": "xy", "index": 3, "row": 35, "col": 35},
    ]
    msg(v, type="proofread", op="merge", selection=sel, axis="xy", index=3, scope="slice")
    assert (lab[3] == 5).sum() == 200 and "merged" in v.message
    msg(v, type="undo")
    assert (lab[3] == 7).sum() == 100
    msg(v, type="proofread", op="delete", selection=sel[1:], axis="xy", index=3, scope="volume")
    assert (lab == 7).sum() == 0
    msg(v, type="proofread", op="morph", selection=sel[:1], axis="xy", index=3, scope="slice", morph="dilate", radius=2)
    assert (lab[3] == 5).sum() > 100
    msg(v, type="proofread", op="filter", selection=[], axis="xy", index=3, scope="volume", min_size=1000)
    assert not lab.any()
    msg(v, type="undo")
    assert lab.any()
    # split two touching squares joined by a thin bridge
    lab[:] = 0
    lab[6, 5:25, 5:25] = 3
    lab[6, 5:25, 40:60] = 3
    lab[6, 14:16, 25:40] = 3
    v.refresh()
    msg(v, type="proofread", op="split", selection=[{"id": 3}], axis="xy", index=6, scope="slice")
    assert len(np.unique(lab[6])) == 3 and "split" in v.message
    msg(v, type="proofread", op="merge", selection=[{"id": 3}], axis="xy", index=6, scope="slice")
    assert "select at least two" in v.message


def test_label_tool_messages(viewer, tmp_path):
    v = viewer
    lab = v.label_layers[0].data
    # markers split one square into two along the column between them (volume scope: z, y, x)
    lab[5, 30:40, 30:50] = 8
    v.refresh()
    msg(v, type="marker", axis="xy", index=5, row=35, col=32)
    msg(v, type="proofread", op="split", selection=[], axis="xy", index=5, scope="volume")
    assert "at least two markers" in v.message and (lab == 8).sum() == 200
    msg(v, type="marker", axis="xy", index=5, row=35, col=47)
    msg(v, type="proofread", op="split", selection=[], axis="xy", index=5, scope="volume")
    assert lab[5, 35, 32] == 8 and lab[5, 35, 47] not in (0, 8) and v.markers == []
    # jump: first slice along the shown axis, centred; next free id of a class
    msg(v, type="jump", label=8)
    assert v.slice_index == 5 and v._rec.of("goto")[-1][0]["center"][0] == 34.5
    msg(v, type="jump", label=99)
    assert "not in layer" in v.message
    msg(v, type="new_label", class_id=2)
    assert "label_divisor" in v.message
    v.label_divisor = 1000
    lab[0, 0, 0] = 2003
    msg(v, type="new_label", class_id=2)
    assert v.current_label == 2004
    # counts and export; filter with border shares the one undo history
    msg(v, type="count_labels", per_slice=True)
    assert [(r["slice"], r["class"]) for r in v.label_counts] == [(0, 2), (3, 0), (5, 0)]
    msg(v, type="export_counts", path=str(tmp_path / "n.csv"))
    assert (tmp_path / "n.csv").read_text().count("\n") == 4
    msg(v, type="proofread", op="filter", selection=[], scope="volume", min_size=1, remove_border=True)
    assert lab[0, 0, 0] == 0 and (lab == 5).any()
    msg(v, type="undo")
    assert lab[0, 0, 0] == 2003
    # with a divisor, split pieces stay in their class
    lab[7, 30:40, 30:50] = 1001
    v.refresh()
    v.add_marker("xy", 7, 35, 32)
    v.add_marker("xy", 7, 35, 47)
    assert v.proofread("split", index=7)
    assert lab[7, 35, 32] == 1001 and lab[7, 35, 47] == 1002


def test_save_patches_from_viewer(viewer, tmp_path):
    v = viewer
    with pytest.raises(ValueError, match="no picks"):
        v.save_patches(tmp_path)
    v.patch_size = 32
    v.add_pick("xy", 3, 15, 15)
    v.add_pick("xy", 8, 40, 40)
    res = v.save_patches(tmp_path, name="ds")
    assert len(res["written"]) == 2
    import tifffile as tf

    m = tf.imread(tmp_path / "ds" / "masks" / res["written"][0])
    assert (m == 5).sum() == 100
    msg(v, type="save_patches", dataset_dir=str(tmp_path), name="ds")
    assert "skipped 2" in v.message and v.dataset_dir == str(tmp_path)
    msg(v, type="save_patches", dataset_dir="", name="ds")  # no folder given
    v.dataset_dir = ""
    msg(v, type="save_patches", dataset_dir="", name="ds")
    assert "enter a dataset folder" in v.message


def test_errors_reach_the_status_line(viewer):
    v = viewer
    msg(v, type="delete_pick", i=5)
    assert v.message.startswith("delete_pick failed")
    msg(v, type="no_such_message")  # ignored


def test_set_slice_is_one_undoable_slice_edit(viewer):
    v, rec = viewer, viewer._rec
    lab = v.labels
    old = lab[:, 15].copy()  # an xz slice: rows z, columns x
    new = old.copy()
    new[2:4, 50:60] = 8
    assert v.set_slice("labels", "xz", 15, new, description="wrote xz 15")
    np.testing.assert_array_equal(lab[:, 15], new)
    assert v.message == "wrote xz 15" and v.can_undo
    ((c, bufs),) = rec.of("labels_update")
    box = (c["axis"], c["index"], c["r0"], c["c0"], c["h"], c["w"])
    assert c["scope"] == "slice" and box == ("xz", 15, 2, 50, 2, 10)  # only the changed box travels
    assert not v.set_slice("labels", "xz", 15, new.copy())  # unchanged: no step
    v.undo()
    np.testing.assert_array_equal(lab[:, 15], old)
    v.redo()
    np.testing.assert_array_equal(lab[:, 15], new)
    with pytest.raises(ValueError, match="do not match"):
        v.set_slice("labels", "xy", 0, np.zeros((3, 3), np.uint32))


def test_goto_sends_message(viewer):
    v, rec = viewer, viewer._rec
    v.goto("xz", 20, center=(5, 6))
    assert v.axis == "xz" and v.slice_index == 20
    ((c, _),) = rec.of("goto")
    assert c == {"type": "goto", "axis": "xz", "index": 20, "center": [5, 6]}
