"""Opening images and volumes lazily: the one place that decides how a TIFF or zarr path is read.

``open_volume`` is used by stack inference, the CLI and the viewer alike:

- uncompressed, contiguous TIFF: memory-mapped (``numpy.memmap``);
- other TIFF stacks of 2D pages (compressed, tiled): ``TiffPages``, decoding pages on access
  and keeping recently read pages (xz/yz slices touch every page);
- any other TIFF layout: tifffile's zarr view of the file (``tifffile.imread(aszarr=True)``);
- a zarr folder (zarr v2 or v3): the array itself; an OME-Zarr group (NGFF 0.1-0.5 ``multiscales``,
  also inside a bioformats2raw series ``"0"``): its full-resolution level, whatever its path is called;
  another group: its only array or array ``"0"`` (several arrays and no ``"0"`` is refused with the
  names to choose from);
- an array-like (numpy, memmap, zarr, dask): itself (a zarr group: as a folder above).

``open_pyramid`` opens every level of an OME-Zarr with the voxel sizes of its
``coordinateTransformations`` (any other source: one level; TIFF voxel sizes from its resolution
tags and ImageJ ``spacing``); ``volume_info`` summarises a source without reading its pixels.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import PathLike
from ._ngff import SPACE, parse_multiscales, unit_name


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


def open_volume(path, mode: str = "r", page_cache_mb: float = 32):
    """A lazy array-like for a TIFF file, a zarr folder or an array: ``(Z, Y, X)``, or 2D for a 2D image.

    See the module docstring for which reader each layout gets; an OME-Zarr gives its
    full-resolution level (``open_pyramid`` gives every level).

    Parameters
    ----------
    path : str or os.PathLike or array_like
        A ``.tif``/``.tiff`` file, a zarr folder (array, group or OME-Zarr), or an array-like
        (numpy, memmap, zarr, dask; returned as it is) or zarr group.
    mode : str, optional
        zarr open mode (``"r+"`` to write into an existing zarr array); TIFF is always read-only.
    page_cache_mb : float, optional
        Decoded pages a ``TiffPages`` keeps. Small by default so that stack inference stays
        within its own block budget; the viewer asks for more (xz/yz slices revisit every page).

    Returns
    -------
    array-like
        ``numpy.memmap``, ``TiffPages``, a zarr array (or a view of one without its length-1
        channel/time axes), or the array-like given; indexing returns numpy arrays.

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

    if isinstance(path, Pyramid):
        return path.levels[0]
    if not isinstance(path, (str, os.PathLike)):
        return _open_node(path, "<array>") if is_zarr_group(path) else path
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
    return _open_node(node, path)


def is_zarr_group(obj) -> bool:
    """Whether ``obj`` is a zarr group (without importing zarr for other objects)."""
    if not type(obj).__module__.startswith("zarr"):
        return False
    import zarr

    return isinstance(obj, zarr.Group)


def _open_node(node, path):
    """An array, an OME-Zarr's level 0, or a plain group's only array / array ``"0"``."""
    import zarr

    if isinstance(node, zarr.Array):
        return node
    found = _find_multiscales(node)
    if found is not None:
        return _group_pyramid(*found, path).levels[0]
    arrays = sorted(name for name, _ in node.arrays())
    if "0" in arrays or len(arrays) == 1:
        return node["0" if "0" in arrays else arrays[0]]
    raise ValueError(
        f"{path}: zarr group with arrays {arrays or 'none'}; pass the array folder, "
        f"e.g. {Path(path) / (arrays[0] if arrays else 'ARRAY')}"
    )


# ------------------------------------------------------------------------------------- pyramids


@dataclasses.dataclass
class Pyramid:
    """The resolution levels of an image, finest first, with its physical voxel size.

    Parameters
    ----------
    levels : list of array_like
        Level 0 (full resolution) first; each lazily read (zarr arrays for an OME-Zarr).
    scales : list of tuple of float
        Per level, its voxel size relative to level 0 along ``(z, y, x)`` (``(y, x)`` for a 2D image):
        ``(1, 1, 1)``, ``(1, 2, 2)``, ...
    voxel_size : tuple of float or None
        Physical size of a level-0 voxel along ``(z, y, x)``, or None when the source does not say.
    unit : str or None
        Unit of ``voxel_size`` (NGFF spelling, e.g. ``"micrometer"``), or None.

    Examples
    --------
    >>> import numpy as np
    >>> p = open_pyramid(np.zeros((2, 8, 8), np.uint8))
    >>> len(p.levels), p.scales, p.voxel_size
    (1, [(1.0, 1.0, 1.0)], None)
    """

    levels: list
    scales: list[tuple[float, ...]]
    voxel_size: tuple[float, ...] | None = None
    unit: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0.

        Returns
        -------
        tuple of int
        """
        return tuple(int(s) for s in self.levels[0].shape)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the levels.

        Returns
        -------
        numpy.dtype
        """
        return np.dtype(self.levels[0].dtype)

    def voxel_size_of(self, level: int) -> tuple[float, ...] | None:
        """Physical voxel size of ``level``.

        Parameters
        ----------
        level : int
            0 (full resolution), 1, ...

        Returns
        -------
        tuple of float or None
            None when the pyramid has no voxel size.

        Examples
        --------
        >>> import numpy as np
        >>> p = Pyramid([np.zeros((2, 8, 8)), np.zeros((2, 4, 4))], [(1, 1, 1), (1, 2, 2)], (40.0, 5.0, 5.0))
        >>> p.voxel_size_of(1)
        (40.0, 10.0, 10.0)
        """
        if self.voxel_size is None:
            return None
        return tuple(v * s for v, s in zip(self.voxel_size, self.scales[level]))


class LevelView:
    """An OME-Zarr level with its length-1 non-spatial axes (``t``, ``c``) hidden: ``(Z, Y, X)`` indexing."""

    def __init__(self, array, keep: Sequence[int]):
        self.array, self._keep = array, tuple(keep)
        self.shape = tuple(int(array.shape[d]) for d in self._keep)
        self.dtype = np.dtype(array.dtype)
        chunks = getattr(array, "chunks", None)
        self.chunks = tuple(chunks[d] for d in self._keep) if chunks is not None else None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _full(self, idx: Any) -> tuple:
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(i is Ellipsis for i in idx):
            k = next(j for j, i in enumerate(idx) if i is Ellipsis)
            idx = idx[:k] + (slice(None),) * (self.ndim - len(idx) + 1) + idx[k + 1 :]
        idx = list(idx) + [slice(None)] * (self.ndim - len(idx))
        return tuple(idx.pop(0) if d in self._keep else 0 for d in range(len(self.array.shape)))

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.asarray(self.array[self._full(idx)])

    def __setitem__(self, idx: Any, value) -> None:
        self.array[self._full(idx)] = value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)


def _find_multiscales(group):
    """``(group, Multiscale)`` of an OME-Zarr group, or of a bioformats2raw layout's first series."""
    ms = parse_multiscales(group.attrs)
    if ms is not None:
        return group, ms
    try:
        inner = group["0"]
    except KeyError:
        return None
    import zarr

    if isinstance(inner, zarr.Group):
        ms = parse_multiscales(inner.attrs)
        if ms is not None:
            return inner, ms
    return None


def _group_pyramid(group, ms, where) -> Pyramid:
    """Every level of an OME-Zarr multiscale, as ``(Z, Y, X)`` (or ``(Y, X)``) views, with voxel sizes."""
    levels = [group[p] for p in ms.paths]
    ndim = len(levels[0].shape)
    names = ms.axes or list("tczyx"[-ndim:])  # NGFF 0.1/0.2 have no axes: always t, c, z, y, x
    if len(names) != ndim:
        raise ValueError(f"{where}: OME-Zarr axes {names} do not match the array's {ndim} dimensions")
    types = ms.types or [None] * ndim
    space = [d for d, (n, t) in enumerate(zip(names, types)) if t == "space" or (t is None and n.lower() in SPACE)]
    if len(space) not in (2, 3):
        raise ValueError(f"{where}: OME-Zarr axes {names}: expected 2 or 3 spatial axes (z, y, x)")
    extra = [d for d in range(ndim) if d not in space and levels[0].shape[d] != 1]
    if extra:
        what = ", ".join(f"{names[d]}={levels[0].shape[d]}" for d in extra)
        raise ValueError(
            f"{where}: OME-Zarr image has {what}; empanada_nb reads one greyscale channel and time point: "
            f"open the array with zarr and pass one channel, e.g. zarr.open(...)['0'][0]"
        )
    if len(space) < ndim:
        levels = [LevelView(a, space) for a in levels]
    shapes = [
        tuple(int(a.shape[d]) for d in space) for a in (lv.array if isinstance(lv, LevelView) else lv for lv in levels)
    ]
    sizes = [[s[d] for d in space] if s is not None and len(s) == ndim else None for s in ms.scales]
    if sizes[0] is not None and all(s is not None for s in sizes):
        scales = [tuple(float(a) / float(b) for a, b in zip(s, sizes[0])) for s in sizes]
        voxel_size: tuple[float, ...] | None = tuple(float(v) for v in sizes[0])
    else:  # no scale transforms (NGFF < 0.4): the shapes say how much coarser each level is
        scales = [tuple(float(a) / float(b) for a, b in zip(shapes[0], s)) for s in shapes]
        voxel_size = None
    units = {unit_name(ms.units[d]) for d in space if ms.units and ms.units[d]} if ms.units else set()
    unit = units.pop() if len(units) == 1 else (unit_name(ms.units[space[-1]]) if units else None)
    return Pyramid(levels, scales, voxel_size, unit)


def _tiff_voxel_size(path: Path, ndim: int) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel size from a TIFF's X/YResolution tags and ImageJ ``spacing``/``unit`` (as ImageJ reads them)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as t:
            page = t.pages[0]
            ij = t.imagej_metadata or {}
            xr, yr = page.tags.get("XResolution"), page.tags.get("YResolution")
            res_unit = page.tags.get("ResolutionUnit")
            res_unit = int(res_unit.value) if res_unit is not None else 1
            if xr is None or yr is None:
                return None, None
            x = float(xr.value[1]) / float(xr.value[0])  # the tags hold pixels per unit
            y = float(yr.value[1]) / float(yr.value[0])
    except Exception:  # unreadable tags: no voxel size rather than no volume
        return None, None
    spacing = ij.get("spacing")
    unit = unit_name(ij.get("unit"))
    if unit is None and res_unit in (2, 3):  # inch / centimetre without ImageJ metadata
        f = 25400.0 if res_unit == 2 else 10000.0
        x, y, unit = x * f, y * f, "micrometer"
    if (x, y) == (1.0, 1.0) and spacing is None and unit is None:
        return None, None  # tifffile's default resolution: says nothing
    z = float(spacing) if spacing is not None else 1.0  # ImageJ's default voxel depth
    return ((z, y, x) if ndim == 3 else (y, x)), unit


def open_pyramid(source, mode: str = "r") -> Pyramid:
    """Every resolution level of an image with its voxel size: OME-Zarr pyramids, or any one-level source.

    Parameters
    ----------
    source : str or os.PathLike or array_like
        An OME-Zarr folder (NGFF 0.1-0.5, zarr v2 or v3), any path ``open_volume`` reads, or an
        array-like (numpy, memmap, zarr, dask) or zarr group.
    mode : str, optional
        zarr open mode (``"r+"`` to write into the levels).

    Returns
    -------
    Pyramid
        ``levels`` (finest first), ``scales`` per level relative to level 0, ``voxel_size`` and
        ``unit`` of level 0 (None where the source has no such metadata).

    Raises
    ------
    ValueError
        When the OME-Zarr has several channels or time points, or its axes are not 2 or 3 spatial ones.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from empanada_nb.omezarr import write_ome_zarr_labels
    >>> path = tempfile.mkdtemp() + "/seg.ome.zarr"
    >>> _ = write_ome_zarr_labels(np.ones((4, 16, 16), np.uint16), path, voxel_size=(40, 5, 5), unit="nm", n_levels=2)
    >>> p = open_pyramid(path)
    >>> [lv.shape for lv in p.levels], p.voxel_size, p.unit
    ([(4, 16, 16), (4, 8, 8)], (40.0, 5.0, 5.0), 'nanometer')
    >>> p.scales[1]
    (1.0, 2.0, 2.0)
    """
    if isinstance(source, Pyramid):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            import zarr

            try:
                node = zarr.open(str(path), mode=mode)
            except Exception as e:  # zarr raises several types for folders that are not zarr
                raise ValueError(f"{path}: not a zarr folder ({e.__class__.__name__}: {e})") from None
            return _node_pyramid(node, path)
        vol = open_volume(path, mode=mode)
        vs, unit = _tiff_voxel_size(path, len(vol.shape)) if path.suffix.lower() in (".tif", ".tiff") else (None, None)
        return Pyramid([vol], [(1.0,) * len(vol.shape)], vs, unit)
    return _node_pyramid(source, "<array>")


def _node_pyramid(node, where) -> Pyramid:
    import zarr

    if isinstance(node, zarr.Group):
        found = _find_multiscales(node)
        if found is not None:
            return _group_pyramid(*found, where)
        arr = _open_node(node, where)
        return Pyramid([arr], [(1.0,) * len(arr.shape)])
    vs = unit = None
    if isinstance(node, zarr.Array):  # one level of an OME-Zarr opened on its own: its voxel size
        vs, unit = _level_voxel_size(node)
    return Pyramid([node], [(1.0,) * len(node.shape)], vs, unit)


def _level_voxel_size(arr) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel size of a zarr array that is one level of an OME-Zarr (its parent group's metadata)."""
    import zarr

    try:
        path = arr.path.strip("/")
        if path:
            parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
            group = zarr.open_group(store=arr.store, path=parent, mode="r")
        else:  # opened at its own folder: the group is the folder above
            root = Path(arr.store.root)
            name, group = root.name, zarr.open_group(str(root.parent), mode="r")
        ms = parse_multiscales(group.attrs)
        if ms is None or name not in ms.paths:
            return None, None
        p = _group_pyramid(group, ms, path)
    except Exception:  # no readable parent metadata: the array alone says nothing
        return None, None
    k = ms.paths.index(name)
    if p.voxel_size is None or len(p.voxel_size) != len(arr.shape):
        return None, p.unit
    return p.voxel_size_of(k), p.unit


def volume_info(source) -> dict:
    """Shape, dtype, voxel size and pyramid levels of a volume, without reading its pixels.

    Parameters
    ----------
    source : str or os.PathLike or array_like
        Anything ``open_pyramid`` opens.

    Returns
    -------
    dict
        ``shape``, ``dtype`` (name), ``voxel_size`` (``(z, y, x)`` or None), ``unit`` (or None),
        ``levels`` (the shape of each level, finest first) and ``scales`` (per level, relative to level 0).

    Examples
    --------
    >>> import numpy as np
    >>> volume_info(np.zeros((3, 4, 5), np.uint8))["shape"]
    (3, 4, 5)
    """
    p = open_pyramid(source)
    return {
        "shape": p.shape,
        "dtype": p.dtype.name,
        "voxel_size": p.voxel_size,
        "unit": p.unit,
        "levels": [tuple(int(s) for s in lv.shape) for lv in p.levels],
        "scales": list(p.scales),
    }
