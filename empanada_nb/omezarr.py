"""Writing OME-Zarr: label pyramids (segmentations) and image pyramids (``convert_to_ome_zarr``).

Layout (NGFF 0.4, https://ngff.openmicroscopy.org/0.4/, zarr v2 with ``/`` chunk keys, as the spec
requires): a group with arrays ``"0"`` (full resolution), ``"1"``, ... and the ``multiscales``
attribute (axes ``z, y, x`` of type space with their unit, one ``scale`` transform per level);
labels also carry ``image-label``. Levels are made from the level above, chunk by chunk, so memory
stays bounded by a few chunks whatever the volume's size:

- labels by strided picking (every 2nd voxel): ids are never mixed or invented (the ``nearest``
  method of ome-zarr-py's ``Scaler``);
- images by the mean of each 2x2(x2) block.

An axis is halved at a level only while its voxel is less than twice the finest one, so an
anisotropic volume (40 nm z, 5 nm xy) is first downsampled in y and x alone until it is isotropic.

Every output appears under its final name only when complete: ``write_ome_zarr_labels`` and
``convert_to_ome_zarr`` build it in a temporary folder (``_atomic.atomic_dir``); the block-wise
pair ``create_labels`` / ``write_label_pyramid`` builds it under ``_atomic.partial_name`` (which
outlives a crash, so a restart resumes) and renames it into place at the end.
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._atomic import MARKER, PathLike, atomic_dir, claim, partial_name, publish_dir
from ._ngff import multiscales_meta, unit_name
from .progress import Progress, ProgressBar

#: the largest level side at which the default pyramid stops
MIN_SIDE = 256
#: at most this many levels by default
MAX_LEVELS = 8
#: chunks of a converted image (z, y, x), clipped to its shape
IMAGE_CHUNKS = (32, 256, 256)

__all__ = ["convert_to_ome_zarr", "create_labels", "write_label_pyramid", "write_ome_zarr_labels"]


# ------------------------------------------------------------------------------------ geometry


def level_factors(shape: Sequence[int], voxel_size: Sequence[float] | None, n_levels: int | None) -> list[tuple]:
    """Downsampling factor of each level relative to level 0 (``(1, 1, 1)`` first).

    Parameters
    ----------
    shape : sequence of int
        Level-0 shape.
    voxel_size : sequence of float, optional
        Level-0 voxel size; anisotropic axes are halved only once the others have caught up.
    n_levels : int, optional
        Levels in all; default until every side is at most ``MIN_SIDE`` (at most ``MAX_LEVELS``).

    Returns
    -------
    list of tuple of int
        One factor tuple per level.

    Examples
    --------
    >>> level_factors((20, 1024, 1024), (40, 5, 5), 4)
    [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8)]
    """
    if n_levels is not None and int(n_levels) < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    size = [float(v) for v in voxel_size] if voxel_size is not None else [1.0] * len(shape)
    fac = [1] * len(shape)
    out = [tuple(fac)]
    while n_levels is None or len(out) < int(n_levels):
        cur = [math.ceil(s / f) for s, f in zip(shape, fac)]
        if n_levels is None and (max(cur) <= MIN_SIDE or len(out) >= MAX_LEVELS):
            break
        finest = min(sz * f for sz, f, c in zip(size, fac, cur) if c > 1) if max(cur) > 1 else None
        if finest is None:
            break  # a single voxel: nothing left to halve
        halve = [c > 1 and sz * f < 2 * finest for sz, f, c in zip(size, fac, cur)]
        fac = [f * 2 if h else f for f, h in zip(fac, halve)]
        out.append(tuple(fac))
    return out


def _chunk_grid(shape: Sequence[int], chunks: Sequence[int]):
    """Slices of every chunk of an array, in C order."""
    ranges = [range(0, s, c) for s, c in zip(shape, chunks)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(a, min(a + c, s)) for a, c, s in zip(starts, chunks, shape))


def _downsample(block: np.ndarray, step: Sequence[int], method: str) -> np.ndarray:
    """Labels: every ``step``-th voxel; images: the mean of each ``step`` block (edges padded)."""
    if method == "nearest":
        return block[tuple(slice(None, None, s) for s in step)]
    pad = [(0, (-n) % s) for n, s in zip(block.shape, step)]
    if any(p for _, p in pad):
        block = np.pad(block, pad, mode="edge")
    shape = [x for n, s in zip(block.shape, step) for x in (n // s, s)]
    mean = block.reshape(shape).mean(axis=tuple(range(1, 2 * block.ndim, 2)), dtype=np.float64)
    if np.dtype(block.dtype).kind in "iub":
        mean = np.rint(mean)
    return mean.astype(block.dtype)


# ------------------------------------------------------------------------------------ stores


def _zarr():
    import zarr

    return zarr


def _new_level(group, name: str, shape, dtype, chunks):
    """A zarr v2 array with ``/`` chunk keys (NGFF 0.4), fill 0."""
    chunks = tuple(int(max(1, min(c, s))) for c, s in zip(chunks, shape))
    return group.create_array(
        name,
        shape=tuple(int(s) for s in shape),
        dtype=dtype,
        chunks=chunks,
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    )


def _init_group(folder: Path, shape, dtype, chunks, voxel_size, unit, name: str, kind: str, overwrite=False):
    """A new OME-Zarr group in ``folder`` with level ``"0"``; what the pyramid needs is kept in our marker."""
    from . import __version__

    if voxel_size is not None:
        voxel_size = [float(v) for v in voxel_size]
        if len(voxel_size) != len(shape) or min(voxel_size) <= 0:
            raise ValueError(
                f"voxel_size must be {len(shape)} positive numbers ({'z, y, x' if len(shape) == 3 else 'y, x'}), "
                f"got {voxel_size}"
            )
    if len(shape) not in (2, 3):
        raise ValueError(f"OME-Zarr output must be 2D or 3D (Z, Y, X), got shape {tuple(shape)}")
    group = _zarr().open_group(str(folder), mode="w", zarr_format=2)
    group.attrs[MARKER] = {
        "version": __version__,
        "kind": kind,
        "complete": False,
        "name": name,
        "voxel_size": voxel_size,
        "unit": unit_name(unit),
        "overwrite": bool(overwrite),
    }
    return _new_level(group, "0", shape, dtype, chunks)


def _build_levels(folder: Path, n_levels: int | None, progress: Progress, stage: str = "pyramid") -> int:
    """Levels 1.. from level 0, chunk by chunk, then the NGFF metadata; returns the number of levels."""
    zarr = _zarr()
    group = zarr.open_group(str(folder), mode="r+")
    meta = dict(group.attrs[MARKER])
    kind = meta["kind"]
    for k in [k for k, _ in group.arrays() if k != "0"]:  # from an earlier, interrupted pyramid
        del group[k]
    base = group["0"]
    factors = level_factors(base.shape, meta.get("voxel_size"), n_levels)
    shapes = [tuple(math.ceil(s / f) for s, f in zip(base.shape, fac)) for fac in factors]
    total = sum(math.prod(math.ceil(s / c) for s, c in zip(shp, base.chunks)) for shp in shapes[1:])
    method = "nearest" if kind == "labels" else "mean"
    with ProgressBar(total, stage, progress, unit="chunk") as bar:
        for k in range(1, len(factors)):
            src = group[str(k - 1)]
            step = [a // b for a, b in zip(factors[k], factors[k - 1])]
            dst = _new_level(group, str(k), shapes[k], base.dtype, base.chunks)
            for region in _chunk_grid(dst.shape, dst.chunks):
                read = tuple(slice(r.start * s, min(r.stop * s, n)) for r, s, n in zip(region, step, src.shape))
                dst[region] = _downsample(np.asarray(src[read]), step, method)
                bar.update(1)
    name = meta.get("name") or kind
    attrs = multiscales_meta(
        [str(k) for k in range(len(factors))], factors, meta.get("voxel_size"), meta.get("unit"), name, method
    )
    if kind == "labels":
        # no "source": the labels stand on their own (napari and ome-zarr-py open them as a labels layer)
        attrs["image-label"] = {"version": attrs["multiscales"][0]["version"]}
    meta["complete"] = True
    attrs[MARKER] = meta
    group.attrs.update(attrs)
    return len(factors)


def _copy_into(dst, src, progress: Progress, stage: str) -> None:
    """``src`` (numpy, dask, zarr, TiffPages, ...) into ``dst``, one band of whole chunks at a time."""
    band = list(dst.chunks)
    band[-1] = dst.shape[-1]  # full rows: one read per band of TIFF pages, whole chunks written
    regions = list(_chunk_grid(dst.shape, band))
    with ProgressBar(len(regions), stage, progress, unit="block") as bar:
        for region in regions:
            dst[region] = np.asarray(src[region])
            bar.update(1)


# ------------------------------------------------------------------------------------ labels


def create_labels(
    path: PathLike,
    shape: Sequence[int],
    dtype,
    chunks: Sequence[int],
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    name: str = "labels",
    overwrite: bool = False,
    resume: bool = False,
):
    """Start an OME-Zarr labels dataset for block-wise writers: the writable full-resolution array.

    The dataset is built under a hidden name beside ``path`` (``.NAME.~enb-partial``), which
    survives a crash; ``write_label_pyramid`` adds the levels and metadata and renames it to ``path``.
    Until then nothing exists under ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The final dataset folder, e.g. ``seg.ome.zarr``.
    shape : sequence of int
        ``(Z, Y, X)`` (or ``(Y, X)``).
    dtype : numpy dtype
        An integer label type.
    chunks : sequence of int
        Chunks of every level (writers should write whole chunks; processes must not share one).
    voxel_size : sequence of float, optional
        Physical ``(z, y, x)`` voxel size of level 0.
    unit : str, optional
        Its unit (``"nanometer"``, ``"nm"``, ``"micrometer"``, ...).
    name : str
        The multiscale's name.
    overwrite : bool
        Replace an existing ``path`` at the end (only one this library wrote).
    resume : bool
        Reopen a partial dataset left by an earlier run when its shape, dtype and chunks match
        (what it holds is kept); otherwise any partial dataset is started afresh.

    Returns
    -------
    zarr.Array
        Level ``"0"``, writable.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False (or it is not ours).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/seg.ome.zarr"
    >>> arr = create_labels(path, (4, 32, 32), np.uint32, (2, 16, 16), voxel_size=(40, 5, 5), unit="nm")
    >>> arr[:2, :16, :16] = 7  # one block
    >>> write_label_pyramid(path, n_levels=2).name
    'seg.ome.zarr'
    """
    path = Path(path)
    claim(path, overwrite)
    if np.dtype(dtype).kind not in "iu":
        raise ValueError(f"labels need an integer dtype, got {np.dtype(dtype)}")
    work = partial_name(path)
    if resume and work.is_dir():
        try:
            arr = _zarr().open_group(str(work), mode="r+")["0"]
            same = (tuple(arr.shape), np.dtype(arr.dtype), tuple(arr.chunks)) == (
                tuple(int(s) for s in shape),
                np.dtype(dtype),
                tuple(int(max(1, min(c, s))) for c, s in zip(chunks, shape)),
            )
        except Exception:  # an unreadable leftover: start afresh
            same = False
        if same:
            return arr
    if work.exists():
        shutil.rmtree(work)  # our own unfinished dataset (the name is ours alone)
    work.parent.mkdir(parents=True, exist_ok=True)
    return _init_group(work, shape, dtype, chunks, voxel_size, unit, name, "labels", overwrite)


def write_label_pyramid(path: PathLike, n_levels: int | None = None, progress: Progress = False) -> Path:
    """Finish a dataset begun by ``create_labels``: downsampled levels, NGFF metadata, rename to ``path``.

    Levels are made chunk by chunk by strided picking (labels are never averaged). Calling it again
    after it finished (a restarted job) returns ``path`` without work.

    Parameters
    ----------
    path : str or os.PathLike
        The ``path`` given to ``create_labels``.
    n_levels : int, optional
        Levels in all (level 0 included); default until every side is at most 256.
    progress : bool or callable
        True: a tqdm bar; a callable receives progress events (``empanada_nb.progress``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileNotFoundError
        When no dataset was begun at ``path``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/seg.ome.zarr"
    >>> _ = create_labels(path, (2, 8, 8), np.uint16, (2, 8, 8))
    >>> write_label_pyramid(path).exists()
    True
    """
    path = Path(path)
    work = partial_name(path)
    if not work.is_dir():
        if path.is_dir() and _is_complete(path):
            return path
        raise FileNotFoundError(f"{path}: no labels in progress; begin them with create_labels({str(path)!r}, ...)")
    _build_levels(work, n_levels, progress, f"{path.name}: pyramid")
    overwrite = bool(_zarr().open_group(str(work), mode="r").attrs[MARKER].get("overwrite"))
    publish_dir(work, path, overwrite)
    return path


def _is_complete(path: Path) -> bool:
    try:
        return bool(_zarr().open_group(str(path), mode="r").attrs[MARKER].get("complete"))
    except Exception:
        return False


def write_ome_zarr_labels(
    labels,
    path: PathLike,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    name: str = "labels",
    overwrite: bool = False,
    progress: Progress = False,
) -> Path:
    """Write labels (numpy, dask, zarr, ...) as an OME-Zarr label pyramid, atomically.

    Parameters
    ----------
    labels : array_like
        ``(Z, Y, X)`` or ``(Y, X)`` integer labels; read block by block (a dask array is computed
        one band of chunks at a time).
    path : str or os.PathLike
        Output folder, e.g. ``seg.ome.zarr``.
    voxel_size : sequence of float, optional
        Physical ``(z, y, x)`` voxel size.
    unit : str, optional
        Its unit.
    chunks : sequence of int, optional
        Default ``labels.chunks`` when it has regular ones, else ``(32, 256, 256)`` clipped.
    n_levels : int, optional
        Levels in all; default until every side is at most 256.
    name : str
        The multiscale's name.
    overwrite : bool
        Replace an existing ``path`` (only one this library wrote).
    progress : bool or callable
        True: tqdm bars; a callable receives progress events.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/seg.ome.zarr"
    >>> write_ome_zarr_labels(np.zeros((2, 8, 8), np.uint16), path, voxel_size=(50, 4, 4)).name
    'seg.ome.zarr'
    """
    path = Path(path)
    if np.dtype(labels.dtype).kind not in "iub":
        raise ValueError(f"labels need an integer dtype, got {labels.dtype}; pass a label image")
    chunks = chunks or _regular_chunks(labels) or IMAGE_CHUNKS[-len(labels.shape) :]
    with atomic_dir(path, overwrite) as tmp:
        arr = _init_group(tmp, labels.shape, labels.dtype, chunks, voxel_size, unit, name, "labels", overwrite)
        _copy_into(arr, labels, progress, f"{path.name}: level 0")
        _build_levels(tmp, n_levels, progress, f"{path.name}: pyramid")
    return path


def _regular_chunks(a) -> tuple[int, ...] | None:
    """``a.chunks`` as ints (dask: the first chunk of each axis), or None."""
    chunks = getattr(a, "chunks", None)
    if not chunks:
        return None
    return tuple(int(c[0]) if isinstance(c, tuple) else int(c) for c in chunks)


# ------------------------------------------------------------------------------------ convert


def convert_to_ome_zarr(
    tiff_path: PathLike,
    out_path: PathLike,
    chunks: Sequence[int] = IMAGE_CHUNKS,
    n_levels: int | None = None,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    overwrite: bool = False,
    progress: Progress = True,
) -> Path:
    """Convert a TIFF stack (or any volume ``open_volume`` reads) to a chunked OME-Zarr image pyramid.

    The input is read lazily, one band of chunks at a time (memory: one band plus a small page
    cache), levels are block means, and the output appears under ``out_path`` only when complete.

    Parameters
    ----------
    tiff_path : str or os.PathLike
        The input TIFF (2D or a ``(Z, Y, X)`` stack of pages), or a zarr folder.
    out_path : str or os.PathLike
        The output folder, e.g. ``volume.ome.zarr``.
    chunks : sequence of int
        ``(z, y, x)`` chunks, clipped to the shape (default ``(32, 256, 256)``).
    n_levels : int, optional
        Levels in all; default until every side is at most 256.
    voxel_size : sequence of float, optional
        Physical ``(z, y, x)`` voxel size; default the TIFF's (resolution tags, ImageJ spacing), if any.
    unit : str, optional
        Unit of ``voxel_size`` (default the TIFF's, else none).
    overwrite : bool
        Replace an existing ``out_path`` (only one this library wrote).
    progress : bool or callable
        True: tqdm bars; a callable receives progress events (``empanada_nb.progress``).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        When the input is not a greyscale 2D image or 3D stack, or ``chunks`` do not fit it.
    FileExistsError
        When ``out_path`` exists and ``overwrite`` is False (or it is not ours).

    Examples
    --------
    >>> import tempfile, tifffile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(d + "/v.tif", np.zeros((4, 64, 64), np.uint8), compression="zlib")
    >>> convert_to_ome_zarr(d + "/v.tif", d + "/v.ome.zarr", n_levels=2, progress=False).name
    'v.ome.zarr'
    """
    from .reader import open_pyramid, open_volume

    src, out = Path(tiff_path), Path(out_path)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if out.resolve() == src.resolve():
        raise ValueError("the output must differ from the input")
    claim(out, overwrite, hint="pass overwrite=True (CLI: --overwrite) to replace it")
    pyr = open_pyramid(src)
    vol = pyr.levels[0]
    shape = tuple(int(s) for s in vol.shape)
    if len(shape) not in (2, 3) or np.dtype(vol.dtype).kind not in "biuf":
        raise ValueError(f"{src}: expected a greyscale 2D image or 3D stack, got shape {shape}, dtype {vol.dtype}")
    chunks = tuple(int(c) for c in chunks)[-len(shape) :]
    if len(chunks) != len(shape) or min(chunks) < 1:
        raise ValueError(f"chunks must be {len(shape)} positive integers, got {tuple(chunks)}")
    if voxel_size is None:
        voxel_size, unit = pyr.voxel_size, unit or pyr.unit
    if src.is_file():
        # keep the pages of one band of chunks decoded (each page is read once per band)
        page_mb = np.prod(shape[-2:]) * np.dtype(vol.dtype).itemsize * chunks[0] / 2**20
        vol = open_volume(src, page_cache_mb=min(max(page_mb, 1), 1024))
    with atomic_dir(out, overwrite) as tmp:
        arr = _init_group(tmp, shape, vol.dtype, chunks, voxel_size, unit, src.name, "image", overwrite)
        _copy_into(arr, vol, progress, f"{out.name}: level 0")
        _build_levels(tmp, n_levels, progress, f"{out.name}: pyramid")
    return out
