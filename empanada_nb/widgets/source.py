"""Array-like access to images and volumes for the viewer, reading lazily where the source allows.

A :class:`VolumeSource` wraps a numpy array, a TIFF path (read page by page, or memory-mapped when
uncompressed), a zarr array or path, a dask array, or any object with ``shape``, ``dtype`` and numpy
indexing. It exposes ``shape`` (always 3D: 2D images get a leading axis of length 1), ``dtype``,
``ndim`` (the source's own 2 or 3) and :meth:`plane` (one 2D slice along ``"xy"``, ``"xz"`` or ``"yz"``).
The raw values are never altered: slices are returned in the source's dtype.
"""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

AXES = ("xy", "xz", "yz")
#: for each viewing axis: (the volume dimension held fixed, (row dimension, column dimension))
AXIS_DIMS = {"xy": (0, (1, 2)), "xz": (1, (0, 2)), "yz": (2, (0, 1))}


def check_axis(axis: str) -> str:
    if axis not in AXIS_DIMS:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return axis


def plane_shape(shape3: tuple[int, int, int], axis: str) -> tuple[int, int]:
    """Shape (rows, cols) of one slice of a ``(Z, Y, X)`` volume along ``axis``."""
    _, (r, c) = AXIS_DIMS[check_axis(axis)]
    return int(shape3[r]), int(shape3[c])


def n_slices(shape3: tuple[int, int, int], axis: str) -> int:
    return int(shape3[AXIS_DIMS[check_axis(axis)][0]])


def plane_index(axis: str, index: int, rows=slice(None), cols=slice(None)) -> tuple:
    """The numpy index of ``(rows, cols)`` of slice ``index`` along ``axis`` in a ``(Z, Y, X)`` array."""
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    idx = [None, None, None]
    idx[fixed], idx[r], idx[c] = int(index), rows, cols
    return tuple(idx)


def plane_to_volume(axis: str, index: int, row: float, col: float) -> tuple[float, float, float]:
    """(z, y, x) of the point ``(row, col)`` on slice ``index`` along ``axis``."""
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    out = [0.0, 0.0, 0.0]
    out[fixed], out[r], out[c] = index, row, col
    return tuple(out)


def volume_to_plane(axis: str, z, y, x) -> tuple[Any, Any, Any]:
    """(index, row, col) of the volume point ``(z, y, x)`` seen along ``axis``."""
    fixed, (r, c) = AXIS_DIMS[check_axis(axis)]
    p = (z, y, x)
    return p[fixed], p[r], p[c]


class _LazyTiff:
    """A TIFF stack read page by page (each page one z slice) with a small page cache."""

    def __init__(self, path: Path, cache_bytes: int = 512 * 2**20):
        import tifffile

        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        self._pages = series.pages
        self.dtype = np.dtype(series.dtype)
        shape = tuple(int(s) for s in series.shape if s != 1) or (1, 1)
        self.ndim = 2 if len(shape) == 2 else 3
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or len(self._pages) != shape[0]:
            raise ValueError(
                f"{self.path}: expected a 2D image or a stack of 2D pages, got series shape "
                f"{series.shape} in {len(self._pages)} pages"
            )
        self.shape = shape
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        page_bytes = shape[1] * shape[2] * self.dtype.itemsize
        self._max_pages = max(2, cache_bytes // max(1, page_bytes))
        self._lock = threading.Lock()

    def page(self, z: int) -> np.ndarray:
        with self._lock:
            arr = self._cache.get(z)
            if arr is not None:
                self._cache.move_to_end(z)
                return arr
            arr = np.asarray(self._pages[z].asarray()).reshape(self.shape[1:])
            arr.setflags(write=False)
            self._cache[z] = arr
            while len(self._cache) > self._max_pages:
                self._cache.popitem(last=False)
            return arr

    def __getitem__(self, idx):
        if not isinstance(idx, tuple):
            idx = (idx,)
        idx = idx + (slice(None),) * (3 - len(idx))
        zi, rest = idx[0], idx[1:]
        if isinstance(zi, (int, np.integer)):
            return self.page(int(zi) % self.shape[0])[rest]
        zs = range(self.shape[0])[zi]
        return np.stack([self.page(z)[rest] for z in zs], axis=0)

    def close(self):
        self._tif.close()


def _open_tiff(path: Path):
    import tifffile

    try:
        arr = tifffile.memmap(path, mode="r")
        return arr
    except Exception:  # compressed, tiled or not contiguous: read page by page
        return _LazyTiff(path)


def _open_zarr(path: Path):
    import zarr

    z = zarr.open(str(path), mode="r")
    if hasattr(z, "shape"):
        return z
    # a group: take its first array
    arrays = list(z.arrays()) if hasattr(z, "arrays") else []
    if not arrays:
        raise ValueError(f"{path}: zarr group without arrays")
    return arrays[0][1]


class VolumeSource:
    """Read-only, lazily read view of a 2D image or 3D volume (see module docstring)."""

    def __init__(self, data: Any):
        self.path: Path | None = None
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
            self.path = path
            if path.suffix.lower() in (".tif", ".tiff"):
                data = _open_tiff(path)
            elif path.suffix.lower() == ".zarr" or path.is_dir():
                data = _open_zarr(path)
            else:
                raise ValueError(f"{path}: expected a .tif/.tiff file or a zarr store")
        if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")):
            data = np.asarray(data)
        shape = tuple(int(s) for s in data.shape)
        if len(shape) > 3:
            squeezed = tuple(s for s in shape if s != 1)
            if len(squeezed) not in (2, 3):
                raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}")
            if isinstance(data, np.ndarray):
                data = data.reshape(squeezed)
            else:
                raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}; squeeze it first")
            shape = squeezed
        if len(shape) not in (2, 3):
            raise ValueError(f"expected a 2D image or 3D volume, got shape {shape}")
        if min(shape) < 1:
            raise ValueError(f"empty image of shape {shape}")
        self.ndim = data.ndim if isinstance(data, _LazyTiff) else len(shape)
        self.data = data
        self.dtype = np.dtype(data.dtype)
        if self.dtype.kind not in "uifb":
            raise ValueError(f"unsupported image dtype {self.dtype}")
        self.shape: tuple[int, int, int] = (1,) + shape if len(shape) == 2 else shape  # type: ignore
        if isinstance(data, _LazyTiff):
            self.shape = data.shape

    @property
    def lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray) or isinstance(self.data, np.memmap)

    def __getitem__(self, idx) -> np.ndarray:
        """numpy indexing in ``(Z, Y, X)`` coordinates (also for 2D images, with Z of length 1)."""
        if self.ndim == 2 and not isinstance(self.data, _LazyTiff):
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


def _materialize(a) -> np.ndarray:
    if hasattr(a, "compute"):  # dask
        a = a.compute()
    return np.asarray(a)
