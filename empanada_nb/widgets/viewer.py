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

from ..geometry import AXIS_DIMS, check_axis, n_slices, plane_shape
from . import _serialization as S
from ._autosave import Autosave
from ._edits import LabelEdits
from ._esm import DebugFlag, assemble
from ._layers import LabelLayers
from ._messages import ViewerMessages
from ._picking import PicksAndRegions
from ._serialization import decode_labels, encode_labels, label_color
from ._suggestions import SuggestionTools
from .editing import History, LabelLayer
from .proofread import OPS as PROOFREAD_OPS
from .proofread import ProofreadTools
from .source import VolumeSource, open_levels
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


class Viewer(
    ViewerMessages,
    LabelLayers,
    LabelEdits,
    PicksAndRegions,
    SuggestionTools,
    ProofreadTools,
    Autosave,
    anywidget.AnyWidget,
):
    """Slices of an image or volume with label layers, patch picking, context regions and label editing.

    Python keeps the data and the state (plain Python values, synced with the browser as traits);
    the browser draws. The raw image is never altered: display contrast is applied in the browser.

    Parameters
    ----------
    data : array-like or str or os.PathLike
        A 2D image or a 3D ``(Z, Y, X)`` volume: numpy array, TIFF path (read lazily page by page,
        or memory-mapped when uncompressed), zarr array or path, dask array, or a ``VolumeSource``;
        or a multiscale image: a list of levels (full resolution first; levels of different shapes),
        an OME-Zarr multiscale group or its path. A multiscale image is never loaded: the browser asks
        for the level that its zoom needs (coarser when zoomed out), and only the slices shown are read.
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
        Show only this pyramid level of a multiscale ``data`` (0: full resolution), as if it were the
        image: picks, points files and saved patches are then in that level's coordinates
        (``pyramid_scale`` maps them to level 0). By default (None) the level follows the zoom and every
        coordinate (picks, regions, labels, edits) is level 0's; label layers are level 0 arrays, shown
        downsampled when a coarser level is.
    voxel_size : tuple of float, optional
        ``(z, y, x)`` voxel size: xz and yz slices are drawn stretched by ``z / x`` and ``z / y`` (click
        coordinates stay in voxels). By default the OME-Zarr metadata's, else isotropic.
    **kwargs
        Initial values of other traits (``tool``, ``brush_size``, ``dataset_dir``, ...).
    autosave : bool or str or os.PathLike, optional
        Keep label edits, picks and regions on disk as they are made (``empanada_nb.autosave``): None
        (default) autosaves a Viewer opened on a file (beside it when the user owns it and can write
        there, else in the user's cache), True also one opened on an array (in the cache), a folder
        puts the sessions there, False turns it off. Sessions of an earlier kernel are offered for
        ``restore_autosave`` (``autosave_offer``).

    Attributes
    ----------
    picks : list of dict
        Picked patches, ``{"axis", "z", "y", "x", "size"}`` each (``z, y, x``: the patch centre).
    suggestions : list of dict
        Patches suggested by ``suggest`` (picks' keys plus ``"score"``), to accept or reject.
    rejected_suggestions : list of dict
        Suggestions rejected so far (excluded from later ones).
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
        ["pan", "pick", "rect", "polygon", "paint", "erase", "unlabelled", "fill", "picker", "select", "marker"], "pan"
    ).tag(sync=True)
    brush_size = t.Int(10).tag(sync=True)
    current_label = t.Int(1).tag(sync=True)
    patch_size = t.Int(256).tag(sync=True)
    picks = t.List(t.Dict()).tag(sync=True)
    regions = t.List(t.Dict()).tag(sync=True)
    suggestions = t.List(
        t.Dict(), help="suggested patches (``suggest``): picks' keys plus score, to accept or reject"
    ).tag(sync=True)
    rejected_suggestions = t.List(t.Dict(), help="rejected suggestions: never suggested again")
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
    level = t.Int(
        0,
        help="the pyramid level shown: the one the browser's zoom needs (coordinates stay level 0's), "
        "or the one fixed by level= (picks are then in its coordinates)",
    ).tag(sync=True)
    n_levels = t.Int(1, help="levels of the multiscale image").tag(sync=True)
    level_scales = t.List(
        t.List(t.Float()),
        help="(z, y, x) factors of each level to level 0 when the level follows the zoom ([]: one level shown)",
    ).tag(sync=True)
    voxel_size = t.List(t.Float(), default_value=[1.0, 1.0, 1.0], help="(z, y, x) voxel size").tag(sync=True)
    max_slice_mpix = t.Float(
        64.0, help="largest slice (megapixels) read at once: zoomed in further, a multiscale image stays coarser"
    ).tag(sync=True)
    dataset_dir = t.Unicode("").tag(sync=True)
    dataset_name = t.Unicode("").tag(sync=True)
    autosave_offer = t.Unicode("", help="autosaved work of an earlier session to restore or discard ('': none)").tag(
        sync=True
    )

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
        voxel_size=None,
        autosave: bool | str | Path | None = None,
        **kwargs,
    ):
        source_arg = data
        n_levels, self.pyramid_scale = 1, (1.0, 1.0, 1.0)
        #: the levels of a multiscale image whose shown level follows the zoom (None: one level)
        self.levels: list[VolumeSource] | None = None
        pyramid = open_levels(data) if level is None else None
        if pyramid is not None:
            levels, scales, meta_voxel = pyramid
            self.levels = [VolumeSource(a) for a in levels]
            data = self.levels[0]
            kwargs.update(level=0, n_levels=len(levels), level_scales=[list(s) for s in scales])
            if voxel_size is None and meta_voxel is not None:
                voxel_size = meta_voxel
        elif _is_pyramid(data, level):
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
        stats = self.levels[-1] if self.levels else source  # never a whole level-0 slice of a large pyramid
        drange = stats.data_range()
        if contrast_limits is None:
            contrast_limits = stats.initial_contrast()
        if voxel_size is not None:
            vs = [float(v) for v in voxel_size]
            if len(vs) != 3 or not all(v > 0 for v in vs):
                raise ValueError(f"voxel_size={voxel_size!r}: give three positive sizes (z, y, x)")
            kwargs["voxel_size"] = [v * f for v, f in zip(vs, self.pyramid_scale)]
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
        self._autosave_init(source_arg, autosave)
        self.observe(self._autosave_meta, names=["picks", "regions"])

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

    def _send_slice(
        self,
        axis: str,
        index: int,
        image: bool = True,
        layers: Iterable[int] | None = None,
        rid: int | None = None,
        level: int = 0,
    ) -> None:
        axis = check_axis(axis)
        index = int(index)
        level = min(max(0, int(level)), len(self.levels) - 1) if self.levels else 0
        shape = plane_shape(self.source.shape, axis)
        step = (1, 1)
        parts: list[S.Part] = []
        with self._lock:
            if level:  # a coarser level: its slice nearest to level 0's `index`, labels downsampled to it
                fixed, (rd, cd) = AXIS_DIMS[axis]
                f = self.level_scales[level]
                src = self.levels[level]
                step = (max(1, round(f[rd])), max(1, round(f[cd])))
                shape = (-(-shape[0] // step[0]), -(-shape[1] // step[1]))
            if image:
                plane = src.plane(axis, min(int(index / f[fixed]), n_slices(src.shape, axis) - 1)) if level else None
                parts += S.image_parts(self.source.plane(axis, index) if plane is None else plane)
            uids = [l.uid for l in self.label_layers] if layers is None else list(layers)
            for layer in filter(None, map(self._layer_by_uid, uids)):
                view = layer.plane_view(axis, index)
                if level and view is not None:
                    view = np.ascontiguousarray(view[:: step[0], :: step[1]])
                parts += S.label_parts(view, shape, layer.uid, layer.version)
        groups = S.group_parts(parts)
        for gi, group in enumerate(groups):
            content = {"type": "data", "rid": rid, "axis": axis, "index": index, "level": level}
            content.update(parts=[m for m, _ in group], last=gi == len(groups) - 1)
            self.send(content, buffers=[b for _, b in group if b is not None])

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
