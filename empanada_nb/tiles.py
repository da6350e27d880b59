"""Cutting a large 2D image into overlapping tiles for labelling, and stitching edited label tiles back.

The folder layout follows empanada-napari's *Create Tiles* / *Merge Tiles* (``_create_tiles.py``):
``TILES/im/<row>_<col>.tif`` (image tiles), ``TILES/msk/<row>_<col>.tif`` (label tiles, where labels
exist), named by the tile's top-left corner in the image, every tile ``tile_size`` square (the
image's right and bottom edges are zero-padded), and ``TILES/metadata.tif``: a 1x1 TIFF whose
description is JSON with ``original_image_shape``, ``padded_image_shape`` and ``mask_available``.
empanada-napari's tiles do not overlap; here tiles overlap by ``overlap`` pixels (``tile_size`` and
``overlap`` are added to the metadata; ``overlap=0`` gives empanada-napari's grid exactly).

Stitching (``merge_tiles``): each pixel comes from one tile, the one whose share of the overlap
it lies in (the seam runs through the middle of each overlap). With ``relabel=True`` ids are made
unique across tiles, and an object cut by a seam gets one id: a tile's object takes the id of the
already stitched object it overlaps most within the overlap (at least half its pixels there),
within the same class when ``label_divisor`` is given. Objects cut by a tile edge without overlap
(``overlap=0``) cannot be matched and keep separate ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import PathLike, atomic_path

__all__ = ["tile_corners", "create_tiles", "read_tiles", "write_tile_masks", "merge_tiles"]


def tile_corners(shape: tuple[int, int], tile_size: int, overlap: int = 0) -> tuple[list[int], list[int]]:
    """Top-left rows and columns of the tile grid that covers a 2D ``shape``.

    Examples
    --------
    >>> tile_corners((100, 50), 40, 10)
    ([0, 30, 60], [0, 30])
    """
    tile_size, overlap = int(tile_size), int(overlap)
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in 0..tile_size-1 ({tile_size - 1}), got {overlap}")
    step = tile_size - overlap

    def starts(n: int) -> list[int]:
        k = max(1, -(-(n - overlap) // step))  # ceil((n - overlap) / step) tiles reach the end
        return [i * step for i in range(k)]

    return starts(int(shape[0])), starts(int(shape[1]))


def _tile(arr, r: int, c: int, size: int) -> np.ndarray:
    t = np.asarray(arr[r : r + size, c : c + size])
    if t.shape != (size, size):  # the right and bottom edges are zero-padded, as empanada-napari
        t = np.pad(t, ((0, size - t.shape[0]), (0, size - t.shape[1])))
    return t


def _write(path: Path, arr: np.ndarray, **kwargs) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tif") as tmp:
        tifffile.imwrite(tmp, arr, **kwargs)


def create_tiles(
    image, out_dir: PathLike, tile_size: int = 512, overlap: int = 64, labels=None, *, overwrite: bool = False
) -> dict[str, Any]:
    """Cut a 2D image (and its labels) into square, overlapping tiles (empanada-napari's Create Tiles).

    Parameters
    ----------
    image : array-like or path
        A 2D image (array, or a TIFF/zarr path read lazily by ``empanada_nb.reader.open_volume``).
    out_dir : str or os.PathLike
        The tiles folder (``im/``, ``msk/``, ``metadata.tif``; see the module docstring).
    tile_size : int
        Tile side in pixels.
    overlap : int
        Pixels shared by neighbouring tiles (0: empanada-napari's grid).
    labels : array-like or path, optional
        Labels of the image's shape, cut into ``msk/`` the same way.
    overwrite : bool
        Write into a folder that already has tiles.

    Returns
    -------
    dict
        The metadata (also in ``metadata.tif``) plus ``"dir"`` and ``"tiles"`` (the file names).

    Examples
    --------
    >>> import tempfile
    >>> meta = create_tiles(np.zeros((100, 70), np.uint8), tempfile.mkdtemp(), tile_size=64, overlap=16)
    >>> meta["tiles"], meta["padded_image_shape"]
    (['0_0.tif', '0_48.tif', '48_0.tif', '48_48.tif'], [112, 112])
    """
    from .reader import open_volume

    if isinstance(image, (str, os.PathLike)):
        image = open_volume(image)
    if isinstance(labels, (str, os.PathLike)):
        labels = open_volume(labels)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 2:
        raise ValueError(f"create_tiles cuts a 2D image; got shape {shape} (pass one slice, e.g. volume[z])")
    if labels is not None and tuple(labels.shape) != shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} differs from the image shape {shape}")
    out = Path(out_dir)
    if (out / "metadata.tif").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds tiles; pass overwrite=True or choose another folder")
    rows, cols = tile_corners(shape, tile_size, overlap)
    names = []
    for r in rows:
        for c in cols:
            name = f"{r}_{c}.tif"
            _write(out / "im" / name, _tile(image, r, c, tile_size), compression="zlib", photometric="minisblack")
            if labels is not None:
                _write(out / "msk" / name, _tile(labels, r, c, tile_size), compression="zlib")
            names.append(name)
    meta = {
        "original_image_shape": list(shape),
        "padded_image_shape": [rows[-1] + int(tile_size), cols[-1] + int(tile_size)],
        "mask_available": labels is not None,
        "tile_size": int(tile_size),
        "overlap": int(overlap),
    }
    _write(out / "metadata.tif", np.zeros((1, 1), np.uint8), description=json.dumps(meta))
    return {**meta, "dir": str(out), "tiles": names}


def _metadata(tile_dir: Path) -> dict[str, Any]:
    import tifffile

    path = tile_dir / "metadata.tif"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {tile_dir} is not a tiles folder made by create_tiles")
    with tifffile.TiffFile(path) as f:
        meta = json.loads(f.pages[0].description)
    meta.setdefault("overlap", 0)  # empanada-napari's tiles
    if "tile_size" not in meta:
        first = next(iter(sorted((tile_dir / "im").glob("*.tif")) + sorted((tile_dir / "msk").glob("*.tif"))), None)
        meta["tile_size"] = int(tifffile.imread(first).shape[0]) if first else 0
    return meta


def _corner(name: str) -> tuple[int, int]:
    try:
        r, c = Path(name).stem.split("_")[:2]
        return int(r), int(c)
    except ValueError:
        raise ValueError(f"tile file {name!r} is not named <row>_<col>.tif") from None


def read_tiles(tile_dir: PathLike, kind: str = "im") -> tuple[np.ndarray, list[str]]:
    """All tiles of a folder as one ``(N, tile, tile)`` stack (e.g. to label them in the Viewer) and their names.

    Parameters
    ----------
    tile_dir : str or os.PathLike
        A tiles folder (``create_tiles``).
    kind : str
        ``"im"`` (image tiles) or ``"msk"`` (label tiles).

    Returns
    -------
    tuple
        ``(stack, names)``: the tiles in row-major order of their corners, and their file names.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = create_tiles(np.ones((50, 50), np.uint8), d, tile_size=32, overlap=8)
    >>> stack, names = read_tiles(d)
    >>> stack.shape, names[-1]
    ((4, 32, 32), '24_24.tif')
    """
    import tifffile

    if kind not in ("im", "msk"):
        raise ValueError(f"kind must be 'im' or 'msk', got {kind!r}")
    folder = Path(tile_dir) / kind
    names = sorted((p.name for p in folder.glob("*.tif")), key=_corner)
    if not names:
        raise FileNotFoundError(f"no tiles in {folder}")
    return np.stack([tifffile.imread(folder / n) for n in names]), names


def write_tile_masks(tile_dir: PathLike, masks: np.ndarray, names: list[str]) -> list[str]:
    """Write edited label tiles to ``msk/`` (each file atomically), in the order of ``names``.

    Parameters
    ----------
    tile_dir : str or os.PathLike
        The tiles folder.
    masks : numpy.ndarray
        ``(N, tile, tile)`` integer labels, as ``read_tiles`` orders them.
    names : list of str
        The tiles' file names (``read_tiles``).

    Returns
    -------
    list of str
        The written names.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = create_tiles(np.ones((50, 50), np.uint8), d, tile_size=32, overlap=8)
    >>> stack, names = read_tiles(d)
    >>> write_tile_masks(d, np.ones(stack.shape, np.uint16), names)[0]
    '0_0.tif'
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(masks) != len(names):
        raise ValueError(f"masks must be a stack of {len(names)} tiles; got shape {masks.shape}")
    if masks.dtype.kind not in "ui":
        raise TypeError(f"masks must be integer labels, got dtype {masks.dtype}")
    folder = Path(tile_dir) / "msk"
    for m, n in zip(masks, names):
        _corner(n)
        _write(folder / n, m, compression="zlib")
    return list(names)


def _owned(starts: list[int], i: int, overlap: int, end: int) -> tuple[int, int]:
    """Rows (or cols) of tile ``i`` that it owns: the seam runs through the middle of each overlap."""
    a = 0 if i == 0 else starts[i] + overlap // 2
    b = end if i == len(starts) - 1 else starts[i + 1] + overlap // 2
    return a, b


def merge_tiles(
    tile_dir: PathLike,
    out_path: PathLike | None = None,
    kind: str = "msk",
    relabel: bool = True,
    label_divisor: int | None = None,
    *,
    overwrite: bool = False,
) -> np.ndarray:
    """Stitch a tiles folder back into one image (empanada-napari's Merge Tiles), overlaps resolved.

    Parameters
    ----------
    tile_dir : str or os.PathLike
        A folder made by ``create_tiles`` (or empanada-napari's Create Tiles), its ``msk/`` edited.
    out_path : str or os.PathLike, optional
        Also write the result there as a TIFF (atomically).
    kind : str
        ``"msk"`` (label tiles) or ``"im"`` (image tiles).
    relabel : bool
        Labels only: unique ids across tiles, one id for an object cut by a seam (module docstring).
        False pastes the ids as they are (tiles labelled with globally unique ids).
    label_divisor : int, optional
        Panoptic ids: relabelling keeps each object's class.
    overwrite : bool
        Replace an existing ``out_path``.

    Returns
    -------
    numpy.ndarray
        The stitched array of the original image's shape (labels as uint32, or int64 when needed).

    Examples
    --------
    >>> import tempfile
    >>> lab = np.zeros((60, 60), np.uint32); lab[20:40, 5:55] = 1  # crosses every seam
    >>> d = tempfile.mkdtemp()
    >>> _ = create_tiles(np.zeros((60, 60), np.uint8), d, tile_size=32, overlap=8, labels=lab)
    >>> out = merge_tiles(d)
    >>> np.unique(out).tolist(), bool(((out > 0) == (lab > 0)).all())
    ([0, 1], True)
    """
    import tifffile

    tile_dir = Path(tile_dir)
    if kind not in ("im", "msk"):
        raise ValueError(f"kind must be 'im' or 'msk', got {kind!r}")
    if out_path is not None and Path(out_path).exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it")
    meta = _metadata(tile_dir)
    H, W = (int(s) for s in meta["original_image_shape"])
    size, overlap = int(meta["tile_size"]), int(meta["overlap"])
    folder = tile_dir / kind
    files = {_corner(p.name): p for p in folder.glob("*.tif")}
    if not files:
        raise FileNotFoundError(f"no tiles in {folder}")
    rows, cols = sorted({r for r, _ in files}), sorted({c for _, c in files})
    PH, PW = rows[-1] + size, cols[-1] + size
    labels = kind == "msk"
    out = None
    written = np.zeros((PH, PW), bool)
    counters: dict[int, int] = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if (r, c) not in files:
                raise FileNotFoundError(f"tile {r}_{c}.tif is missing from {folder}")
            t = np.asarray(tifffile.imread(files[(r, c)]))
            h, w = t.shape[:2]
            if out is None:
                dtype = (np.uint32 if int(t.max(initial=0)) < 2**32 else np.int64) if labels else t.dtype
                out = np.zeros((PH, PW) + t.shape[2:], dtype=np.int64 if labels and relabel else dtype)
            if labels and relabel:
                t = _match_ids(t, out[r : r + h, c : c + w], written[r : r + h, c : c + w], counters, label_divisor)
            r0, r1 = _owned(rows, i, overlap, PH)
            c0, c1 = _owned(cols, j, overlap, PW)
            out[r0:r1, c0:c1] = t[r0 - r : r1 - r, c0 - c : c1 - c]
            written[r0:r1, c0:c1] = True
    out = out[:H, :W]
    if labels:
        out = out.astype(np.uint32 if int(out.max(initial=0)) < 2**32 else np.int64)
    if out_path is not None:
        _write(Path(out_path), out, compression="zlib", description=json.dumps(meta))
    return out


def _match_ids(
    tile: np.ndarray, placed: np.ndarray, done: np.ndarray, counters: dict[int, int], divisor: int | None
) -> np.ndarray:
    """New ids for a tile's objects: the stitched object each overlaps most in ``done`` (>= half of its
    pixels there, same class), else the next free id (of its class)."""
    ids = np.unique(tile)
    ids = ids[ids > 0]
    lut = {}
    a, b = tile[done], placed[done]
    both = (a > 0) & (b > 0)
    pairs, counts = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True) if both.any() else ([], [])
    best: dict[int, tuple[int, int]] = {}
    for (ti, pi), n in zip(np.asarray(pairs).T.tolist() if len(counts) else [], np.asarray(counts).tolist()):
        if divisor and ti // divisor != pi // divisor:
            continue
        if n > best.get(ti, (0, 0))[1]:
            best[ti] = (pi, n)
    in_done = dict(zip(*np.unique(a[a > 0], return_counts=True))) if a.size else {}
    for ti in ids.tolist():
        pi, n = best.get(ti, (0, 0))
        if n and 2 * n >= in_done.get(ti, 0):
            lut[ti] = pi
            continue
        cls = ti // divisor if divisor else 0
        k = counters.get(cls, 0) + 1
        if divisor and ti % divisor == 0:  # a stuff region keeps its class id
            lut[ti] = ti
            continue
        counters[cls] = k
        lut[ti] = cls * divisor + k if divisor else k
    if not lut:
        return tile.astype(np.int64)
    keys = np.array(sorted(lut), dtype=np.int64)
    vals = np.array([lut[k] for k in keys.tolist()], dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, tile), 0, len(keys) - 1)
    return np.where((tile > 0) & (keys[pos] == tile), vals[pos], 0)
