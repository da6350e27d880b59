"""The notebook viewer: slices of a 2D image or 3D volume with label overlays and tools.

Python keeps the data (image source, label arrays, picks, regions, undo history); the browser
(``static/viewer.js``) keeps a cache of slices, draws, and handles every mouse move, drag, zoom and
preview locally. Pixels travel as binary buffers of custom messages (encoded by
:mod:`._serialization`); Python receives only committed results (a pick, a finished stroke, a
rectangle or polygon, a fill; handled in :mod:`._messages`) and answers with the changed label pixels.
Every label change goes through one commit path (:meth:`Viewer._commit`): record for undo, send, done.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from .. import labels as L
from ..geometry import check_axis, n_slices, plane_shape
from . import _serialization as S
from ._esm import DebugFlag, assemble
from ._messages import ViewerMessages
from ._picking import PicksAndRegions
from ._serialization import decode_labels, encode_labels, label_color
from .editing import Edit, History, LabelLayer, apply_fill, apply_stroke, diff_slice, diff_volume
from .proofread import OPS as PROOFREAD_OPS
from .source import VolumeSource
from .source import percentiles as _percentiles

__all__ = ["Viewer", "decode_labels", "encode_labels", "label_color"]
STATIC = Path(__file__).parent / "static"


class Viewer(ViewerMessages, PicksAndRegions, anywidget.AnyWidget):
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
        drange = source.data_range()
        if contrast_limits is None:
            contrast_limits = source.initial_contrast()
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
        self.proofreading = list(PROOFREAD_OPS)
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
    def auto_contrast(self, percentiles=(0.5, 99.5), scope: str = "slice") -> tuple[float, float]:
        """Set the contrast limits to percentiles of the current slice (``scope="slice"``) or of a sample."""
        vals = self.current_slice() if scope == "slice" else self.source.sample()
        lo, hi = _percentiles(vals, percentiles)
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

    # ------------------------------------------------------------------------------ data access
    @property
    def data(self):
        """The image source (array-like, ``(Z, Y, X)`` indexing; see :class:`VolumeSource`)."""
        return self.source

    def current_slice(self) -> np.ndarray:
        """The raw image slice currently shown (as Python knows it)."""
        return self.source.plane(self.axis, self.slice_index)

    @property
    def label_shape(self) -> tuple[int, ...]:
        """The shape of label layers and masks: the volume's, or the image's for 2D data."""
        return tuple(self.source.shape) if self.source.ndim == 3 else tuple(self.source.shape[1:])

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
            layer = self.new_layer("labels")
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

    def new_layer(self, name: str = "labels", active: bool = False) -> LabelLayer:
        """Add an empty, editable uint32 label layer of the image's shape (see :meth:`add_labels`)."""
        return self.add_labels(np.zeros(self.label_shape, dtype=np.uint32), name=name, active=active)

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
    def _send_slice(
        self, axis: str, index: int, image: bool = True, layers: Iterable[int] | None = None, rid: int | None = None
    ) -> None:
        axis = check_axis(axis)
        index = int(index)
        shape = plane_shape(self.source.shape, axis)
        parts: list[S.Part] = []
        with self._lock:
            if image:
                parts += S.image_parts(self.source.plane(axis, index))
            uids = [l.uid for l in self.label_layers] if layers is None else list(layers)
            for layer in filter(None, map(self._layer_by_uid, uids)):
                parts += S.label_parts(layer.plane_view(axis, index), shape, layer.uid, layer.version)
        groups = S.group_parts(parts)
        for gi, group in enumerate(groups):
            content = {"type": "data", "rid": rid, "axis": axis, "index": index}
            content.update(parts=[m for m, _ in group], last=gi == len(groups) - 1)
            self.send(content, buffers=[b for _, b in group if b is not None])

    def _push_edit(self, edit: Edit, stroke: int | None = None, values: str = "after") -> None:
        """Send the browser what ``edit`` changed, then bump the layer version."""
        layer = edit.layer
        layer.version += 1
        if edit.where:
            patch = edit.after if values == "after" else edit.before
            content, buf = S.patch_update(layer.uid, layer.version, edit.where, patch, stroke)
            self.send(content, buffers=[buf])
        else:
            self._push_full(layer, stroke=stroke)
        self._sync_layers()

    def _push_full(self, layer: LabelLayer, stroke: int | None = None) -> None:
        """Send the current slice of ``layer`` whole; every other cached slice of it becomes stale."""
        axis, index = layer.plane if layer.plane is not None else (self.axis, self.slice_index)
        shape = plane_shape(self.source.shape, axis)
        view = layer.plane_view(axis, index)
        content, buffers = S.full_update(layer.uid, layer.version, axis, index, shape, view, stroke)
        self.send(content, buffers=buffers)

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
            if edit is None and _stroke is not None:  # let the browser drop its preview
                self.send(S.noop_update(lay.uid, lay.version, axis, index, _stroke))
            return self._commit(edit, stroke=_stroke)

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
            return self._commit(apply_fill(lay, axis, index, row, col, self.current_label if label is None else label))

    def apply_labels(self, new: np.ndarray, layer=None, description: str = "") -> bool:
        """Replace a layer's labels by ``new`` (same shape) as one undoable step; True if labels changed."""
        with self._lock:
            return self._commit(diff_volume(self._edit_layer(layer), new), message=description)

    def set_slice(self, layer, axis: str, index: int, labels: np.ndarray, description: str = "") -> bool:
        """Replace slice ``index`` along ``axis`` of ``layer`` by ``labels`` as one undoable step.

        Only the changed box of that slice is stored for undo and sent to the browser, so writing one
        slice of a large volume costs one slice, not a copy of the volume.

        Parameters
        ----------
        layer : str or int or None
            A layer name, list index or uid (None: the active layer).
        axis : str
            ``"xy"``, ``"xz"`` or ``"yz"``.
        index : int
            The slice along ``axis``.
        labels : numpy.ndarray
            Labels of the slice's shape.
        description : str, optional
            Shown in the status line when labels changed.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> v = Viewer(np.zeros((3, 8, 8), np.uint8), labels=np.zeros((3, 8, 8), np.uint32))
        >>> v.set_slice("labels", "xy", 1, np.ones((8, 8), np.uint32)), int(v.labels.sum())
        (True, 64)
        >>> v.undo(), int(v.labels.sum())
        (True, 0)
        """
        with self._lock:
            lay = self._edit_layer(layer)
            return self._commit(diff_slice(lay, check_axis(axis), int(index), labels), message=description)

    def _commit(self, edit: Edit | None, stroke: int | None = None, message: str = "") -> bool:
        """The one path of every label change: record it for undo, send it to the browser."""
        if edit is None:
            return False
        self.history.record(edit)
        self._push_edit(edit, stroke=stroke)
        if message:
            self.message = message
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
        self.current_label = 1 if layer is None else int(L.next_label(layer.volume))
        return self.current_label

    # ----------------------------------------------------------------------------- proofreading
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
        return self._commit(diff_volume(lay, new) if axis is None else diff_slice(lay, axis, int(index), new))

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
