"""The notebook viewer: slices of a 2D image or 3D volume with label overlays and tools.

Python keeps the data (image source, label arrays, picks, regions, undo history); the browser
(``static/viewer.js``) keeps a cache of slices, draws, and handles every mouse move, drag, zoom and
preview locally. Pixels travel as binary buffers of custom messages; Python receives only committed
results (a pick, a finished stroke, a rectangle or polygon, a fill) and answers with the changed
label pixels.

Messages, browser -> Python (``content["type"]``):
    ``get`` {rid, axis, index, image: bool, layers: [uid]}: send these parts of a slice;
    ``pick`` {axis, index, row, col}; ``delete_pick`` {i}; ``clear_picks``; ``random_picks`` {n};
    ``region`` {shape, axis, index, points}; ``update_region`` {i, name?, all_slices?}; ``delete_region`` {i};
    ``stroke`` {stroke, layer, axis, index, points, size, label, erase}; ``fill`` {layer, axis, index, row, col, label};
    ``undo``; ``redo``; ``new_label``; ``new_layer``; ``layer`` {layer, opacity?, visible?};
    ``save_patches`` {dataset_dir, name}; ``proofread`` {op, selection, axis, index, scope, ...}; ``ready``.
Messages, Python -> browser:
    ``data`` {rid, axis, index, parts: [{kind: image|labels, dtype, shape, row0, rows, nchunks, encoding, layer,
    version, empty, encoding}], last} with one buffer per non-empty part (image rows raw; label rows run-length
    encoded, zlib-compressed or raw, see :func:`encode_labels`);
    ``labels_update`` {layer, version, axis, index, scope: slice|all, full, r0, c0, h, w, dtype, encoding, stroke}
    with one buffer; ``invalidate`` {image}; ``goto`` {axis, index, center}.
"""

from __future__ import annotations

import logging
import threading
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from .. import patches as P
from ._esm import DebugFlag, assemble
from .editing import Edit, History, LabelLayer, apply_fill, apply_stroke, diff_volume
from .source import AXIS_DIMS, VolumeSource, check_axis, n_slices, plane_shape

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

#: rows of one image/label chunk stay under this many raw bytes; messages under MAX_MESSAGE_BYTES
CHUNK_BYTES = 4 * 2**20
MAX_MESSAGE_BYTES = 6 * 2**20


def _display_dtype(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "uint8"
    if dtype == np.uint16:
        return "uint16"
    return "float32"


def _label_transfer_dtype(arr: np.ndarray) -> str:
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

    Returns ``({"dtype", "encoding", ["nruns"]}, bytes)``; run-length bytes are the uint32 run
    lengths followed by the run values (row-major order). Labels use the smallest dtype that holds
    the slice's ids (uint8/uint16/uint32; float64 beyond).
    """
    dt = dtype or _label_transfer_dtype(arr)
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
    """Inverse of :func:`encode_labels` (flat array), as the browser decodes it."""
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


def _row_chunks(h: int, row_bytes: int) -> list[tuple[int, int]]:
    rows = max(1, CHUNK_BYTES // max(1, row_bytes))
    return [(r, min(h, r + rows)) for r in range(0, h, rows)] or [(0, 0)]


def label_color(label_id: int) -> tuple[int, int, int]:
    """The RGB colour the viewer draws ``label_id`` with (same hash as ``viewer.js``)."""
    import colorsys

    i = int(label_id)
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


class Viewer(anywidget.AnyWidget):
    """Slices of an image or volume with label layers, patch picking, context regions and label editing.

    ``data``: a 2D image or 3D ``(Z, Y, X)`` volume: numpy array, TIFF path (read lazily page by page,
    or memory-mapped when uncompressed), zarr array or path, dask array. The raw data is never
    altered; display contrast is applied in the browser. ``labels``: an array of the same shape, or
    a dict ``{name: array}`` / list of arrays, added as label layers (edited in place when they are
    writable numpy arrays). ``axis``: ``"xy"``, ``"xz"`` or ``"yz"``.

    State in plain Python: :attr:`picks` (list of ``{"axis", "z", "y", "x", "size"}``),
    :attr:`regions` (list of ``{"name", "axis", "slice", "shape", "points", "all_slices"}``),
    :attr:`slice_index`, :attr:`axis`, :attr:`layers` (metadata) and :attr:`label_layers`
    (:class:`~empanada_nb.widgets.editing.LabelLayer` objects with ``.data``).
    """

    _esm = assemble(STATIC / "viewer.js")  # static/viewer.js and the parts it imports, as one module
    debug = DebugFlag(help="browser registers on window.__enb, keeps timing stats (tests)").tag(sync=True)
    _css = STATIC / "viewer.css"

    shape = t.List(t.Int(), default_value=[1, 1, 1], help="volume shape (Z, Y, X); Z = 1 for 2D").tag(sync=True)
    ndim = t.Int(3).tag(sync=True)
    dtype = t.Unicode("uint8").tag(sync=True)
    axis = t.Unicode("xy").tag(sync=True)
    slice_index = t.Int(0).tag(sync=True)
    contrast_limits = t.List(t.Float(), default_value=[0.0, 255.0]).tag(sync=True)
    data_range = t.List(t.Float(), default_value=[0.0, 255.0]).tag(sync=True)
    layers = t.List(t.Dict(), help="label layer metadata (uid, name, opacity, visible, version, ...)").tag(sync=True)
    active_layer = t.Int(0, help="uid of the layer that editing tools change").tag(sync=True)
    tool = t.Enum(["pan", "pick", "rect", "polygon", "paint", "erase", "fill", "picker", "select"], "pan").tag(
        sync=True
    )
    brush_size = t.Int(10).tag(sync=True)
    current_label = t.Int(1).tag(sync=True)
    patch_size = t.Int(256).tag(sync=True)
    picks = t.List(t.Dict()).tag(sync=True)
    regions = t.List(t.Dict()).tag(sync=True)
    selection = t.List(t.Dict(), help="labels selected for proofreading: {id, axis, index, row, col}").tag(sync=True)
    proofreading = t.List(t.Unicode(), help="proofreading operations available").tag(sync=True)
    confine_to_regions = t.Bool(False, help="confine inference and metrics to the context regions").tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    can_undo = t.Bool(False).tag(sync=True)
    can_redo = t.Bool(False).tag(sync=True)
    height = t.Int(560, help="canvas height in CSS pixels").tag(sync=True)
    prefetch = t.Int(4, help="slices the browser prefetches ahead of the scroll direction").tag(sync=True)
    cache_mb = t.Int(256, help="browser slice cache budget in MiB").tag(sync=True)
    dataset_dir = t.Unicode("").tag(sync=True)
    dataset_name = t.Unicode("").tag(sync=True)

    def __init__(
        self,
        data: Any,
        labels: Any = None,
        axis: str = "xy",
        *,
        contrast_limits=None,
        patch_size: int = 256,
        height: int = 560,
        max_undo: int = 50,
        name: str | None = None,
        **kwargs,
    ):
        source = data if isinstance(data, VolumeSource) else VolumeSource(data)
        axis = check_axis(axis)
        if source.ndim == 2 and axis != "xy":
            raise ValueError("a 2D image can only be viewed along 'xy'")
        self.source = source
        self.label_layers: list[LabelLayer] = []
        self.history = History(max_steps=max_undo)
        self.model = None  #: model used for ``save_patches`` and previews when none is passed
        self._lock = threading.RLock()
        self._sent: int = 0
        drange = self._data_range()
        if contrast_limits is None:
            contrast_limits = self._initial_contrast(drange)
        super().__init__(
            shape=list(source.shape),
            ndim=source.ndim,
            dtype=str(source.dtype),
            axis=axis,
            slice_index=n_slices(source.shape, axis) // 2,
            data_range=list(drange),
            contrast_limits=[float(c) for c in contrast_limits],
            patch_size=int(patch_size),
            height=int(height),
            **kwargs,
        )
        default_name = name or (source.path.stem if source.path is not None else "patches")
        self.dataset_name = default_name
        self.on_msg(self._on_custom_msg)
        self._update_proofreading()
        if labels is not None:
            if isinstance(labels, dict):
                for k, v in labels.items():
                    self.add_labels(v, name=k)
            elif isinstance(labels, (list, tuple)):
                for i, v in enumerate(labels):
                    self.add_labels(v, name=f"labels {i}" if i else "labels")
            else:
                self.add_labels(labels, name="labels")

    # ------------------------------------------------------------------------------ contrast
    def _data_range(self) -> tuple[float, float]:
        dt = self.source.dtype
        if dt == np.uint8:
            return 0.0, 255.0
        if dt == np.bool_:
            return 0.0, 1.0
        s = self.source.sample()
        lo, hi = float(np.nanmin(s)), float(np.nanmax(s))
        if dt.kind in "ui":
            info = np.iinfo(dt)
            lo, hi = float(min(lo, 0) if dt.kind == "u" else lo), float(hi)
            hi = min(hi, float(info.max))
        if hi <= lo:
            hi = lo + 1.0
        return lo, hi

    def _initial_contrast(self, drange) -> tuple[float, float]:
        if self.source.dtype in (np.uint8, bool):
            return drange
        return self._percentiles(self.source.sample(), (0.1, 99.9))

    @staticmethod
    def _percentiles(values: np.ndarray, percentiles=(0.5, 99.5)) -> tuple[float, float]:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return 0.0, 1.0
        lo, hi = np.percentile(v, percentiles)
        if hi <= lo:
            hi = lo + 1.0
        return float(lo), float(hi)

    def auto_contrast(self, percentiles=(0.5, 99.5), scope: str = "slice") -> tuple[float, float]:
        """Set the contrast limits to percentiles of the current slice (``scope="slice"``) or of a sample."""
        vals = self.current_slice() if scope == "slice" else self.source.sample()
        lo, hi = self._percentiles(vals, percentiles)
        self.contrast_limits = [lo, hi]
        return lo, hi

    # ------------------------------------------------------------------------------- validation
    @t.validate("axis")
    def _valid_axis(self, proposal):
        axis = check_axis(proposal["value"])
        if getattr(self, "source", None) is not None and self.source.ndim == 2 and axis != "xy":
            raise t.TraitError("a 2D image can only be viewed along 'xy'")
        return axis

    @t.validate("slice_index")
    def _valid_slice(self, proposal):
        i = int(proposal["value"])
        if getattr(self, "source", None) is None:
            return i
        n = n_slices(self.source.shape, self.axis)
        return min(max(0, i), n - 1)

    @t.observe("axis")
    def _axis_changed(self, change):
        n = n_slices(self.source.shape, change["new"])
        if self.slice_index >= n:
            self.slice_index = n - 1

    @t.validate("picks")
    def _valid_picks(self, proposal):
        out = []
        for p in proposal["value"]:
            if not all(k in p for k in ("axis", "z", "y", "x", "size")):
                raise t.TraitError(f"a pick needs the keys axis, z, y, x, size; got {p}")
            norm = P.make_pick(p["axis"], *self._plane_of(p), p["size"], self.source.shape)
            extra = {k: v for k, v in p.items() if k not in norm}
            out.append({**norm, **extra})
        return out

    @t.validate("regions")
    def _valid_regions(self, proposal):
        out = []
        for i, r in enumerate(proposal["value"]):
            r = dict(r)
            r.setdefault("name", f"region {i + 1}")
            r.setdefault("axis", "xy")
            r.setdefault("slice", 0)
            r.setdefault("shape", "polygon")
            r.setdefault("all_slices", False)
            check_axis(r["axis"])
            if r["shape"] not in ("rectangle", "polygon"):
                raise t.TraitError(f"region shape must be 'rectangle' or 'polygon', got {r['shape']!r}")
            r["points"] = [[float(a), float(b)] for a, b in r["points"]]
            need = 2 if r["shape"] == "rectangle" else 3
            if len(r["points"]) < need:
                raise t.TraitError(f"a {r['shape']} needs at least {need} points")
            r["slice"] = int(r["slice"])
            out.append(r)
        return out

    @staticmethod
    def _plane_of(p) -> tuple[int, float, float]:
        fixed, (rd, cd) = AXIS_DIMS[check_axis(p["axis"])]
        c = (p["z"], p["y"], p["x"])
        return int(c[fixed]), c[rd], c[cd]

    # ------------------------------------------------------------------------------ data access
    @property
    def data(self):
        """The image source (array-like, ``(Z, Y, X)`` indexing; see :class:`VolumeSource`)."""
        return self.source

    def current_slice(self) -> np.ndarray:
        """The raw image slice currently shown (as Python knows it)."""
        return self.source.plane(self.axis, self.slice_index)

    @property
    def labels(self) -> np.ndarray | None:
        """The active label layer's array (None without label layers)."""
        layer = self._active(create=False)
        return layer.data if layer is not None else None

    def layer(self, key: str | int) -> LabelLayer:
        """A label layer by name, list index or uid."""
        for _i, l in enumerate(self.label_layers):
            if l.name == key:
                return l
        if isinstance(key, int):
            for l in self.label_layers:
                if l.uid == key:
                    return l
            if -len(self.label_layers) <= key < len(self.label_layers):
                return self.label_layers[key]
        raise KeyError(f"no label layer {key!r}; layers: {[l.name for l in self.label_layers]}")

    def _layer_by_uid(self, uid) -> LabelLayer | None:
        for l in self.label_layers:
            if l.uid == uid:
                return l
        return None

    def _active(self, create: bool = True) -> LabelLayer | None:
        layer = self._layer_by_uid(self.active_layer)
        if layer is None and self.label_layers:
            layer = next((l for l in self.label_layers if l.editable and l.plane is None), self.label_layers[0])
            self.active_layer = layer.uid
        if layer is None and create:
            shape = self.source.shape if self.source.ndim == 3 else self.source.shape[1:]
            layer = self.add_labels(np.zeros(shape, dtype=np.uint32), name="labels")
            self.message = "created an empty label layer 'labels' (viewer.labels)"
        return layer

    # --------------------------------------------------------------------------------- layers
    def add_labels(
        self,
        array: Any,
        name: str | None = None,
        opacity: float = 0.5,
        visible: bool = True,
        editable: bool = True,
        plane: tuple[str, int] | None = None,
        active: bool = False,
    ) -> LabelLayer:
        """Add a label layer of the image's shape (``plane=(axis, index)``: a 2D layer for one slice).

        A writable numpy array is edited in place by the tools; other inputs are copied once. Names are
        made unique. The first editable layer becomes the active (edited) one unless ``active``.
        """
        with self._lock:
            if isinstance(array, (str, Path)):
                from ..data.io import read_image

                array = read_image(array)
            base = str(name or "labels")
            names = {l.name for l in self.label_layers}
            uniq, k = base, 1
            while uniq in names:
                uniq = f"{base} [{k}]"
                k += 1
            layer = LabelLayer(
                array, uniq, self.source.shape, opacity=opacity, visible=visible, editable=editable, plane=plane
            )
            self.label_layers.append(layer)
            if active or self._layer_by_uid(self.active_layer) is None and editable and plane is None:
                self.active_layer = layer.uid
            self._sync_layers()
            return layer

    def set_labels(self, name: str, array: Any, **kwargs) -> LabelLayer:
        """Replace the data of layer ``name`` (added when missing); the browser refreshes its slices."""
        with self._lock:
            try:
                layer = self.layer(name)
            except KeyError:
                return self.add_labels(array, name=name, **kwargs)
            if "plane" in kwargs and kwargs["plane"] is not None:
                layer.plane = (check_axis(kwargs["plane"][0]), int(kwargs["plane"][1]))
            self.history.drop_layer(layer)
            layer.set_data(array)
            self._push_full(layer)
            self._sync_layers()
            return layer

    def remove_labels(self, key: str | int) -> None:
        with self._lock:
            layer = self.layer(key)
            self.label_layers.remove(layer)
            self.history.drop_layer(layer)
            if self.active_layer == layer.uid:
                self.active_layer = self.label_layers[0].uid if self.label_layers else 0
            self._sync_layers()

    def refresh(self, key: str | int | None = None) -> None:
        """Tell the browser that label arrays changed outside the viewer (all layers when ``key`` is None)."""
        with self._lock:
            layers = self.label_layers if key is None else [self.layer(key)]
            for layer in layers:
                layer.version += 1
                layer.forget_max()
                self._push_full(layer)
            self._sync_layers()

    def _sync_layers(self) -> None:
        self.layers = [l.meta() for l in self.label_layers]
        self.can_undo, self.can_redo = self.history.can_undo, self.history.can_redo

    # ---------------------------------------------------------------------------------- sending
    def _send_parts(self, head: dict, parts: list[tuple[dict, bytes | None]]) -> None:
        """Send ``parts`` (meta, buffer) in messages of at most MAX_MESSAGE_BYTES of buffers each."""
        batch: list[tuple[dict, bytes | None]] = []
        size = 0
        groups = []
        for meta, buf in parts:
            n = len(buf) if buf is not None else 0
            if batch and size + n > MAX_MESSAGE_BYTES:
                groups.append(batch)
                batch, size = [], 0
            batch.append((meta, buf))
            size += n
        groups.append(batch)
        for gi, group in enumerate(groups):
            content = dict(head, parts=[m for m, _ in group], last=gi == len(groups) - 1)
            self.send(content, buffers=[b for _, b in group if b is not None])

    def _image_parts(self, axis: str, index: int) -> list[tuple[dict, bytes]]:
        plane = self.source.plane(axis, index)
        dt = _display_dtype(plane.dtype)
        if plane.dtype != np.dtype(dt):
            plane = plane.astype(dt)
        h, w = plane.shape
        chunks = _row_chunks(h, w * plane.itemsize)
        out = []
        for r0, r1 in chunks:
            out.append(
                (
                    {
                        "kind": "image",
                        "dtype": dt,
                        "shape": [h, w],
                        "row0": r0,
                        "rows": r1 - r0,
                        "nchunks": len(chunks),
                        "encoding": "raw",
                    },
                    np.ascontiguousarray(plane[r0:r1]).tobytes(),
                )
            )
        return out

    def _label_parts(self, layer: LabelLayer, axis: str, index: int) -> list[tuple[dict, bytes | None]]:
        view = layer.plane_view(axis, index)
        pshape = list(plane_shape(self.source.shape, axis))
        base = {"kind": "labels", "layer": layer.uid, "version": layer.version, "shape": pshape}
        if view is None or not view.any():
            return [(dict(base, empty=True, nchunks=1, row0=0, rows=pshape[0], dtype="uint8"), None)]
        dt = _label_transfer_dtype(view)
        chunks = _row_chunks(view.shape[0], view.shape[1] * np.dtype(dt).itemsize)
        out = []
        for r0, r1 in chunks:
            meta, buf = encode_labels(view[r0:r1], dtype=dt)  # one dtype for every chunk of the slice
            out.append((dict(base, **meta, row0=r0, rows=r1 - r0, nchunks=len(chunks)), buf))
        return out

    def _send_slice(
        self, axis: str, index: int, image: bool = True, layers: Iterable[int] | None = None, rid: int | None = None
    ) -> None:
        axis = check_axis(axis)
        index = int(index)
        parts: list[tuple[dict, bytes | None]] = []
        with self._lock:
            if image:
                parts += self._image_parts(axis, index)
            uids = [l.uid for l in self.label_layers] if layers is None else list(layers)
            for uid in uids:
                layer = self._layer_by_uid(uid)
                if layer is not None:
                    parts += self._label_parts(layer, axis, index)
        self._send_parts({"type": "data", "rid": rid, "axis": axis, "index": index}, parts)

    def _push_edit(self, edit: Edit, stroke: int | None = None, values: str = "after") -> None:
        """Send the browser what ``edit`` changed, then bump the layer version."""
        layer = edit.layer
        layer.version += 1
        w = edit.where
        if w:
            patch = edit.after if values == "after" else edit.before
            meta, buf = encode_labels(patch)
            self.send(
                {
                    "type": "labels_update",
                    "layer": layer.uid,
                    "version": layer.version,
                    "scope": "slice",
                    "full": False,
                    "axis": w["axis"],
                    "index": w["index"],
                    "r0": w["r0"],
                    "c0": w["c0"],
                    "h": w["h"],
                    "w": w["w"],
                    **meta,
                    "stroke": stroke,
                },
                buffers=[buf],
            )
        else:
            self._push_full(layer, bump=False, stroke=stroke)
        self._sync_layers()

    def _push_full(self, layer: LabelLayer, bump: bool = False, stroke: int | None = None) -> None:
        """Send the current slice of ``layer`` whole; every other cached slice of it becomes stale."""
        if bump:
            layer.version += 1
        axis, index = self.axis, self.slice_index
        if layer.plane is not None:
            axis, index = layer.plane
        view = layer.plane_view(axis, index)
        head = {
            "type": "labels_update",
            "layer": layer.uid,
            "version": layer.version,
            "scope": "all",
            "full": True,
            "axis": axis,
            "index": index,
            "shape": list(plane_shape(self.source.shape, axis)),
            "stroke": stroke,
        }
        if view is None or not view.any():
            self.send(dict(head, empty=True, dtype="uint8", encoding="raw"), buffers=[])
            return
        meta, buf = encode_labels(view)
        if len(buf) > MAX_MESSAGE_BYTES:  # incompressible labels: let the browser fetch them in chunks
            self.send(dict(head, full=False, stale=True), buffers=[])
            return
        self.send(dict(head, **meta), buffers=[buf])

    # --------------------------------------------------------------------------------- messages
    def _on_custom_msg(self, _widget, content: dict, buffers: Sequence[bytes]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = getattr(self, f"_msg_{kind}", None)
        if handler is None:
            log.warning("empanada_nb Viewer: unknown message %r", kind)
            return
        try:
            handler(content)
        except Exception as e:  # surface errors in the viewer's status line instead of the kernel log only
            log.exception("empanada_nb Viewer: %s failed", kind)
            self.message = f"{kind} failed: {e.__class__.__name__}: {e}"

    def _msg_ready(self, c):
        pass

    def _msg_get(self, c):
        self._send_slice(
            c["axis"], c["index"], image=bool(c.get("image", True)), layers=c.get("layers") or [], rid=c.get("rid")
        )

    def _msg_pick(self, c):
        self.add_pick(c["axis"], c["index"], c["row"], c["col"])

    def _msg_delete_pick(self, c):
        self.remove_pick(int(c["i"]))

    def _msg_clear_picks(self, c):
        self.picks = []

    def _msg_random_picks(self, c):
        new = self.fill_random_picks(int(c.get("n", 8)))
        self.message = f"added {len(new)} random patch(es)"

    def _msg_region(self, c):
        self.add_region(c["points"], shape=c.get("shape", "polygon"), axis=c["axis"], slice=c["index"])

    def _msg_update_region(self, c):
        i = int(c["i"])
        regions = [dict(r) for r in self.regions]
        if "name" in c:
            regions[i]["name"] = str(c["name"]).strip() or regions[i]["name"]
        if "all_slices" in c:
            regions[i]["all_slices"] = bool(c["all_slices"])
        self.regions = regions

    def _msg_delete_region(self, c):
        self.remove_region(int(c["i"]))

    def _msg_stroke(self, c):
        self.paint(
            c["points"],
            size=c.get("size", self.brush_size),
            label=c.get("label", self.current_label),
            axis=c["axis"],
            index=c["index"],
            erase=bool(c.get("erase")),
            layer=c.get("layer"),
            _stroke=c.get("stroke"),
        )

    def _msg_fill(self, c):
        self.fill(
            c["row"],
            c["col"],
            label=c.get("label", self.current_label),
            axis=c["axis"],
            index=c["index"],
            layer=c.get("layer"),
        )

    def _msg_undo(self, c):
        self.undo()

    def _msg_redo(self, c):
        self.redo()

    def _msg_new_label(self, c):
        self.new_label()

    def _msg_new_layer(self, c):
        shape = self.source.shape if self.source.ndim == 3 else self.source.shape[1:]
        self.add_labels(np.zeros(shape, dtype=np.uint32), name="labels", active=True)

    def _msg_layer(self, c):
        layer = self._layer_by_uid(c["layer"])
        if layer is None:
            return
        if "opacity" in c:
            layer.opacity = float(min(1.0, max(0.0, c["opacity"])))
        if "visible" in c:
            layer.visible = bool(c["visible"])
        if "name" in c:
            layer.name = str(c["name"])
        self._sync_layers()

    def _msg_save_patches(self, c):
        d = str(c.get("dataset_dir") or self.dataset_dir).strip()
        name = str(c.get("name") or self.dataset_name).strip()
        if not d:
            self.message = "save patches: enter a dataset folder"
            return
        self.dataset_dir, self.dataset_name = d, name
        with warnings.catch_warnings():  # clashes are reported in the status line
            warnings.simplefilter("ignore", UserWarning)
            res = self.save_patches(d, name=name or None)
        self.message = f"saved {len(res['written'])} patch(es) to {res['dir']}" + (
            f"; skipped {len(res['skipped'])} existing" if res["skipped"] else ""
        )

    def _msg_proofread(self, c):
        self.proofread(
            c["op"],
            c.get("selection", self.selection),
            axis=c.get("axis"),
            index=c.get("index"),
            scope=c.get("scope", "slice"),
            **{k: c[k] for k in ("morph", "radius", "min_size") if k in c},
        )

    # ------------------------------------------------------------------------------------ picks
    def add_pick(self, axis: str, index: int, row: float, col: float, size: int | None = None) -> dict:
        """Add a patch centred at ``(row, col)`` of slice ``index`` along ``axis``; returns the pick."""
        pick = P.make_pick(axis, int(index), row, col, int(size or self.patch_size), self.source.shape)
        self.picks = self.picks + [pick]
        return self.picks[-1]

    def remove_pick(self, i: int) -> None:
        picks = list(self.picks)
        del picks[i]
        self.picks = picks

    def fill_random_picks(self, n: int, size: int | None = None, seed=None) -> list[dict]:
        """Add up to ``n`` random picks inside the context regions, spread evenly across them.

        Without regions the current slice is used as one region.
        """
        regions = list(self.regions)
        if not regions:
            h, w = plane_shape(self.source.shape, self.axis)
            regions = [
                {
                    "name": "slice",
                    "axis": self.axis,
                    "slice": self.slice_index,
                    "shape": "rectangle",
                    "points": [[0, 0], [h, w]],
                }
            ]
        new = P.random_patches(
            regions, self.source.shape, n, int(size or self.patch_size), rng=seed, existing=self.picks
        )
        self.picks = self.picks + new
        return new

    # ---------------------------------------------------------------------------------- regions
    def add_region(
        self,
        points,
        shape: str = "polygon",
        name: str | None = None,
        axis: str | None = None,
        slice: int | None = None,
        all_slices: bool = False,
    ) -> dict:
        """Add a context region drawn on slice ``slice`` along ``axis`` (current view by default)."""
        axis = check_axis(axis or self.axis)
        idx = self.slice_index if slice is None else int(slice)
        if name is None:
            used = {r["name"] for r in self.regions}
            k = len(self.regions) + 1
            while f"region {k}" in used:
                k += 1
            name = f"region {k}"
        pts = [[round(float(a), 2), round(float(b), 2)] for a, b in points]
        region = {
            "name": str(name),
            "axis": axis,
            "slice": idx,
            "shape": shape,
            "points": pts,
            "all_slices": bool(all_slices),
        }
        self.regions = self.regions + [region]
        return self.regions[-1]

    def remove_region(self, key: int | str) -> None:
        regions = list(self.regions)
        if isinstance(key, str):
            key = next(i for i, r in enumerate(regions) if r["name"] == key)
        del regions[key]
        self.regions = regions

    def _mask_shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape) if self.source.ndim == 3 else tuple(self.source.shape[1:])

    def context_mask(self, name: str | None = None) -> np.ndarray:
        """Boolean mask of the context regions (of the volume's shape, or of the image for 2D data).

        ``name``: only that region. Without regions the mask is all False.
        """
        regions = self.regions if name is None else [r for r in self.regions if r["name"] == name]
        if name is not None and not regions:
            raise KeyError(f"no region named {name!r}")
        return P.regions_mask(regions, self._mask_shape())

    def region_masks(self) -> dict[str, np.ndarray]:
        """``{name: mask}`` for each region (masks of the volume's shape)."""
        return {r["name"]: P.region_mask(r, self._mask_shape()) for r in self.regions}

    def slice_roi(self, axis: str | None = None, index: int | None = None) -> np.ndarray | None:
        """2D mask of the regions on one slice (the current one by default), e.g. for
        ``segment_image(image, model, roi=viewer.slice_roi())``; None without regions."""
        if not self.regions:
            return None
        axis = axis or self.axis
        index = self.slice_index if index is None else int(index)
        return P.slice_roi(self.regions, self.source.shape, axis, index)

    def roi(self) -> np.ndarray | None:
        """The context mask when :attr:`confine_to_regions` is on and regions exist, else None."""
        return self.context_mask() if self.confine_to_regions and self.regions else None

    # ---------------------------------------------------------------------------------- editing
    def _edit_layer(self, layer) -> LabelLayer:
        lay = self._layer_by_uid(layer) if isinstance(layer, int) and not isinstance(layer, bool) else None
        if lay is None and layer is not None and not isinstance(layer, int):
            lay = self.layer(layer)
        if lay is None:
            lay = self._active(create=True)
        if not lay.editable:
            raise ValueError(f"label layer {lay.name!r} is not editable")
        return lay

    def paint(
        self,
        points,
        size: float | None = None,
        label: int | None = None,
        axis: str | None = None,
        index: int | None = None,
        erase: bool = False,
        layer=None,
        _stroke=None,
    ) -> bool:
        """Paint (or erase) a stroke through ``points`` (``[row, col]`` on the slice); True if labels changed."""
        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            edit = apply_stroke(
                lay,
                axis,
                index,
                points,
                size or self.brush_size,
                self.current_label if label is None else label,
                erase=erase,
            )
            if edit is None:
                if _stroke is not None:  # let the browser drop its preview
                    self.send(
                        {
                            "type": "labels_update",
                            "layer": lay.uid,
                            "version": lay.version,
                            "scope": "none",
                            "full": False,
                            "axis": axis,
                            "index": index,
                            "stroke": _stroke,
                            "noop": True,
                        }
                    )
                return False
            self.history.record(edit)
            self._push_edit(edit, stroke=_stroke)
            return True

    def fill(
        self,
        row: int,
        col: int,
        label: int | None = None,
        axis: str | None = None,
        index: int | None = None,
        layer=None,
    ) -> bool:
        """Flood-fill the connected region under ``(row, col)`` of the slice; True if labels changed."""
        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            edit = apply_fill(lay, axis, index, row, col, self.current_label if label is None else label)
            if edit is None:
                return False
            self.history.record(edit)
            self._push_edit(edit)
            return True

    def apply_labels(self, new: np.ndarray, layer=None, description: str = "") -> bool:
        """Replace a layer's labels by ``new`` (same shape) as one undoable step."""
        with self._lock:
            lay = self._edit_layer(layer)
            edit = diff_volume(lay, new)
            if edit is None:
                return False
            self.history.record(edit)
            self._push_edit(edit)
            if description:
                self.message = description
            return True

    def undo(self) -> bool:
        with self._lock:
            e = self.history.undo()
            if e is None:
                self.message = "nothing to undo"
                return False
            self._push_edit(e, values="before")
            return True

    def redo(self) -> bool:
        with self._lock:
            e = self.history.redo()
            if e is None:
                self.message = "nothing to redo"
                return False
            self._push_edit(e, values="after")
            return True

    def new_label(self) -> int:
        """Set :attr:`current_label` to an unused id (one above the active layer's maximum)."""
        layer = self._active(create=False)
        if layer is None:
            nxt = 1
        else:
            nxt = None
            try:
                from .. import labels as L  # type: ignore[attr-defined]

                if hasattr(L, "next_label"):
                    nxt = int(L.next_label(layer.volume))
            except ImportError:
                pass
            if nxt is None:
                nxt = layer.max_label() + 1
        self.current_label = int(nxt)
        return self.current_label

    # ----------------------------------------------------------------------------- proofreading
    def _update_proofreading(self) -> None:
        try:
            from .. import labels as L  # type: ignore[attr-defined]
        except ImportError:
            self.proofreading = []
            return
        names = {
            "merge": "merge_labels",
            "split": "split_label",
            "delete": "delete_labels",
            "morph": "morph_label",
            "filter": "filter_labels",
        }
        self.proofreading = [op for op, fn in names.items() if hasattr(L, fn)]

    def proofread(
        self,
        op: str,
        selection: Sequence[dict] = (),
        axis: str | None = None,
        index: int | None = None,
        scope: str = "slice",
        layer=None,
        **kwargs,
    ) -> bool:
        """Run a proofreading operation from :mod:`empanada_nb.labels` on the active layer (undoable)."""
        from . import proofread as PR

        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            changed, msg = PR.run(lay, op, list(selection), axis, index, scope, self._apply_region, **kwargs)
            self.message = msg
            if changed:
                self.selection = []
            return changed

    def _apply_region(self, lay: LabelLayer, axis: str | None, index: int | None, new: np.ndarray) -> bool:
        """Record replacing one slice (axis, index) or the whole volume (axis None) by ``new``."""
        if axis is None:
            edit = diff_volume(lay, new)
            if edit is None:
                return False
            self.history.record(edit)
            self._push_edit(edit)
            return True
        view = lay.plane_view(axis, index)
        new = np.asarray(new, dtype=view.dtype)
        diff = view != new
        if not diff.any():
            return False
        rows, cols = np.nonzero(diff)
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        idx = lay.region_index(axis, index, r0, r1, c0, c1)
        before = lay.volume[idx].copy()
        after = new[r0:r1, c0:c1].copy()
        lay.volume[idx] = after
        lay.forget_max()
        edit = Edit(
            lay,
            before,
            after,
            index=idx,
            where={"axis": axis, "index": int(index), "r0": r0, "c0": c0, "h": r1 - r0, "w": c1 - c0},
        )
        self.history.record(edit)
        self._push_edit(edit)
        return True

    # --------------------------------------------------------------------------------- patches
    def save_patches(
        self, dataset_dir, name: str | None = None, model=None, layer=None, on_clash: str = "skip"
    ) -> dict[str, Any]:
        """Write the picked patches to ``dataset_dir/<name>/{images,masks}/*.tif`` (+ ``<name>_picks.json``).

        Masks come from ``layer`` (the active layer by default); a patch without labels gets
        ``model``'s prediction (or :attr:`model`'s) when one is given. Appends to an existing dataset;
        existing file names are skipped (``on_clash="skip"``) or refused (``"error"``).
        See :func:`empanada_nb.patches.save_patches`.
        """
        if not self.picks:
            raise ValueError("no picks to save: click with the pick tool or call fill_random_picks()")
        lay = self.layer(layer) if layer is not None else self._active(create=False)
        labels = None
        if lay is not None:
            labels = lay.data if lay.plane is None else None
        name = name or self.dataset_name or "patches"
        return P.save_patches(
            self.source,
            self.picks,
            dataset_dir,
            name,
            labels=labels,
            model=model if model is not None else self.model,
            on_clash=on_clash,
        )

    # ------------------------------------------------------------------------------- navigation
    def goto(self, axis: str | None = None, index: int | None = None, center=None) -> None:
        """Show slice ``index`` along ``axis`` (optionally centred at ``(row, col)``)."""
        axis = check_axis(axis or self.axis)
        index = self.slice_index if index is None else int(index)
        self.axis = axis
        self.slice_index = index
        self.send(
            {
                "type": "goto",
                "axis": axis,
                "index": self.slice_index,
                "center": list(center) if center is not None else None,
            }
        )
