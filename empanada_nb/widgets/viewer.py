"""The notebook viewer: slices of a 2D image or 3D volume with label overlays and tools.

Python keeps the data (image source, label arrays, picks, regions, undo history); the browser
(``static/viewer.js``) keeps a cache of slices, draws, and handles every mouse move, drag, zoom and
preview locally. Pixels travel as binary buffers of custom messages (encoded by
``_serialization``); Python receives only committed results (a pick, a finished stroke, a
rectangle or polygon, a fill; handled in ``_messages``) and answers with the changed label pixels.
Every label change goes through one commit path (``Viewer._commit``): record for undo, send, done.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from ..geometry import check_axis, n_slices, plane_shape
from . import _serialization as S
from ._esm import DebugFlag, assemble
from ._messages import ViewerMessages
from ._picking import PicksAndRegions
from ._serialization import decode_labels, encode_labels, label_color
from .editing import Edit, History, LabelLayer, apply_fill, apply_stroke, diff_slice, diff_volume
from .proofread import OPS as PROOFREAD_OPS
from .proofread import ProofreadTools
from .source import VolumeSource
from .source import percentiles as _percentiles

__all__ = ["Viewer", "decode_labels", "encode_labels", "label_color"]
STATIC = Path(__file__).parent / "static"


def _is_pyramid(data, level) -> bool:
    """A multiscale image: levels of different shapes in a list, a zarr group, or any data with ``level``."""
    if isinstance(data, (list, tuple)) and data and all(hasattr(a, "shape") for a in data):
        return level is not None or len({tuple(a.shape) for a in data}) > 1
    if level is None:
        return False
    return not hasattr(data, "shape") or hasattr(data, "arrays")


class Viewer(ViewerMessages, PicksAndRegions, ProofreadTools, anywidget.AnyWidget):
    """Slices of an image or volume with label layers, patch picking, context regions and label editing.

    Python keeps the data and the state (plain Python values, synced with the browser as traits);
    the browser draws. The raw image is never altered: display contrast is applied in the browser.

    Parameters
    ----------
    data : array-like or str or os.PathLike
        A 2D image or a 3D ``(Z, Y, X)`` volume: numpy array, TIFF path (read lazily page by page,
        or memory-mapped when uncompressed), zarr array or path, dask array, or a ``VolumeSource``;
        or a multiscale image: a list of levels (full resolution first; levels of different shapes),
        a zarr multiscale group or its path, of which ``level`` is shown.
    labels : array-like or dict or list, optional
        Label layers to add: an array of the image's shape, a dict ``{name: array}`` or a list of
        arrays. Writable numpy arrays are edited in place by the tools; other inputs are copied once.
    axis : str
        The viewing axis: ``"xy"``, ``"xz"`` or ``"yz"`` (only ``"xy"`` for 2D images).
    contrast_limits : tuple of float, optional
        Initial display range; by default percentiles of a sample of the data.
    patch_size : int
        Side of the training patches that the pick tool and ``fill_random_picks`` place.
    height : int
        Canvas height in CSS pixels.
    max_undo : int
        Undo steps kept.
    name : str, optional
        Dataset name used by ``save_patches`` (by default the file's stem, or ``"patches"``).
    level : int, optional
        The pyramid level of a multiscale ``data`` to show (0: full resolution). Picks, points files
        and saved patches are in that level's coordinates (``pyramid_scale`` maps them to level 0).
    **kwargs
        Initial values of other traits (``tool``, ``brush_size``, ``dataset_dir``, ...).

    Attributes
    ----------
    picks : list of dict
        Picked patches, ``{"axis", "z", "y", "x", "size"}`` each (``z, y, x``: the patch centre).
    regions : list of dict
        Context regions, ``{"name", "axis", "slice", "shape", "points", "all_slices"}`` each.
    slice_index : int
        The slice shown along ``axis``.
    layers : list of dict
        Label layer metadata as the browser sees it (uid, name, opacity, visible, version, ...).
    label_layers : list of LabelLayer
        The label layers themselves (``.data`` is the label array).
    model : torch.nn.Module or None
        Model used by ``save_patches`` for patches without labels when none is passed.

    Examples
    --------
    >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
    >>> v.shape, v.axis, v.slice_index, [layer["name"] for layer in v.layers]
    ([2, 32, 32], 'xy', 1, ['labels'])
    >>> v.add_pick("xy", 1, row=16, col=16, size=16)
    {'axis': 'xy', 'z': 1, 'y': 16, 'x': 16, 'size': 16}
    >>> v.paint([[4, 4], [4, 20]], size=3, label=5), int(v.labels.max())
    (True, 5)

    In a notebook, the last expression of a cell (``v``) shows the widget.
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
    tool = t.Enum(
        ["pan", "pick", "rect", "polygon", "paint", "erase", "fill", "picker", "select", "marker"], "pan"
    ).tag(sync=True)
    brush_size = t.Int(10).tag(sync=True)
    current_label = t.Int(1).tag(sync=True)
    patch_size = t.Int(256).tag(sync=True)
    picks = t.List(t.Dict()).tag(sync=True)
    regions = t.List(t.Dict()).tag(sync=True)
    selection = t.List(t.Dict(), help="labels selected for proofreading: {id, axis, index, row, col}").tag(sync=True)
    proofreading = t.List(t.Unicode(), help="proofreading operations available").tag(sync=True)
    markers = t.List(t.Dict(), help="split seeds placed with the marker tool: {axis, index, row, col}").tag(sync=True)
    label_divisor = t.Int(0, help="panoptic ids class * label_divisor + instance (0: ids carry no class)").tag(
        sync=True
    )
    class_names = t.List(t.Unicode(), help="names of classes 1, 2, ... (label counts)").tag(sync=True)
    label_counts = t.List(t.Dict(), help="the last count_labels() table: {class, name, slice, count, ids}").tag(
        sync=True
    )
    confine_to_regions = t.Bool(False, help="confine inference and metrics to the context regions").tag(sync=True)
    view_box = t.List(
        t.Int(),
        help="[axis (0 xy, 1 xz, 2 yz), slice, r0, c0, r1, c1]: the part of a slice the browser shows ([]: not yet)",
    ).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    can_undo = t.Bool(False).tag(sync=True)
    can_redo = t.Bool(False).tag(sync=True)
    height = t.Int(560, help="canvas height in CSS pixels").tag(sync=True)
    prefetch = t.Int(4, help="slices the browser prefetches ahead of the scroll direction").tag(sync=True)
    cache_mb = t.Int(256, help="browser slice cache budget in MiB").tag(sync=True)
    flipbook = t.Int(0, help="flipbook depth: consecutive slices saved per pick (0: off; empanada-napari uses 5)").tag(
        sync=True
    )
    level = t.Int(0, help="the pyramid level shown, of a multiscale image (picks are in its coordinates)").tag(
        sync=True
    )
    n_levels = t.Int(1, help="levels of the multiscale image").tag(sync=True)
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
        level: int | None = None,
        **kwargs,
    ):
        n_levels, self.pyramid_scale = 1, (1.0, 1.0, 1.0)
        if _is_pyramid(data, level):
            from ..patches import pyramid_level, pyramid_levels

            n_levels = len(pyramid_levels(data))
            data, scale = pyramid_level(data, level or 0)
            self.pyramid_scale = (1.0,) * (3 - len(scale)) + scale
            kwargs.update(level=int(level or 0) % n_levels, n_levels=n_levels)
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
        """Set the contrast limits to percentiles of the current slice or of a sample of the volume.

        Parameters
        ----------
        percentiles : tuple of float
            Lower and upper percentile (0-100).
        scope : str
            ``"slice"``: the slice shown; anything else: a sample of the whole volume.

        Returns
        -------
        tuple of float
            The new ``(low, high)`` contrast limits (also set as ``contrast_limits``).

        Examples
        --------
        >>> v = Viewer(np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32))
        >>> v.auto_contrast((0, 100))
        (1024.0, 2047.0)
        >>> v.contrast_limits
        [1024.0, 2047.0]
        """
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
        """The image source: array-like with ``(Z, Y, X)`` indexing (a 2D image has ``Z = 1``).

        Returns
        -------
        VolumeSource
            The wrapped image; ``shape``, ``dtype``, ``ndim``, ``plane(axis, index)`` and numpy indexing.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.data.shape, v.data.plane("xz", 3).shape
        ((2, 32, 32), (2, 32))
        """
        return self.source

    def current_slice(self) -> np.ndarray:
        """The raw image slice currently shown (``slice_index`` along ``axis``), as Python knows it.

        Returns
        -------
        numpy.ndarray
            The 2D slice, in the data's own dtype (no display contrast applied).

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 48), np.uint8), axis="xz")
        >>> v.current_slice().shape
        (2, 48)
        """
        return self.source.plane(self.axis, self.slice_index)

    @property
    def label_shape(self) -> tuple[int, ...]:
        """The shape of label layers and masks: the volume's, or the image's for 2D data.

        Returns
        -------
        tuple of int
            ``(Z, Y, X)`` for a volume, ``(Y, X)`` for a 2D image.

        Examples
        --------
        >>> Viewer(np.zeros((2, 32, 32), np.uint8)).label_shape
        (2, 32, 32)
        >>> Viewer(np.zeros((32, 32), np.uint8)).label_shape
        (32, 32)
        """
        return tuple(self.source.shape) if self.source.ndim == 3 else tuple(self.source.shape[1:])

    @property
    def labels(self) -> np.ndarray | None:
        """The active label layer's array: the one the editing tools change.

        Returns
        -------
        numpy.ndarray or None
            The array (the user's own when it was a writable numpy array); None without label layers.

        Examples
        --------
        >>> labels = np.zeros((2, 32, 32), np.uint32)
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=labels)
        >>> v.labels is labels
        True
        >>> Viewer(np.zeros((2, 32, 32), np.uint8)).labels is None
        True
        """
        layer = self._active(create=False)
        return layer.data if layer is not None else None

    def layer(self, key: str | int) -> LabelLayer:
        """A label layer by name, list index or uid.

        Parameters
        ----------
        key : str or int
            The layer's name, its index in ``label_layers`` (negative counts from the end) or its uid.

        Returns
        -------
        LabelLayer
            The layer (``.data``, ``.name``, ``.opacity``, ``.visible``, ``.editable``, ``.plane``).

        Raises
        ------
        KeyError
            When no layer matches; the message lists the layer names.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels={"mito": np.zeros((2, 32, 32), np.uint32)})
        >>> v.layer("mito").name, v.layer(0) is v.layer("mito"), v.layer(-1).data.shape
        ('mito', True, (2, 32, 32))
        """
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
        """Add a label layer of the image's shape, or a 2D layer shown on one slice only.

        A writable numpy array is edited in place by the tools; other inputs are copied once. Names are
        made unique. The first editable volume layer becomes the active (edited) one.

        Parameters
        ----------
        array : array-like or str or os.PathLike
            Integer labels of ``label_shape`` (of the slice's shape with ``plane``), or an image file.
        name : str, optional
            Layer name (``"labels"`` by default); ``" [1]"``, ``" [2]"``... is appended when taken.
        opacity : float
            Overlay opacity, 0 to 1.
        visible : bool
            Whether the layer is drawn.
        editable : bool
            Whether the editing tools may change it.
        plane : tuple of (str, int), optional
            ``(axis, index)``: a 2D layer for that slice only (e.g. a preview of a prediction).
        active : bool
            Make it the layer the editing tools change.

        Returns
        -------
        LabelLayer
            The new layer.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.add_labels(np.zeros((2, 32, 32), np.uint32), name="mito")
        >>> layer.name, v.labels is layer.data
        ('mito', True)
        >>> v.add_labels(np.ones((32, 32), np.uint8), name="mito", plane=("xy", 1), editable=False).name
        'mito [1]'
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
        """Add an empty, editable uint32 label layer of the image's shape (see ``add_labels``).

        Parameters
        ----------
        name : str
            Layer name (made unique).
        active : bool
            Make it the layer the editing tools change.

        Returns
        -------
        LabelLayer
            The new layer.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.new_layer("cells")
        >>> layer.data.shape, layer.data.dtype, int(layer.data.max())
        ((2, 32, 32), dtype('uint32'), 0)
        """
        return self.add_labels(np.zeros(self.label_shape, dtype=np.uint32), name=name, active=active)

    def set_labels(self, name: str, array: Any, **kwargs) -> LabelLayer:
        """Replace the data of layer ``name`` (added when missing); the browser refreshes its slices.

        The layer's undo history is dropped. To change one slice undoably, use ``set_slice``.

        Parameters
        ----------
        name : str
            The layer's name.
        array : array-like
            The new labels (of the layer's shape; of the slice's shape for a ``plane`` layer).
        **kwargs
            ``add_labels`` arguments used when the layer is added; ``plane`` also moves an existing
            slice layer to another slice.

        Returns
        -------
        LabelLayer
            The layer.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.set_labels("preview", np.ones((32, 32), np.uint8), plane=("xy", 1), editable=False)
        >>> layer.plane, layer.editable
        (('xy', 1), False)
        >>> v.set_labels("preview", np.full((32, 32), 2, np.uint8)) is layer, int(layer.data.max())
        (True, 2)
        """
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
        """Remove a label layer (the user's array itself is left as it is).

        Parameters
        ----------
        key : str or int
            The layer's name, list index or uid (see ``layer``).

        Returns
        -------
        None

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=[np.zeros((2, 32, 32), np.uint32)] * 2)
        >>> [layer["name"] for layer in v.layers]
        ['labels', 'labels 1']
        >>> v.remove_labels("labels")
        >>> [layer["name"] for layer in v.layers]
        ['labels 1']
        """
        with self._lock:
            layer = self.layer(key)
            self.label_layers.remove(layer)
            self.history.drop_layer(layer)
            if self.active_layer == layer.uid:
                self.active_layer = self.label_layers[0].uid if self.label_layers else 0
            self._sync_layers()

    def refresh(self, key: str | int | None = None) -> None:
        """Tell the browser that label arrays changed outside the viewer, so that it redraws them.

        Parameters
        ----------
        key : str or int, optional
            The layer that changed (see ``layer``); None: all layers.

        Returns
        -------
        None

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.labels[0, :4, :4] = 7  # changed in place, outside the viewer
        >>> before = v.layers[0]["version"]
        >>> v.refresh("labels")
        >>> v.layers[0]["version"] - before  # the browser refetches the slices of a new version
        1
        """
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
        """Paint (or erase) a stroke through ``points`` on one slice, as one undoable step.

        Parameters
        ----------
        points : sequence of (float, float)
            ``[row, col]`` points of the stroke on the slice.
        size : float, optional
            Brush diameter in pixels (``brush_size`` by default).
        label : int, optional
            The label painted (``current_label`` by default).
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).
        erase : bool
            Set the stroke's pixels to 0 instead.
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[4, 4], [4, 20]], size=3, label=5, index=0), int(v.labels[0].max()), int(v.labels[1].max())
        (True, 5, 0)
        >>> v.paint([[4, 4], [4, 20]], size=5, erase=True, index=0), int(v.labels.max())
        (True, 0)
        """
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
        """Flood-fill the connected region under ``(row, col)`` of one slice, as one undoable step.

        Parameters
        ----------
        row : int
            Row of the pixel whose connected region (the pixels of its label) is filled.
        col : int
            Its column.
        label : int, optional
            The label filled in (``current_label`` by default).
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> labels = np.zeros((2, 32, 32), np.uint32)
        >>> labels[:, 8, :] = 1  # a line splits each slice into two regions
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=labels)
        >>> v.fill(0, 0, label=2, index=1), int((labels[1] == 2).sum()), int((labels[0] == 2).sum())
        (True, 256, 0)
        """
        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            return self._commit(apply_fill(lay, axis, index, row, col, self.current_label if label is None else label))

    def apply_labels(self, new: np.ndarray, layer=None, description: str = "") -> bool:
        """Replace a layer's labels by ``new`` (same shape) as one undoable step.

        Parameters
        ----------
        new : numpy.ndarray
            The new labels, of the layer's shape.
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.
        description : str
            Shown in the status line when labels changed.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.apply_labels(np.ones((2, 32, 32), np.uint32), description="all ones"), v.message
        (True, 'all ones')
        >>> v.undo(), int(v.labels.max())
        (True, 0)
        """
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
        """Undo the last label change (of any layer).

        Returns
        -------
        bool
            True if there was a change to undo.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[16, 16]], size=4, label=3), v.can_undo
        (True, True)
        >>> v.undo(), int(v.labels.max()), v.can_redo
        (True, 0, True)
        >>> v.undo(), v.message
        (False, 'nothing to undo')
        """
        with self._lock:
            e = self.history.undo()
            if e is None:
                self.message = "nothing to undo"
                return False
            self._push_edit(e, values="before")
            return True

    def redo(self) -> bool:
        """Redo the last undone label change.

        Returns
        -------
        bool
            True if there was a change to redo.

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[16, 16]], size=4, label=3), v.undo(), v.redo(), int(v.labels.max())
        (True, True, True, 3)
        >>> v.redo(), v.message
        (False, 'nothing to redo')
        """
        with self._lock:
            e = self.history.redo()
            if e is None:
                self.message = "nothing to redo"
                return False
            self._push_edit(e, values="after")
            return True

    # ------------------------------------------------------------------------------- navigation
    def goto(self, axis: str | None = None, index: int | None = None, center=None) -> None:
        """Show slice ``index`` along ``axis``, optionally centred at ``(row, col)``.

        Parameters
        ----------
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice (the current one by default); clamped to the volume.
        center : tuple of float, optional
            ``(row, col)`` on that slice to centre the view at.

        Returns
        -------
        None

        Examples
        --------
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.goto("xz", 10, center=(1, 16))
        >>> v.axis, v.slice_index
        ('xz', 10)
        >>> v.goto(index=99)
        >>> v.slice_index
        31
        """
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
