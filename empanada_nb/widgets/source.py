"""The viewer's image source: a read-only ``(Z, Y, X)`` view of a 2D image or 3D volume, and its contrast.

A ``VolumeSource`` wraps a numpy array, a path (opened by ``empanada_nb.reader.open_volume``,
the same opener stack inference uses), a zarr or dask array, or any object with ``shape``, ``dtype``
and numpy indexing. It exposes ``shape`` (always 3D: 2D images get a leading axis of length 1),
``dtype``, ``ndim`` (the source's own 2 or 3) and ``plane`` (one 2D slice along ``"xy"``,
``"xz"`` or ``"yz"``). The raw values are never altered: slices are returned in the source's dtype.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import n_slices, plane_index, shape3
from ..reader import open_volume

#: decoded TIFF pages kept for browsing: xz/yz slices of a compressed stack revisit every page
PAGE_CACHE_MB = 512


class VolumeSource:
    """Read-only, lazily read view of a 2D image or 3D volume (see module docstring).

    Parameters
    ----------
    data : array-like or path
        A 2D image or ``(Z, Y, X)`` volume, or a TIFF/zarr path.

    Examples
    --------
    >>> import numpy as np
    >>> src = VolumeSource(np.zeros((20, 30), np.uint8))
    >>> src.shape, src.ndim, src.plane("xy", 0).shape
    ((1, 20, 30), 2, (20, 30))
    """

    def __init__(self, data: Any):
        self.path: Path | None = None
        if isinstance(data, (str, os.PathLike)):
            self.path = Path(data)
            data = open_volume(self.path, page_cache_mb=PAGE_CACHE_MB)
        if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")):
            data = np.asarray(data)
        shape = tuple(int(s) for s in data.shape)
        if len(shape) > 3:
            squeezed = tuple(s for s in shape if s != 1)
            if len(squeezed) not in (2, 3):
                raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}")
            if not isinstance(data, np.ndarray):
                raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}; squeeze it first")
            data = data.reshape(squeezed)
            shape = squeezed
        if len(shape) not in (2, 3):
            raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}")
        if min(shape) < 1:
            raise ValueError(f"empty image of shape {shape}")
        self.ndim = len(shape)
        self.data = data
        self.dtype = np.dtype(data.dtype)
        if self.dtype.kind not in "uifb":
            raise ValueError(f"unsupported image dtype {self.dtype}")
        self.shape: tuple[int, int, int] = shape3(shape)

    @property
    def lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray) or isinstance(self.data, np.memmap)

    def __getitem__(self, idx) -> np.ndarray:
        """numpy indexing in ``(Z, Y, X)`` coordinates (also for 2D images, with Z of length 1)."""
        if self.ndim == 2:
            if not isinstance(idx, tuple):
                idx = (idx,)
            idx = idx + (slice(None),) * (3 - len(idx))
            z = idx[0]
            if isinstance(z, (int, np.integer)):
                if int(z) not in (0, -1):
                    raise IndexError(f"z index {z} out of range for a 2D image")
                return _materialize(self.data[idx[1:]])
            return _materialize(self.data[idx[1:]])[None][z]
        return _materialize(self.data[idx])

    def plane(self, axis: str, index: int) -> np.ndarray:
        """Slice ``index`` along ``axis`` as a C-contiguous 2D array of the source dtype."""
        n = n_slices(self.shape, axis)
        if not 0 <= int(index) < n:
            raise IndexError(f"slice {index} out of range 0..{n - 1} along {axis}")
        return np.ascontiguousarray(self[plane_index(axis, index)])

    def sample(self, max_values: int = 2_000_000) -> np.ndarray:
        """A subsample of the values for contrast statistics (the middle xy slice for lazy sources)."""
        if not self.lazy:
            arr = self.data
            step = max(1, int(np.ceil((arr.size / max_values) ** (1 / arr.ndim))))
            return np.asarray(arr[(slice(None, None, step),) * arr.ndim]).ravel()
        out = self.plane("xy", self.shape[0] // 2).ravel()
        step = max(1, out.size // max_values)
        return out[::step]

    def data_range(self) -> tuple[float, float]:
        """The range the contrast slider spans: the dtype's for uint8/bool, else the sample's."""
        dt = self.dtype
        if dt == np.uint8:
            return 0.0, 255.0
        if dt == np.bool_:
            return 0.0, 1.0
        s = self.sample()
        lo, hi = float(np.nanmin(s)), float(np.nanmax(s))
        if dt.kind in "ui":
            info = np.iinfo(dt)
            lo, hi = float(min(lo, 0) if dt.kind == "u" else lo), float(hi)
            hi = min(hi, float(info.max))
        if hi <= lo:
            hi = lo + 1.0
        return lo, hi

    def initial_contrast(self) -> tuple[float, float]:
        """Contrast limits to start with: the full range for uint8/bool, else 0.1-99.9 percentiles."""
        if self.dtype in (np.uint8, bool):
            return self.data_range()
        return percentiles(self.sample(), (0.1, 99.9))


def open_levels(data: Any) -> tuple[list, list[tuple[float, float, float]], tuple[float, float, float] | None] | None:
    """The levels of a multiscale image, full resolution first, with their scales and voxel size.

    The one place the Viewer learns about pyramids: the opener's ``open_pyramid`` (``reader.py``) for
    zarr groups and their paths, ``patches.pyramid_levels`` for a list of arrays.
    A list of arrays of different shapes, a zarr group with several
    levels (OME-Zarr ``multiscales`` metadata, else arrays ``"0"``, ``"1"``, ...) or the path of one.

    Parameters
    ----------
    data : Any
        What the Viewer was given.

    Returns
    -------
    tuple or None
        ``(levels, scales, voxel_size)``: the levels' array-likes; per level, the ``(z, y, x)`` factors
        of level 0's shape over its own; level 0's ``(z, y, x)`` voxel size from OME-Zarr metadata (None
        without). None when ``data`` is a single array (or a group of one level).

    Examples
    --------
    >>> levels, scales, voxel = open_levels([np.zeros((4, 64, 64)), np.zeros((4, 32, 32))])
    >>> scales, voxel
    ([(1.0, 1.0, 1.0), (1.0, 2.0, 2.0)], None)
    >>> open_levels(np.zeros((4, 8, 8))) is None
    True
    """
    if isinstance(data, (list, tuple)):
        from ..patches import pyramid_level, pyramid_levels

        if not (data and all(hasattr(a, "shape") for a in data)) or len({tuple(a.shape) for a in data}) < 2:
            return None
        levels = pyramid_levels(data)
        scales = [(1.0,) * (3 - len(lv.shape)) + pyramid_level(levels, i)[1] for i, lv in enumerate(levels)]
        return levels, [tuple(float(f) for f in s[-3:]) for s in scales], None
    if isinstance(data, (str, os.PathLike)):
        if Path(data).suffix.lower() not in (".zarr", "") or not Path(data).is_dir():
            return None
    elif not (hasattr(data, "arrays") and hasattr(data, "attrs")):
        return None
    from ..reader import open_pyramid

    try:
        p = open_pyramid(data)
    except ValueError:  # not a zarr store, or not a pyramid the opener reads: the opener reports it
        return None
    if len(p.levels) < 2:
        return None
    scales = [tuple(float(f) for f in ((1.0,) * 3 + tuple(s))[-3:]) for s in p.scales]
    voxel = None if p.voxel_size is None else tuple(float(v) for v in ((1.0,) * 3 + tuple(p.voxel_size))[-3:])
    return p.levels, scales, voxel


def percentiles(values: np.ndarray, q: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Percentiles ``q`` of the finite ``values`` (``(0, 1)`` if none; ``hi > lo`` always).

    Parameters
    ----------
    values : numpy.ndarray
        Any shape.
    q : tuple of float, optional
        Lower and upper percentile.

    Returns
    -------
    tuple of float
        ``(lo, hi)``.

    Examples
    --------
    >>> percentiles(np.arange(101), (10, 90))
    (10.0, 90.0)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, q)
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _materialize(a) -> np.ndarray:
    if hasattr(a, "compute"):  # dask
        a = a.compute()
    return np.asarray(a)
