"""Opening images and volumes lazily: the one place that decides how a TIFF or zarr path is read.

``open_volume`` is used by stack inference, the CLI and the viewer alike:

- uncompressed, contiguous TIFF: memory-mapped (``numpy.memmap``);
- other TIFF stacks of 2D pages (compressed, tiled): ``TiffPages``, decoding pages on access
  and keeping recently read pages (xz/yz slices touch every page);
- any other TIFF layout: tifffile's zarr view of the file (``tifffile.imread(aszarr=True)``);
- a zarr folder: the array itself, or for a group its only array or OME-Zarr's full-resolution
  array ``"0"`` (a group with several arrays and no ``"0"`` is refused with the names to choose from).
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import PathLike


class _NotAPageStack(ValueError):
    """A readable TIFF whose first series is not one 2D page per z slice (e.g. RGB, multi-channel)."""


class TiffPages:
    """A TIFF image or stack of 2D pages, read page by page with a small page cache.

    Array-like: ``shape`` (2D for a single page, ``(Z, Y, X)`` for a stack), ``dtype``, ``ndim``
    and numpy indexing (integers, slices and ``...``; the first axis of a stack picks pages).
    Returned pages are read-only.

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF file.
    cache_bytes : int, optional
        Decoded pages kept in memory (at least two pages).

    Examples
    --------
    >>> import tempfile, tifffile, numpy as np
    >>> path = tempfile.mkdtemp() + "/c.tif"
    >>> stack = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    >>> tifffile.imwrite(path, stack, compression="zlib", photometric="minisblack")
    >>> TiffPages(path)[:, 1, 2].tolist()
    [6, 18]
    """

    def __init__(self, path: PathLike, cache_bytes: int = 512 * 2**20):
        import tifffile

        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        self._pages = series.pages
        self.dtype = np.dtype(series.dtype)
        shape = tuple(int(s) for s in series.shape if s != 1) or (1, 1)
        n = len(self._pages)
        if len(shape) == 2 and n == 1:
            self.shape: tuple[int, ...] = shape
        elif len(shape) == 3 and n == shape[0]:
            self.shape = shape
        else:
            self._tif.close()
            raise _NotAPageStack(f"{self.path}: not a 2D image or a stack of 2D pages ({series.shape}, {n} pages)")
        self._page_shape = self.shape[-2:]
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        page_bytes = self._page_shape[0] * self._page_shape[1] * self.dtype.itemsize
        self._max_pages = max(2, cache_bytes // max(1, page_bytes))
        self._lock = threading.Lock()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def page(self, z: int) -> np.ndarray:
        """Page ``z`` (decoded once while it stays in the cache)."""
        with self._lock:
            arr = self._cache.get(z)
            if arr is not None:
                self._cache.move_to_end(z)
                return arr
            arr = np.asarray(self._pages[z].asarray()).reshape(self._page_shape)
            arr.setflags(write=False)
            self._cache[z] = arr
            while len(self._cache) > self._max_pages:
                self._cache.popitem(last=False)
            return arr

    def __getitem__(self, idx: Any) -> np.ndarray:
        if not isinstance(idx, tuple):
            idx = (idx,)
        if any(i is Ellipsis for i in idx):
            k = next(j for j, i in enumerate(idx) if i is Ellipsis)
            idx = idx[:k] + (slice(None),) * (self.ndim - len(idx) + 1) + idx[k + 1 :]
        if self.ndim == 2:
            return self.page(0)[idx]
        idx = idx + (slice(None),) * (3 - len(idx))
        zi, rest = idx[0], idx[1:]
        if isinstance(zi, (int, np.integer)):
            return self.page(int(zi) % self.shape[0])[rest]
        zs = range(self.shape[0])[zi] if isinstance(zi, slice) else [int(z) for z in np.asarray(zi).ravel()]
        return np.stack([self.page(z)[rest] for z in zs], axis=0)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        self._tif.close()


def open_volume(path: PathLike, mode: str = "r", page_cache_mb: float = 32):
    """A lazy array-like for a TIFF file or a zarr folder: ``(Z, Y, X)``, or 2D for a 2D image.

    See the module docstring for which reader each layout gets.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` file or a zarr folder (array or group).
    mode : str, optional
        zarr open mode (``"r+"`` to write into an existing zarr array); TIFF is always read-only.
    page_cache_mb : float, optional
        Decoded pages a ``TiffPages`` keeps. Small by default so that stack inference stays
        within its own block budget; the viewer asks for more (xz/yz slices revisit every page).

    Returns
    -------
    array-like
        ``numpy.memmap``, ``TiffPages``, or a zarr array; indexing returns numpy arrays.

    Examples
    --------
    >>> import tempfile, tifffile, numpy as np
    >>> path = tempfile.mkdtemp() + "/u.tif"
    >>> tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    >>> vol = open_volume(path)
    >>> type(vol).__name__, vol.shape
    ('memmap', (3, 8, 8))
    """
    import tifffile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_zarr(path, mode)
    try:
        return tifffile.memmap(path, mode="r")
    except Exception:  # tifffile raises several types: compressed, tiled, or not a TIFF at all
        pass
    try:
        return TiffPages(path, cache_bytes=int(page_cache_mb * 2**20))
    except _NotAPageStack:
        pass  # not a stack of 2D pages: tifffile's zarr view handles other layouts
    except Exception as e:  # tifffile raises several types for files that are not TIFF
        raise ValueError(f"{path}: not a readable TIFF image or zarr folder ({e.__class__.__name__})") from None
    import zarr

    store = tifffile.imread(path, aszarr=True)
    return zarr.open(store, mode="r")


def _open_zarr(path: Path, mode: str):
    import zarr

    try:
        node = zarr.open(str(path), mode=mode)
    except Exception as e:  # zarr raises several types for folders that are not zarr
        raise ValueError(f"{path}: not a zarr folder ({e.__class__.__name__}: {e})") from None
    if isinstance(node, zarr.Array):
        return node
    arrays = sorted(name for name, _ in node.arrays())
    if "0" in arrays or len(arrays) == 1:
        return node["0" if "0" in arrays else arrays[0]]
    raise ValueError(
        f"{path}: zarr group with arrays {arrays or 'none'}; pass the array folder, "
        f"e.g. {path / (arrays[0] if arrays else 'ARRAY')}"
    )
