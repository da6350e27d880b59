"""The viewer's wire format: how image and label slices travel to the browser (no widget needed).

Pixels travel as binary buffers beside small JSON messages; ``static/viewer.js`` decodes them.
Following lonboard's ``_serialization.py``, everything here is a pure function of arrays, so the
format is tested without a widget or a browser:

- image slices go raw, as uint8, uint16 or float32 (``display_dtype``), split into row chunks
  of at most ``CHUNK_BYTES`` (``row_chunks``, ``image_parts``);
- label slices use the smallest dtype that holds their ids (``label_transfer_dtype``) and are
  run-length encoded, zlib-compressed or raw, whichever is small (``encode_labels``,
  ``decode_labels``), in the same row chunks (``label_parts``);
- parts are grouped into messages of at most ``MAX_MESSAGE_BYTES`` of buffers (``group_parts``);
- label edits go as ``labels_update`` messages (``patch_update``, ``full_update``);
- ``label_color`` is the colour hash the browser draws label ids with.
"""

from __future__ import annotations

import colorsys
import zlib
from typing import Any, Optional

import numpy as np

#: rows of one image/label chunk stay under this many raw bytes; messages under MAX_MESSAGE_BYTES
CHUNK_BYTES = 4 * 2**20
MAX_MESSAGE_BYTES = 6 * 2**20

Part = tuple[dict, Optional[bytes]]


def display_dtype(dtype: np.dtype) -> str:
    """The dtype image slices travel in: uint8 and uint16 as they are, everything else float32.

    Parameters
    ----------
    dtype : numpy.dtype
        The image's dtype.

    Returns
    -------
    str
        ``"uint8"``, ``"uint16"`` or ``"float32"``.

    Examples
    --------
    >>> display_dtype(np.dtype("int16"))
    'float32'
    """
    if dtype == np.uint8:
        return "uint8"
    if dtype == np.uint16:
        return "uint16"
    return "float32"


def label_transfer_dtype(arr: np.ndarray) -> str:
    """The smallest of uint8/uint16/uint32 that holds the ids of ``arr`` (float64 beyond or below 0).

    Parameters
    ----------
    arr : numpy.ndarray
        Integer labels.

    Returns
    -------
    str
        A numpy dtype name.

    Examples
    --------
    >>> label_transfer_dtype(np.array([0, 300]))
    'uint16'
    """
    if arr.size == 0:
        return "uint8"
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        return "float64"
    if hi < 256:
        return "uint8"
    if hi < 65536:
        return "uint16"
    if hi < 2**32:
        return "uint32"
    return "float64"


def encode_labels(arr: np.ndarray, dtype: str | None = None) -> tuple[dict, bytes]:
    """Encode a label slice for the browser: run lengths when that is small, else zlib, else raw.

    Run-length bytes are the uint32 run lengths followed by the run values (row-major order).

    Parameters
    ----------
    arr : numpy.ndarray
        Labels (any shape; encoded flat in row-major order).
    dtype : str, optional
        Transfer dtype (default ``label_transfer_dtype``); the chunks of one slice share one.

    Returns
    -------
    meta : dict
        ``{"dtype", "encoding", ["nruns"]}``.
    buf : bytes
        The encoded labels.

    Examples
    --------
    >>> meta, buf = encode_labels(np.zeros((64, 64), np.uint32))
    >>> meta, len(buf)
    ({'dtype': 'uint8', 'encoding': 'rle', 'nruns': 1}, 5)
    """
    dt = dtype or label_transfer_dtype(arr)
    flat = np.ascontiguousarray(arr, dtype=dt).ravel()
    if flat.size:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        nruns = change.size + 1
        if nruns * (4 + flat.itemsize) <= flat.nbytes // 4:
            starts = np.concatenate(([0], change))
            lengths = np.diff(np.append(starts, flat.size)).astype(np.uint32)
            return {"dtype": dt, "encoding": "rle", "nruns": int(nruns)}, lengths.tobytes() + flat[starts].tobytes()
    raw = flat.tobytes()
    packed = zlib.compress(raw, 1)
    if len(packed) <= len(raw) // 2:
        return {"dtype": dt, "encoding": "zlib"}, packed
    return {"dtype": dt, "encoding": "raw"}, raw


def decode_labels(meta: dict, buf: bytes) -> np.ndarray:
    """Inverse of ``encode_labels`` (a flat array), as the browser decodes it.

    Parameters
    ----------
    meta : dict
        ``{"dtype", "encoding", ["nruns"]}`` from ``encode_labels``.
    buf : bytes
        The encoded labels.

    Returns
    -------
    numpy.ndarray
        The labels, flat, in the transfer dtype.

    Examples
    --------
    >>> a = np.array([[0, 0, 7], [7, 7, 7]])
    >>> decode_labels(*encode_labels(a)).reshape(a.shape).tolist()
    [[0, 0, 7], [7, 7, 7]]
    """
    dt = np.dtype(meta["dtype"])
    enc = meta.get("encoding", "raw")
    if enc == "rle":
        n = int(meta["nruns"])
        lengths = np.frombuffer(buf, np.uint32, n)
        values = np.frombuffer(buf, dt, n, offset=4 * n)
        return np.repeat(values, lengths)
    if enc == "zlib":
        buf = zlib.decompress(buf)
    return np.frombuffer(buf, dt)


def row_chunks(h: int, row_bytes: int) -> list[tuple[int, int]]:
    """``[(r0, r1), ...]``: rows ``0..h`` in chunks of at most ``CHUNK_BYTES`` (at least one row).

    Parameters
    ----------
    h : int
        Rows of the slice.
    row_bytes : int
        Bytes of one row.

    Returns
    -------
    list of tuple
        Half-open row ranges covering ``0..h`` (``[(0, 0)]`` for an empty slice).

    Examples
    --------
    >>> row_chunks(10, CHUNK_BYTES // 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    rows = max(1, CHUNK_BYTES // max(1, row_bytes))
    return [(r, min(h, r + rows)) for r in range(0, h, rows)] or [(0, 0)]


def image_parts(plane: np.ndarray) -> list[Part]:
    """The ``data`` message parts of one image slice: raw rows in the display dtype, chunked.

    Parameters
    ----------
    plane : numpy.ndarray
        The 2D image slice in the source dtype.

    Returns
    -------
    list of (dict, bytes)
        ``({"kind": "image", "dtype", "shape", "row0", "rows", "nchunks", "encoding"}, rows)`` per chunk.

    Examples
    --------
    >>> [(m["kind"], m["dtype"], len(b)) for m, b in image_parts(np.zeros((4, 5), np.int16))]
    [('image', 'float32', 80)]
    """
    dt = display_dtype(plane.dtype)
    if plane.dtype != np.dtype(dt):
        plane = plane.astype(dt)
    h, w = plane.shape
    chunks = row_chunks(h, w * plane.itemsize)
    meta = {"kind": "image", "dtype": dt, "shape": [h, w], "nchunks": len(chunks), "encoding": "raw"}
    return [(dict(meta, row0=r0, rows=r1 - r0), np.ascontiguousarray(plane[r0:r1]).tobytes()) for r0, r1 in chunks]


def label_parts(view: np.ndarray | None, shape: tuple[int, int], layer: int, version: int) -> list[Part]:
    """The ``data`` message parts of one label slice (one empty part without labels).

    Parameters
    ----------
    view : numpy.ndarray or None
        The layer's labels on this slice (None where a slice layer has none).
    shape : tuple of int
        The slice's ``(rows, cols)``.
    layer, version : int
        The layer's uid and version, echoed for the browser's cache.

    Returns
    -------
    list of (dict, bytes or None)
        One part per row chunk, each with its own ``encode_labels`` encoding and one dtype.

    Examples
    --------
    >>> [m["empty"] for m, _ in label_parts(None, (4, 5), layer=1, version=0)]
    [True]
    """
    base = {"kind": "labels", "layer": layer, "version": version, "shape": list(shape)}
    if view is None or not view.any():
        return [(dict(base, empty=True, nchunks=1, row0=0, rows=shape[0], dtype="uint8"), None)]
    dt = label_transfer_dtype(view)
    chunks = row_chunks(view.shape[0], view.shape[1] * np.dtype(dt).itemsize)
    out: list[Part] = []
    for r0, r1 in chunks:
        meta, buf = encode_labels(view[r0:r1], dtype=dt)  # one dtype for every chunk of the slice
        out.append((dict(base, **meta, row0=r0, rows=r1 - r0, nchunks=len(chunks)), buf))
    return out


def group_parts(parts: list[Part], max_bytes: int | None = None) -> list[list[Part]]:
    """Split ``parts`` into consecutive groups of at most ``max_bytes`` of buffers (one message each).

    Parameters
    ----------
    parts : list of (dict, bytes or None)
        Message parts in order.
    max_bytes : int, optional
        Default ``MAX_MESSAGE_BYTES``; a single larger part gets a group of its own.

    Returns
    -------
    list of list
        At least one group (possibly empty).

    Examples
    --------
    >>> [len(g) for g in group_parts([({}, b"12"), ({}, b"34"), ({}, None)], max_bytes=3)]
    [1, 2]
    """
    limit = MAX_MESSAGE_BYTES if max_bytes is None else int(max_bytes)
    groups: list[list[Part]] = []
    batch: list[Part] = []
    size = 0
    for meta, buf in parts:
        n = len(buf) if buf is not None else 0
        if batch and size + n > limit:
            groups.append(batch)
            batch, size = [], 0
        batch.append((meta, buf))
        size += n
    groups.append(batch)
    return groups


def patch_update(layer: int, version: int, where: dict, patch: np.ndarray, stroke: Any = None) -> tuple[dict, bytes]:
    """The ``labels_update`` message for a changed box of one slice.

    Parameters
    ----------
    layer, version : int
        The layer's uid and its new version.
    where : dict
        ``{"axis", "index", "r0", "c0", "h", "w"}`` of the box.
    patch : numpy.ndarray
        The box's labels after the change.
    stroke : int, optional
        The browser's stroke id, so it can drop that stroke's preview.

    Returns
    -------
    content : dict
        The message.
    buf : bytes
        Its one buffer.

    Examples
    --------
    >>> where = {"axis": "xy", "index": 0, "r0": 1, "c0": 2, "h": 1, "w": 2}
    >>> msg, buf = patch_update(1, 3, where, np.array([[5, 5]]))
    >>> msg["scope"], msg["r0"], msg["dtype"]
    ('slice', 1, 'uint8')
    """
    meta, buf = encode_labels(patch)
    keys = ("axis", "index", "r0", "c0", "h", "w")
    content = {"type": "labels_update", "layer": layer, "version": version, "scope": "slice", "full": False}
    content.update({k: where[k] for k in keys}, **meta, stroke=stroke)
    return content, buf


def noop_update(layer: int, version: int, axis: str, index: int, stroke: Any) -> dict:
    """The ``labels_update`` message for a stroke that changed nothing (the browser drops its preview).

    Parameters
    ----------
    layer, version : int
        The layer's uid and (unchanged) version.
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    index : int
        The slice of the stroke.
    stroke : int
        The browser's stroke id.

    Returns
    -------
    dict
        The message (no buffer).

    Examples
    --------
    >>> noop_update(1, 4, "xy", 0, 17)["scope"]
    'none'
    """
    return {
        "type": "labels_update",
        "layer": layer,
        "version": version,
        "scope": "none",
        "full": False,
        "axis": axis,
        "index": index,
        "stroke": stroke,
        "noop": True,
    }


def full_update(
    layer: int, version: int, axis: str, index: int, shape: tuple[int, int], view: np.ndarray | None, stroke: Any = None
) -> tuple[dict, list[bytes]]:
    """The ``labels_update`` message that resends one whole slice and marks the layer's other slices stale.

    Labels too large for one message are not sent (``stale``): the browser fetches them in chunks.

    Parameters
    ----------
    layer, version : int
        The layer's uid and version.
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    index : int
        The slice shown.
    shape : tuple of int
        The slice's ``(rows, cols)``.
    view : numpy.ndarray or None
        The layer's labels on that slice.
    stroke : int, optional
        The browser's stroke id.

    Returns
    -------
    content : dict
        The message.
    buffers : list of bytes
        No buffer or one.

    Examples
    --------
    >>> msg, bufs = full_update(1, 2, "xy", 0, (4, 5), None)
    >>> msg["scope"], msg["empty"], bufs
    ('all', True, [])
    """
    head = {
        "type": "labels_update",
        "layer": layer,
        "version": version,
        "scope": "all",
        "full": True,
        "axis": axis,
        "index": index,
        "shape": list(shape),
        "stroke": stroke,
    }
    if view is None or not view.any():
        return dict(head, empty=True, dtype="uint8", encoding="raw"), []
    meta, buf = encode_labels(view)
    if len(buf) > MAX_MESSAGE_BYTES:  # incompressible labels: let the browser fetch them in chunks
        return dict(head, full=False, stale=True), []
    return dict(head, **meta), [buf]


#: the colour of unlabelled pixels (sparse labels), drawn hatched (codec.js ``UNLABELLED_RGB``)
UNLABELLED_COLOR = (150, 150, 150)


def label_color(label_id: int, unlabelled: int | None = None) -> tuple[int, int, int]:
    """The RGB colour the viewer draws ``label_id`` with (the same hash as ``codec.js`` ``labelColor``).

    Parameters
    ----------
    label_id : int
        A label id (64-bit ids fold their high word in).
    unlabelled : int, optional
        The layer's ignore value (``ignore_value`` of its dtype): that id is ``UNLABELLED_COLOR``
        (grey, drawn hatched).

    Returns
    -------
    tuple of int
        ``(r, g, b)`` in 0..255.

    Examples
    --------
    >>> label_color(1) == label_color(1) and label_color(1) != label_color(2)
    True
    >>> label_color(255, unlabelled=255)
    (150, 150, 150)
    """
    i = int(label_id)
    if unlabelled is not None and i == int(unlabelled):
        return UNLABELLED_COLOR
    m32 = 0xFFFFFFFF
    x = (((i & m32) ^ ((i >> 32) & m32)) * 0x9E3779B1) & m32
    x ^= x >> 15
    x = (x * 0x85EBCA77) & m32
    x ^= x >> 13
    x = (x * 0xC2B2AE3D) & m32
    x ^= x >> 16
    hue, s, l = (x % 360) / 360, 0.6 + ((x >> 9) % 35) / 100, 0.45 + ((x >> 17) % 20) / 100
    r, g, b = colorsys.hls_to_rgb(hue, l, s)
    return round(r * 255), round(g * 255), round(b * 255)
