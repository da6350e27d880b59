"""3D inference: stack inference with slice linking, ortho-plane consensus (inputs opened by reader.py).

Memory stays bounded by a working set of a few slices whatever the number of slices: input
slices are read lazily in blocks, labels are written slab by slab into the output (numpy or
zarr), and the backward linking pass and the size filter re-read the output slab by slab.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn as nn

from ._atomic import MARKER, PathLike, atomic_dir, atomic_path, claim, temp_dir
from ._prefetch import prefetch
from .cancel import Cancelled, check_cancel
from .data.io import intensity_range, normalize_image
from .geometry import AXES, axis_dim, check_axis
from .inference import Predictor, as_image2d, check_divisor, engine, label_dtype, model_norms
from .models.blocks import semantic_channels
from .progress import Progress, ProgressBar
from .reader import Pyramid, is_zarr_group, open_pyramid, open_volume
from .tracking import LabelStats, SliceLinker, apply_map, thing_mask

#: slices per output slab when the output has no chunking of its own (numpy)
SLAB = 16

__all__ = [
    "Cancelled",
    "as_volume",
    "open_volume",
    "segment_ortho",
    "segment_stack",
    "volume_irange",
    "write_volume_tiff",
]


# --------------------------------------------------------------------------------------------
# lazy volumes
# --------------------------------------------------------------------------------------------


def as_volume(volume, what: str = "volume"):
    """``volume`` (array-like or path) as a 3D array-like, or a one-line ValueError."""
    if isinstance(volume, (str, os.PathLike, Pyramid)) or is_zarr_group(volume):
        volume = open_volume(volume)  # a path, an OME-Zarr pyramid or group: its full resolution
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    if not hasattr(volume, "shape") or not hasattr(volume, "__getitem__"):
        volume = np.asarray(volume)
    shape = tuple(volume.shape)
    if len(shape) == 4 and shape[-1] in (3, 4):
        raise ValueError(f"{what} has a colour channel axis (shape {shape}); convert it to greyscale first")
    if len(shape) != 3:
        raise ValueError(f"{what} must be 3D (Z, Y, X), got shape {shape}; for 2D images use segment_image")
    if min(shape) == 0:
        raise ValueError(f"{what} is empty (shape {shape})")
    if np.dtype(volume.dtype).kind not in "biuf":
        raise ValueError(f"{what} has dtype {volume.dtype}; pass a numeric greyscale volume")
    return volume


def volume_irange(volume, n_samples: int = 8) -> tuple[float, float]:
    """Intensity range of a volume from a few evenly spaced xy slices (read lazily)."""
    if np.dtype(volume.dtype) == np.uint8:
        return 0.0, 255.0
    idx = np.unique(np.linspace(0, volume.shape[0] - 1, min(n_samples, volume.shape[0])).astype(int))
    return intensity_range(np.stack([np.asarray(volume[int(i)]) for i in idx]))


def _sl(axis: int, i0: int, i1: int) -> tuple:
    s = [slice(None)] * 3
    s[axis] = slice(i0, i1)
    return tuple(s)


class AxisIO:
    """Read/write blocks of slices of a 3D array-like along one axis, slices first."""

    def __init__(self, array, axis: int):
        self.array, self.axis = array, axis
        self.n = array.shape[axis]
        self.plane = tuple(s for d, s in enumerate(array.shape) if d != axis)

    def read(self, i0: int, i1: int) -> np.ndarray:
        return np.moveaxis(np.asarray(self.array[_sl(self.axis, i0, i1)]), self.axis, 0)

    def write(self, i0: int, data: np.ndarray) -> None:
        self.array[_sl(self.axis, i0, i0 + len(data))] = np.moveaxis(data, 0, self.axis)

    def thickness(self, cap: int = 64) -> int:
        """Slab thickness that writes whole chunks (numpy: ``SLAB``)."""
        t = chunk_len(self.array, self.axis) or SLAB
        return int(max(1, min(t, cap, self.n)))


def chunk_len(array, axis: int) -> int | None:
    """Chunk length of ``array`` along ``axis``: zarr's int, dask's largest block (its chunks are
    tuples of block sizes per axis), None for numpy and unchunked array-likes."""
    chunks = getattr(array, "chunks", None)
    if not chunks or isinstance(array, np.ndarray):
        return None
    c = chunks[axis]
    return int(max(c)) if isinstance(c, tuple) else int(c)


class BlockReader:
    """Slices along an axis, read ``block`` at a time (one decode of each chunk per block)."""

    def __init__(self, volume, axis: int, batch_size: int, cache_mb: float):
        self.io = AxisIO(volume, axis)
        slice_bytes = int(np.prod(self.io.plane)) * np.dtype(volume.dtype).itemsize
        budget = max(1, int(cache_mb * 2**20 // max(1, slice_bytes)))
        if isinstance(volume, np.ndarray):  # in memory or memory-mapped: slicing is cheap
            want = batch_size
        elif axis == 0:
            want = max(batch_size, chunk_len(volume, 0) or 1)
        else:  # each xz/yz slice touches every z chunk: read as many as the budget allows
            want = self.io.n
        self.block = int(max(1, min(self.io.n, max(batch_size, min(want, budget)))))
        self._b0, self._data = -1, None

    def __getitem__(self, i: int) -> np.ndarray:
        b0 = (i // self.block) * self.block
        if b0 != self._b0:
            self._data = None  # release the old block before reading the next
            self._data = self.io.read(b0, min(self.io.n, b0 + self.block))
            self._b0 = b0
        return self._data[i - b0]


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr", ".zarr/", "")


def output_kind(path: PathLike) -> str:
    """``"tiff"`` or ``"zarr"`` for an output path by its suffix, or a ValueError naming the supported ones.

    Parameters
    ----------
    path : str or os.PathLike
        An output path: ``.tif``/``.tiff`` for TIFF, ``.zarr`` or no suffix for a zarr folder.

    Returns
    -------
    str
        ``"tiff"`` or ``"zarr"``.

    Example
    -------
    >>> output_kind("labels.tif")
    'tiff'
    """
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    raise ValueError(
        f"{path}: unsupported output suffix {suffix!r}; use .tif or .tiff (TIFF) or .zarr or no suffix (zarr folder)"
    )


def mark_zarr(arr) -> None:
    """Mark a zarr array as written by empanada_nb (what lets ``overwrite`` replace it later)."""
    from . import __version__

    arr.attrs[MARKER] = {"version": __version__, "kind": "labels"}


def default_chunks(shape: Sequence[int], axis: int) -> tuple[int, ...]:
    """Thin along the slicing axis (slabs are written whole), 256 in the plane."""
    return tuple(min(s, SLAB if d == axis else 256) for d, s in enumerate(shape))


def is_ome_zarr(path) -> bool:
    """Whether an output path asks for OME-Zarr labels (its name ends in ``.ome.zarr``)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).name.lower().rstrip("/").endswith(".ome.zarr")


@contextlib.contextmanager
def output_array(
    out, shape: tuple[int, ...], dtype, axis: int = 0, chunks=None, overwrite: bool = False, source=None
) -> Iterator:
    """Yield a writable array for ``out``: None (new numpy), a numpy/zarr array, or a zarr folder path.

    A path is written through a temporary folder renamed on success, so a failed or cancelled
    run never leaves a complete-looking store behind. A path ending in ``.ome.zarr`` becomes
    OME-Zarr labels (``omezarr.py``: a pyramid, with the voxel size of ``source``, the input).
    """
    if is_ome_zarr(out):
        from . import omezarr

        path = Path(out)
        vs, unit = _voxel_size(source)
        with atomic_dir(path, overwrite) as tmp:
            chunks = tuple(chunks or default_chunks(shape, axis))
            arr = omezarr._init_group(tmp, shape, dtype, chunks, vs, unit, path.name, "labels", overwrite)
            yield arr
            omezarr._build_levels(tmp, None, False)
        return
    if out is None:
        yield np.zeros(shape, dtype)
        return
    if isinstance(out, (str, os.PathLike)):
        import zarr

        path = Path(out)
        if output_kind(path) == "tiff":
            raise ValueError(f"{path}: out must be a zarr folder (or an array); write TIFF with write_volume_tiff")
        with atomic_dir(path, overwrite) as tmp:  # refuses what is not ours before any work
            arr = zarr.open_array(
                str(tmp),
                mode="w",
                shape=shape,
                dtype=dtype,
                fill_value=0,
                chunks=tuple(chunks or default_chunks(shape, axis)),
            )
            mark_zarr(arr)
            yield arr
        return
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if np.dtype(out.dtype).kind not in "iu" or np.dtype(out.dtype).itemsize < np.dtype(dtype).itemsize:
        raise ValueError(f"out has dtype {out.dtype}; labels need an integer type of at least {np.dtype(dtype).name}")
    yield out


def _voxel_size(source) -> tuple:
    """``(voxel_size, unit)`` of an input (a path, a Pyramid, an OME-Zarr level), or ``(None, None)``."""
    if isinstance(source, (str, os.PathLike, Pyramid)) or type(source).__module__.startswith("zarr"):
        try:
            p = open_pyramid(source)
            return p.voxel_size, p.unit
        except (ValueError, OSError):
            pass
    return None, None


def _finish(out, arr):
    """What the caller gets back: the array, or the renamed zarr store reopened at its path."""
    if isinstance(out, (str, os.PathLike)):
        return open_volume(out, mode="r+")
    return arr


def write_volume_tiff(
    volume, path: PathLike, compression: str | None = "zlib", progress: bool = False, overwrite: bool = False
) -> Path:
    """Stream a 3D array-like into a multipage TIFF, one slice at a time, atomically.

    An existing ``path`` is replaced only with ``overwrite=True`` and only when this library wrote it.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    claim(path, overwrite)
    with atomic_path(path, suffix=path.suffix) as tmp:
        with tifffile.TiffWriter(
            tmp, bigtiff=volume.nbytes > 2**32 - 2**25 if hasattr(volume, "nbytes") else True
        ) as tw:
            pages = (
                np.asarray(volume[i]) for i in tqdm(range(volume.shape[0]), desc="write tiff", disable=not progress)
            )
            tw.write(
                pages,
                shape=tuple(volume.shape),
                dtype=volume.dtype,
                compression=compression,
                photometric="minisblack",
                software=MARKER,
            )
    return path


# --------------------------------------------------------------------------------------------
# stack inference
# --------------------------------------------------------------------------------------------


def segment_stack(
    model: nn.Module,
    volume,
    *,
    axis: str = "xy",
    median_slices: int = 1,
    label_divisor: int | None = None,
    min_size: int = 500,
    min_extent: int = 5,
    iou_thr: float = 0.25,
    ioa_thr: float = 0.25,
    out=None,
    overwrite: bool = False,
    chunks: Sequence[int] | None = None,
    progress: Progress = True,
    cancel: threading.Event | None = None,
    downsample: int = 1,
    tile_size: int | None = None,
    tile_overlap: int = 128,
    batch_size: int = 4,
    device=None,
    precision: str = "fp32",
    flips: bool = False,
    irange: tuple[float, float] | None = None,
    seg_thr: float = 0.5,
    center_thr: float = 0.1,
    min_distance: int = 3,
    stuff_area: int = 64,
    semantic_only: bool = False,
    fine_boundaries: bool = False,
    fill_holes: bool = False,
    split_fragments: bool = True,
    cache_mb: float = 256,
):
    """Segment a volume slice by slice along ``axis`` and link instances into 3D ids.

    Linking: Hungarian matching on IoU >= ``iou_thr``, pieces merged by IoA >= ``ioa_thr``, then a
    backward pass (empanada's stack inference). Instances under ``min_size`` voxels or under
    ``min_extent`` along any axis are removed; ids are renumbered ``class * label_divisor + 1, 2, ...``.

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    volume : array_like or str or os.PathLike
        A ``(Z, Y, X)`` array-like (numpy, memmap, zarr, dask), a TIFF/zarr/OME-Zarr path or a
        ``Pyramid`` (its level 0), read lazily.
    axis : {"xy", "xz", "yz"}
        The plane of the slices.
    median_slices : int
        Odd; median of the semantic probabilities over that many neighbouring slices.
    min_size : int
        Minimum instance size in voxels.
    min_extent : int
        Minimum instance extent along every axis.
    iou_thr : float
        IoU for linking an instance to one in the previous slice.
    ioa_thr : float
        Intersection over area for merging pieces into a linked instance.
    out : array_like or str or os.PathLike, optional
        None (a numpy array), an array to fill, or a zarr folder path (written chunk-wise); a path
        ending in ``.ome.zarr`` is written as OME-Zarr labels (a pyramid with the input's voxel sizes).
    overwrite : bool
        Replace an existing zarr folder ``out``.
    chunks : sequence of int, optional
        Chunks of a new zarr ``out``.
    progress : bool or callable
        True: tqdm progress bars; a callable receives progress events (``empanada_nb.progress``).
    cancel : threading.Event, optional
        When set, stops between slices by raising ``Cancelled``.
    downsample : int
        1, 2, 4, ..., 64: shrink slices for the network (as in ``segment_image``).
    tile_size : int, optional
        Tile side in network-input pixels; None tiles only large slices.
    tile_overlap : int
        Overlap of neighbouring tiles, in network-input pixels.
    batch_size : int
        Slices (or tiles) per network call.
    device : str or torch.device, optional
        Default: the model's device.
    precision : str
        ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``, as in ``segment_image``.
    flips : bool
        Test-time flips, as in ``segment_image`` (4x the network time).
    irange : tuple of float, optional
        Intensity range; default estimated once from a few slices of the volume.
    label_divisor : int, optional
        Panoptic ids are ``class * label_divisor + instance``; default the model card's (1000).
    seg_thr : float
        Foreground probability threshold.
    center_thr : float
        Center heatmap threshold.
    min_distance : int
        Center NMS window (see ``panoptic_postprocess``).
    stuff_area : int
        Minimum area of a stuff region.
    semantic_only : bool
        Return semantic classes only (ids ``class * label_divisor``), no instances.
    fine_boundaries : bool
        Group pixels into instances at full instead of 1/4 resolution.
    fill_holes : bool
        Fill background holes enclosed by one instance.
    split_fragments : bool
        Give disconnected pieces of a label their own ids (empanada's ``force_connected``).
    cache_mb : float
        Memory for read-ahead of slices along ``xz``/``yz`` (each of those touches every z chunk).

    Returns
    -------
    numpy.ndarray or zarr.Array
        ``(Z, Y, X)`` labels: ``out`` itself, a zarr array for a folder ``out``, else numpy.

    Raises
    ------
    ValueError
        When ``volume`` is not 3D greyscale, ``axis`` is unknown or ``median_slices`` even.
    FileExistsError
        When the zarr folder ``out`` exists and ``overwrite`` is False.
    Cancelled
        When ``cancel`` is set; no complete-looking output is left behind.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> volume, _ = enb.synthetic_volume((4, 64, 64), n_objects=3)
    >>> labels = enb.segment_stack(model, volume, progress=False)
    >>> labels.shape, labels.dtype
    ((4, 64, 64), dtype('int32'))
    """
    vol = as_volume(volume)
    check_axis(axis)
    if median_slices < 1 or median_slices % 2 == 0:
        raise ValueError(f"median_slices must be an odd number >= 1, got {median_slices}")
    a = axis_dim(axis)
    post, pred, dtype = engine(
        model,
        label_divisor,
        downsample=downsample,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
        flips=flips,
        seg_thr=seg_thr,
        center_thr=center_thr,
        min_distance=min_distance,
        stuff_area=stuff_area,
        semantic_only=semantic_only,
        fine_boundaries=fine_boundaries,
        fill_holes=fill_holes,
        split_fragments=split_fragments,
    )
    irange = irange if irange is not None else volume_irange(vol)
    with output_array(out, tuple(vol.shape), dtype, a, chunks, overwrite, source=volume) as arr:
        _stack_into(
            pred,
            post,
            model,
            vol,
            a,
            arr,
            median_slices=median_slices,
            min_size=min_size,
            min_extent=min_extent,
            iou_thr=iou_thr,
            ioa_thr=ioa_thr,
            irange=irange,
            progress=progress,
            cancel=cancel,
            cache_mb=cache_mb,
            name=axis,
        )
    return _finish(out, arr)


def _stack_into(
    pred: Predictor,
    post,
    model,
    vol,
    axis: int,
    arr,
    *,
    median_slices: int,
    min_size: int,
    min_extent: int,
    iou_thr: float,
    ioa_thr: float,
    irange,
    progress: Progress,
    cancel,
    cache_mb: float,
    name: str,
) -> None:
    n = vol.shape[axis]
    io = AxisIO(arr, axis)
    t = io.thickness()
    reader = BlockReader(vol, axis, pred.batch_size, cache_mb)
    norms = model_norms(model)
    div, things, S = post.label_divisor, post.thing_list, pred.n_sem
    # while linking, ids live in a wide id space (class * big + k) so that the many provisional
    # ids of a long stack never overflow label_divisor; the last pass renumbers them compactly
    big = np.iinfo(arr.dtype).max // (int(getattr(model, "num_classes", 1)) + 1)
    link = not post.semantic_only
    fwd = SliceLinker(things, big, iou_thr, ioa_thr)

    def maps_iter() -> Iterator[torch.Tensor]:
        for b0 in range(0, n, pred.batch_size):
            imgs = [
                normalize_image(as_image2d(reader[i], f"slice {i}"), norms, irange)
                for i in range(b0, min(n, b0 + pred.batch_size))
            ]
            yield from pred.maps(imgs)

    r = median_slices // 2
    buf: dict[int, torch.Tensor] = {}
    slab = np.zeros((t,) + io.plane, arr.dtype)

    def emit(i: int) -> None:
        check_cancel(cancel)
        maps = buf[i]
        if r:
            win = [buf[j][:S].numpy() for j in range(max(0, i - r), min(n, i + r + 1))]
            maps = torch.cat([torch.from_numpy(np.median(np.stack(win), axis=0).astype(np.float32)), maps[S:]])
        labels = post(maps)
        if link:
            labels = fwd(_widen(labels, div, big))
        slab[i % t] = labels
        if i % t == t - 1 or i == n - 1:
            k = i % t + 1
            io.write(i - k + 1, slab[:k])
        bar.update(1)

    # reading and the network run one batch ahead in a thread while this one postprocesses and links
    ahead = contextlib.closing(prefetch(maps_iter(), pred.batch_size))
    with ProgressBar(n, f"{name}: infer", progress) as bar, ahead as ahead:
        for j, maps in enumerate(ahead):
            buf[j] = maps
            if j - r >= 0:
                emit(j - r)
                buf.pop(j - 2 * r, None)  # no window needs it any more
        for i in range(max(0, n - r), n):
            emit(i)
    buf.clear()
    if not link:
        return
    # backward pass (fixes late merges) and 3D statistics, slab by slab from the end
    bwd = SliceLinker(things, big, iou_thr, ioa_thr, assign_new=False)
    stats = LabelStats(things, big)
    starts = list(range(0, n, t))
    with ProgressBar(n, f"{name}: link", progress) as bar:
        for s0 in reversed(starts):
            data = io.read(s0, min(n, s0 + t)).astype(np.int64)
            for k in range(len(data) - 1, -1, -1):
                check_cancel(cancel)
                data[k] = bwd(data[k])
                stats.update(data[k], s0 + k)
                bar.update(1)
            io.write(s0, data.astype(arr.dtype))
    # size/extent filter and renumbering into label_divisor ids
    old, new = stats.relabel_map(min_size, min_extent, label_divisor=div)
    with ProgressBar(n, f"{name}: filter", progress) as bar:
        for s0 in starts:
            check_cancel(cancel)
            data = io.read(s0, min(n, s0 + t)).astype(np.int64)
            stuff = (data > 0) & ~thing_mask(data, things, big)
            data = apply_map(data, old, new, things, big)
            data[stuff] = (data[stuff] // big) * div
            io.write(s0, data.astype(arr.dtype))
            bar.update(len(data))


def _widen(labels: np.ndarray, div: int, big: int) -> np.ndarray:
    return (labels // div) * big + labels % div


# --------------------------------------------------------------------------------------------
# ortho-plane inference
# --------------------------------------------------------------------------------------------


def segment_ortho(
    model: nn.Module,
    volume,
    *,
    vote: int = 2,
    keep_single_view: bool = False,
    cluster_iou_thr: float = 0.75,
    erode: int = 0,
    dilate: int = 0,
    consensus_fill_holes: bool = False,
    keep_planes: bool = False,
    out=None,
    overwrite: bool = False,
    chunks: Sequence[int] | None = None,
    label_divisor: int | None = None,
    progress: Progress = True,
    cancel: threading.Event | None = None,
    **stack_kwargs,
):
    """Segment along xy, xz and yz with ``segment_stack``, then take their consensus.

    Instances overlapping across views are clustered and kept when ``vote`` views agree on a voxel;
    stuff classes take the same vote (empanada's ortho-plane consensus). The three views are kept in
    memory for numpy outputs and in a temporary zarr folder otherwise.

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    volume : array_like or str or os.PathLike
        A ``(Z, Y, X)`` array-like or a TIFF/zarr path.
    vote : {1, 2, 3}
        Views out of 3 that must agree on a voxel.
    keep_single_view : bool
        Also keep objects that only one view found (as that view segmented them).
    cluster_iou_thr : float
        IoU above which instances of different views are one object.
    erode : int
        Iterations (voxels) of erosion of the result.
    dilate : int
        Iterations (voxels) of dilation of the result.
    consensus_fill_holes : bool
        Fill holes of each instance per xy slice.
    keep_planes : bool
        Also return the three stack segmentations. With a zarr folder ``out`` (``labels.zarr``) they
        are written beside it as ``labels_xy.zarr``, ``labels_xz.zarr``, ``labels_yz.zarr`` (same
        ``overwrite`` rule, renamed into place only when the run succeeds).
    out : array_like or str or os.PathLike, optional
        None (numpy), an array, or a zarr folder path (``.ome.zarr``: OME-Zarr labels, as in ``segment_stack``).
    overwrite : bool
        Replace an existing zarr folder ``out``.
    chunks : sequence of int, optional
        Chunks of a new zarr ``out``.
    label_divisor : int, optional
        Default the model card's.
    progress : bool or callable
        True: tqdm progress bars; a callable receives progress events (``empanada_nb.progress``).
    cancel : threading.Event, optional
        When set, stops by raising ``Cancelled``.
    **stack_kwargs
        Passed to ``segment_stack`` (``median_slices``, ``min_size``, ``downsample``, ...; not ``axis``).

    Returns
    -------
    numpy.ndarray or zarr.Array or tuple
        ``(Z, Y, X)`` consensus labels; with ``keep_planes``, ``(labels, {"xy": ..., "xz": ..., "yz": ...})``.

    Raises
    ------
    ValueError
        When ``vote`` is not 1-3, ``erode``/``dilate`` are negative, or ``axis`` is given.
    FileExistsError
        When a zarr ``out`` (or, with ``keep_planes``, one of its planes) exists and ``overwrite`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> volume = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    >>> enb.segment_ortho(model, volume, progress=False).shape
    (4, 32, 32)
    """
    from .consensus import ortho_consensus
    from .model_io import card_for

    if "axis" in stack_kwargs:
        raise ValueError("segment_ortho runs every axis; use segment_stack for one axis")
    vol = as_volume(volume)
    if not 1 <= vote <= 3:
        raise ValueError(f"vote must be 1, 2 or 3 (views out of 3), got {vote}")
    if min(erode, dilate) < 0:
        raise ValueError("erode and dilate must be >= 0")
    card = card_for(model)
    div = check_divisor(label_divisor, card)
    dtype = label_dtype(semantic_channels(card.num_classes), div)
    shape = tuple(vol.shape)
    if stack_kwargs.get("irange") is None:
        stack_kwargs["irange"] = volume_irange(vol)  # one range for all three views
    semantic_only = bool(stack_kwargs.get("semantic_only", False))
    things = [] if semantic_only else list(card.thing_list)
    stuff = [c for c in range(1, card.num_classes + 1) if c not in things]
    if keep_planes and out is not None and not isinstance(out, (np.ndarray, str, os.PathLike)):
        raise ValueError("keep_planes needs out=None, a numpy array or a zarr folder path (the planes go beside it)")
    planes = _plane_paths(out) if keep_planes and isinstance(out, (str, os.PathLike)) else None
    for p in (planes or {}).values():
        claim(p, overwrite)  # before any work: replaced only with overwrite=True and only if ours
    with (
        output_array(out, shape, dtype, 0, chunks, overwrite, source=volume) as arr,
        _view_stores(out, shape, dtype, planes, overwrite) as stores,
    ):
        views = []
        for axis, store in zip(AXES, stores):
            views.append(
                segment_stack(
                    model,
                    vol,
                    axis=axis,
                    out=store,
                    label_divisor=div,
                    progress=progress,
                    cancel=cancel,
                    **stack_kwargs,
                )
            )
        ortho_consensus(
            views,
            arr,
            thing_list=things,
            stuff_list=stuff,
            label_divisor=div,
            vote=vote,
            keep_single_view=keep_single_view,
            cluster_iou_thr=cluster_iou_thr,
            erode=erode,
            dilate=dilate,
            fill_holes=consensus_fill_holes,
            slab=AxisIO(arr, 0).thickness(),
            progress=progress,
            cancel=cancel,
        )
    result = _finish(out, arr)
    if not keep_planes:
        return result
    if planes is not None:
        return result, {a: open_volume(p, mode="r+") for a, p in planes.items()}
    return result, dict(zip(AXES, stores))


def _plane_paths(out: PathLike) -> dict[str, Path]:
    """``labels.zarr`` -> ``{"xy": labels_xy.zarr, ...}``: where ``keep_planes`` writes the views."""
    out = Path(out)
    if is_ome_zarr(out):  # seg.ome.zarr -> seg_xy.zarr, ...: the planes are plain zarr arrays
        return {a: out.with_name(f"{out.name[: -len('.ome.zarr')]}_{a}.zarr") for a in AXES}
    return {a: out.with_name(f"{out.stem}_{a}{out.suffix}") for a in AXES}


@contextlib.contextmanager
def _view_stores(
    out, shape: tuple[int, ...], dtype, planes: dict[str, Path] | None = None, overwrite: bool = False
) -> Iterator[list]:
    """Where the three views go: numpy arrays beside a numpy output, zarr folders at ``planes`` (kept,
    renamed into place on success), else zarr arrays in a temp folder."""
    if out is None or isinstance(out, np.ndarray):
        yield [np.zeros(shape, dtype) for _ in AXES]
        return
    import zarr

    if planes is not None:
        with contextlib.ExitStack() as stack:
            stores = []
            for a, name in enumerate(AXES):
                tmp = stack.enter_context(atomic_dir(planes[name], overwrite))
                view = zarr.open_array(
                    str(tmp), mode="w", shape=shape, dtype=dtype, fill_value=0, chunks=_view_chunks(shape, a)
                )
                mark_zarr(view)  # ours, so that a later overwrite may replace it
                stores.append(view)
            yield stores
        return

    near = Path(out) if isinstance(out, (str, os.PathLike)) else Path(tempfile.gettempdir()) / "empanada_nb_views"
    with temp_dir(near, ".views") as tmp:
        stores = []
        for a, name in enumerate(AXES):
            stores.append(
                zarr.open_array(
                    str(tmp / name), mode="w", shape=shape, dtype=dtype, fill_value=0, chunks=_view_chunks(shape, a)
                )
            )
        yield stores


def _view_chunks(shape: tuple[int, ...], a: int) -> tuple[int, ...]:
    """Thin along the view's own axis (its slabs) and along z (the consensus slabs)."""
    return tuple(min(s, SLAB if d in (0, a) else 256) for d, s in enumerate(shape))
