"""Training patches: picks, context regions, random filling and writing a training dataset.

Plain functions on arrays and dicts, used by ``empanada_nb.Viewer`` and usable without it.

Coordinates
    A volume is indexed ``(Z, Y, X)``; a 2D image is treated as a volume with one z slice. Slices
    along ``"xy"``, ``"xz"`` and ``"yz"`` are those of ``empanada_nb.geometry``.

Picks
    ``{"axis", "z", "y", "x", "size"}``: a square patch of ``size`` pixels on the slice through the
    pick along ``axis``; ``(z, y, x)`` is the patch centre in the volume's own coordinates. The patch
    covers ``[c - size // 2, c - size // 2 + size)`` along each in-plane dimension, and picks are
    clamped so that the patch lies inside the volume (smaller when the volume is smaller).

Regions
    ``{"name", "axis", "slice", "shape", "points", "all_slices"}``: a rectangle (two corners) or
    polygon in the slice's continuous pixel coordinates ``[row, col]`` (pixel ``(r, c)`` covers
    ``[r, r + 1) x [c, c + 1)``); a pixel is inside when its centre is. With ``all_slices`` the shape
    extends through every slice along ``axis``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import MARKER, PathLike, atomic_path, atomic_paths, is_ours
from .data.ignore import cast_labels
from .geometry import AXIS_DIMS, check_axis, plane_index, plane_to_volume, shape3, volume_to_plane


def _dims(axis: str) -> tuple[int, tuple[int, int]]:
    return AXIS_DIMS[check_axis(axis)]


def patch_start(center: int, size: int, n: int) -> tuple[int, int]:
    """``(start, stop)`` of a patch of ``size`` around ``center`` inside ``[0, n)``."""
    start = int(center) - int(size) // 2
    start = min(max(0, start), max(0, n - int(size)))
    return start, min(n, start + int(size))


def make_pick(axis: str, index: int, row: float, col: float, size: int, shape: Sequence[int]) -> dict[str, Any]:
    """A pick dict for a patch centred at ``(row, col)`` of slice ``index`` along ``axis``.

    The centre is clamped so that the patch lies inside a volume of ``shape`` (2D or 3D).
    """
    fixed, (rd, cd) = _dims(axis)
    s3 = shape3(shape)
    size = int(size)
    if size < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    if not 0 <= int(index) < s3[fixed]:
        raise IndexError(f"slice {index} out of range 0..{s3[fixed] - 1} along {axis}")
    rc = []
    for dim, v in ((rd, row), (cd, col)):
        n = s3[dim]
        v = min(max(int(np.floor(v)), 0), n - 1)
        s0, _ = patch_start(v, size, n)
        rc.append(s0 + size // 2 if n >= size else n // 2)
    z, y, x = plane_to_volume(axis, int(index), rc[0], rc[1])
    return {"axis": axis, "z": z, "y": y, "x": x, "size": size}


def pick_plane(pick: dict[str, Any]) -> tuple[str, int, int, int]:
    """``(axis, slice index, row, col)`` of a pick's centre."""
    index, row, col = volume_to_plane(pick["axis"], int(pick["z"]), int(pick["y"]), int(pick["x"]))
    return pick["axis"], index, row, col


def pick_box(pick: dict[str, Any], shape: Sequence[int]) -> tuple[str, int, int, int, int, int]:
    """``(axis, index, r0, r1, c0, c1)``: the pick's patch on its slice, clipped to ``shape``."""
    _, (rd, cd) = _dims(pick["axis"])
    s3 = shape3(shape)
    axis, index, row, col = pick_plane(pick)
    r0, r1 = patch_start(row, pick["size"], s3[rd])
    c0, c1 = patch_start(col, pick["size"], s3[cd])
    return axis, index, r0, r1, c0, c1


def _read(volume, idx: tuple, ndim: int) -> np.ndarray:
    if ndim == 2:
        if idx[0] != 0:
            raise IndexError("2D images have a single slice (z = 0)")
        idx = idx[1:]
    out = volume[idx]
    if hasattr(out, "compute"):
        out = out.compute()
    return np.asarray(out)


def crop_pick(volume, pick: dict[str, Any], shape: Sequence[int] | None = None) -> np.ndarray:
    """The 2D patch of ``volume`` (2D or ``(Z, Y, X)``, any array-like) under ``pick``."""
    shape = tuple(volume.shape) if shape is None else tuple(shape)
    axis, index, r0, r1, c0, c1 = pick_box(pick, shape)
    ndim = len(shape) if not hasattr(volume, "ndim") else int(volume.ndim)
    return np.ascontiguousarray(_read(volume, plane_index(axis, index, slice(r0, r1), slice(c0, c1)), ndim))


def patch_filename(name: str, pick: dict[str, Any], suffix: str = ".tif") -> str:
    """``<name>_<axis>_z0012_y0340_x0560_s256.tif``: the file name encodes the patch's location."""
    return (
        f"{name}_{pick['axis']}_z{int(pick['z']):04d}_y{int(pick['y']):04d}_x{int(pick['x']):04d}"
        f"_s{int(pick['size'])}{suffix}"
    )


# ---------------------------------------------------------------------------------------- regions


def region_plane_mask(region: dict[str, Any], plane_shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of one region on its slice (``plane_shape`` = (rows, cols))."""
    from skimage.draw import polygon as draw_polygon

    pts = np.asarray(region["points"], dtype=np.float64).reshape(-1, 2)
    kind = region.get("shape", "polygon")
    if kind == "rectangle":
        if len(pts) < 2:
            raise ValueError("a rectangle needs two corner points")
        (r0, c0), (r1, c1) = pts.min(0), pts.max(0)
        pts = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
    elif kind != "polygon":
        raise ValueError(f"region shape must be 'rectangle' or 'polygon', got {kind!r}")
    if len(pts) < 3:
        raise ValueError("a polygon needs at least three points")
    mask = np.zeros(plane_shape, dtype=bool)
    rr, cc = draw_polygon(pts[:, 0] - 0.5, pts[:, 1] - 0.5, shape=plane_shape)
    mask[rr, cc] = True
    return mask


def region_mask(region: dict[str, Any], shape: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of ``shape`` (2D or 3D) that is True inside ``region`` (OR-ed into ``out``)."""
    shape = tuple(int(s) for s in shape)
    s3 = shape3(shape)
    axis = region.get("axis", "xy")
    fixed, (rd, cd) = _dims(axis)
    m = region_plane_mask(region, (s3[rd], s3[cd]))
    if out is None:
        out = np.zeros(shape, dtype=bool)
    vol = out if out.ndim == 3 else out[None]
    if region.get("all_slices", False):
        # broadcast the plane mask along the fixed dimension
        expand = [slice(None)] * 3
        expand[fixed] = None
        vol |= m[tuple(expand)]
    else:
        idx = int(region.get("slice", 0))
        if not 0 <= idx < s3[fixed]:
            raise IndexError(f"region {region.get('name')!r}: slice {idx} out of range along {axis}")
        vol[plane_index(axis, idx)] |= m
    return out


def regions_mask(regions: Iterable[dict[str, Any]], shape: Sequence[int]) -> np.ndarray:
    """Union of ``regions`` as a boolean array of ``shape`` (the volume's, or one slice's for 2D)."""
    out = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    for r in regions:
        region_mask(r, shape, out=out)
    return out


def slice_roi(regions: Iterable[dict[str, Any]], shape: Sequence[int], axis: str, index: int) -> np.ndarray:
    """2D boolean mask of the regions on slice ``index`` along ``axis`` (for ``roi=`` in inference)."""
    fixed, (rd, cd) = _dims(axis)
    s3 = shape3(shape)
    out = np.zeros((s3[rd], s3[cd]), dtype=bool)
    for r in regions:
        if r.get("axis", "xy") == axis and (r.get("all_slices", False) or int(r.get("slice", 0)) == int(index)):
            out |= region_plane_mask(r, out.shape)
        elif r.get("axis", "xy") != axis:
            # a region drawn on another axis crosses this slice along a band
            out |= region_mask(r, s3)[plane_index(axis, index)]
    return out


# ------------------------------------------------------------------------------------- random picks


def _box_iou(a, b) -> float:
    r0, r1 = max(a[0], b[0]), min(a[1], b[1])
    c0, c1 = max(a[2], b[2]), min(a[3], b[3])
    inter = max(0, r1 - r0) * max(0, c1 - c0)
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / union if union else 0.0


def random_patches(
    regions: Sequence[dict[str, Any]],
    shape: Sequence[int],
    n: int,
    size: int,
    rng: None | int | np.random.Generator = None,
    existing: Iterable[dict[str, Any]] = (),
    max_overlap: float = 0.25,
    tries: int = 200,
) -> list[dict[str, Any]]:
    """Up to ``n`` random picks whose centres lie inside ``regions``, spread evenly across them.

    Each region gets ``n // len(regions)`` picks (the first ``n % len(regions)`` one more), on the
    region's own axis and slice (any slice for ``all_slices`` regions). Where the region is larger
    than the patch, centres are drawn so that the patch stays inside the region's bounding box.
    A candidate whose box overlaps an existing or already drawn pick on the same slice by more than
    ``max_overlap`` (IoU) is rejected; small regions may therefore get fewer picks than asked.
    """
    n = int(n)
    if n <= 0 or not regions:
        return []
    rng = np.random.default_rng(rng)
    s3 = shape3(shape)
    taken: dict[tuple[str, int], list[tuple[int, int, int, int]]] = {}
    for p in existing:
        axis, index, r0, r1, c0, c1 = pick_box(p, s3)
        taken.setdefault((axis, index), []).append((r0, r1, c0, c1))
    counts = [n // len(regions) + (1 if i < n % len(regions) else 0) for i in range(len(regions))]
    out: list[dict[str, Any]] = []
    for region, count in zip(regions, counts):
        if count == 0:
            continue
        axis = region.get("axis", "xy")
        fixed, (rd, cd) = _dims(axis)
        pshape = (s3[rd], s3[cd])
        mask = region_plane_mask(region, pshape)
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            continue
        # prefer centres whose patch stays inside the region's bounding box
        half = int(size) // 2
        keep = np.ones(rows.shape, bool)
        if rows.max() - rows.min() + 1 >= size:
            keep &= (rows - half >= rows.min()) & (rows - half + size <= rows.max() + 1)
        if cols.max() - cols.min() + 1 >= size:
            keep &= (cols - half >= cols.min()) & (cols - half + size <= cols.max() + 1)
        if keep.any():
            rows, cols = rows[keep], cols[keep]
        got = 0
        for _ in range(int(tries) * count):
            if got >= count:
                break
            k = int(rng.integers(rows.size))
            index = int(rng.integers(s3[fixed])) if region.get("all_slices", False) else int(region.get("slice", 0))
            pick = make_pick(axis, index, int(rows[k]), int(cols[k]), size, s3)
            _, _, r0, r1, c0, c1 = pick_box(pick, s3)
            boxes = taken.setdefault((axis, index), [])
            if any(_box_iou((r0, r1, c0, c1), b) > max_overlap for b in boxes):
                continue
            boxes.append((r0, r1, c0, c1))
            out.append(pick)
            got += 1
    return out


# ---------------------------------------------------------------------------------- saving patches


def _segment(image: np.ndarray, model) -> np.ndarray:
    from .inference import segment_image  # imported late: patches need torch only when a model labels them

    return np.asarray(segment_image(model, image))


_PICK_FILE = re.compile(r"^(?P<name>.+)_(?P<axis>xy|xz|yz)_z(?P<z>\d+)_y(?P<y>\d+)_x(?P<x>\d+)_s(?P<size>\d+)\.tif$")


def _current_picks(sidecar: Path, name: str, img_dir: Path, msk_dir: Path) -> list[dict[str, Any]]:
    """The picks file's entries for the complete pairs on disk, plus entries for pairs it missed."""
    previous = []
    if sidecar.exists():
        try:
            previous = list(json.loads(sidecar.read_text()).get("picks", []))
        except (ValueError, AttributeError, TypeError):
            previous = []
    complete = set()
    if img_dir.is_dir() and msk_dir.is_dir():
        complete = {f.name for f in img_dir.iterdir() if (msk_dir / f.name).exists()}
    out = [p for p in previous if isinstance(p, dict) and p.get("file") in complete]
    listed = {p["file"] for p in out}
    for fn in sorted(complete - listed):
        m = _PICK_FILE.match(fn)
        if m and m["name"] == name:  # the file name encodes the pick (patch_filename)
            pick = {"axis": m["axis"], "z": int(m["z"]), "y": int(m["y"]), "x": int(m["x"]), "size": int(m["size"])}
            out.append(dict(pick, file=fn, mask_source="unknown"))
    return out


def _write_picks(sidecar: Path, name: str, shape: tuple[int, ...], picks: list[dict[str, Any]]) -> None:
    meta = {"name": name, "image_shape": list(shape), "picks": picks}
    with atomic_path(sidecar, suffix=".json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def save_patches(
    image,
    picks: Sequence[dict[str, Any]],
    dataset_dir: PathLike,
    name: str,
    labels=None,
    model=None,
    on_clash: str = "skip",
    mask_dtype: np.dtype | None = None,
) -> dict[str, Any]:
    """Write the picked patches as a training dataset: ``DATASET/<name>/{images,masks}/*.tif``.

    ``image`` and ``labels`` are 2D or ``(Z, Y, X)`` array-likes of the same shape (labels may be
    None). Image and mask of a patch have the same file name (``patch_filename``); the raw image
    values are written unchanged. A patch whose mask is empty gets ``model``'s prediction as its
    starting mask when a model is given. Every file is written atomically; an existing dataset is
    appended to, and a name clash is skipped (``on_clash="skip"``, reported in the result and with
    a warning) or refused before anything is written (``on_clash="error"``). The picks of all saved
    patches are kept in ``DATASET/<name>/<name>_picks.json``.

    An image and its mask are written as one unit (``empanada_nb._atomic.atomic_paths``), and
    the picks file is rewritten after each pair, listing exactly the complete pairs on disk: a
    pair half left by a killed save (ours, without its partner) is written again, and picks of
    pairs whose files are gone are dropped.

    Returns ``{"dir", "written": [file names], "skipped": [file names]}``.
    """
    if on_clash not in ("skip", "error"):
        raise ValueError(f"on_clash must be 'skip' or 'error', got {on_clash!r}")
    name = str(name)
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise ValueError(f"invalid dataset name {name!r}")
    shape = tuple(int(s) for s in image.shape)
    if labels is not None and tuple(labels.shape) != shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} differs from the image shape {shape}")
    root = Path(dataset_dir) / name
    img_dir, msk_dir = root / "images", root / "masks"
    names = [patch_filename(name, p) for p in picks]

    def taken(fn: str) -> bool:
        """A complete pair, or a file of the user's: never written over. Half a pair of ours is redone."""
        a, b = img_dir / fn, msk_dir / fn
        if a.exists() and b.exists():
            return True
        return any(f.exists() and not is_ours(f) for f in (a, b))

    seen: dict[str, int] = {}
    clashes = []
    for fn in names:
        if fn in seen or taken(fn):
            clashes.append(fn)
        seen[fn] = 1
    if clashes and on_clash == "error":
        raise FileExistsError(
            f"{len(clashes)} patch(es) already exist in {root} (e.g. {clashes[0]}); "
            "nothing was written. Remove those picks or use on_clash='skip'."
        )
    import tifffile

    sidecar = root / f"{name}_picks.json"
    saved_picks = _current_picks(sidecar, name, img_dir, msk_dir)
    written, skipped = [], []
    done = set()
    for pick, fn in zip(picks, names):
        if fn in done or taken(fn):
            skipped.append(fn)
            continue
        img = crop_pick(image, pick, shape)
        if labels is not None:
            mask = crop_pick(labels, pick, shape)
        else:
            mask = np.zeros(img.shape, dtype=np.uint32)
        source = "labels"
        if not mask.any():
            if model is not None:
                mask = _segment(img, model)
                source = "model"
            else:
                source = "empty"
        # unlabelled pixels (sparse labels) stay unlabelled in the written dtype (cast_labels)
        if mask_dtype is not None:
            mask = cast_labels(mask, mask_dtype)
        elif mask.dtype == bool or mask.dtype.kind not in "ui":
            mask = cast_labels(mask, np.uint32)
        # mask first: a kill -9 between the two renames leaves a mask without image, which the
        # next save redoes (taken() is False for half a pair of ours)
        with atomic_paths([msk_dir / fn, img_dir / fn], suffix=".tif") as (tmp_m, tmp_i):
            tifffile.imwrite(tmp_m, mask, compression="zlib", software=MARKER)
            tifffile.imwrite(tmp_i, img, compression="zlib", software=MARKER)
        done.add(fn)
        written.append(fn)
        saved_picks = [p for p in saved_picks if p.get("file") != fn] + [dict(pick, file=fn, mask_source=source)]
        _write_picks(sidecar, name, shape, saved_picks)
    if not written and saved_picks:
        try:
            stale = json.loads(sidecar.read_text()).get("picks") != saved_picks
        except (OSError, ValueError, AttributeError):
            stale = True
        if stale:  # a killed save left the picks file behind the files: bring it in line
            _write_picks(sidecar, name, shape, saved_picks)
    if skipped:
        warnings.warn(
            f"save_patches: skipped {len(skipped)} patch(es) that already exist in {root}: "
            + ", ".join(skipped[:5])
            + (" ..." if len(skipped) > 5 else ""),
            stacklevel=2,
        )
    return {"dir": str(root), "written": written, "skipped": skipped}


# ------------------------------------------------------------------------------------ points files

POINTS_COLUMNS = ("axis", "index", "row", "col", "size")


def save_points(picks: Sequence[dict[str, Any]], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write pick centres to a CSV points file: ``axis,index,row,col,size``, one pick a line.

    ``index`` is the slice along ``axis`` and ``(row, col)`` the centre on it (as the Viewer's pick
    tool places them); ``load_points`` reads the file back. Written atomically; an existing file
    is refused unless ``overwrite=True``.

    Parameters
    ----------
    picks : list of dict
        Picks ``{"axis", "z", "y", "x", "size"}``.
    path : str or os.PathLike
        The ``.csv`` file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import tempfile
    >>> p = save_points([make_pick("xz", 3, 5, 6, 4, (8, 8, 8))], Path(tempfile.mkdtemp()) / "pts.csv")
    >>> p.read_text().splitlines()
    ['axis,index,row,col,size', 'xz,3,5,6,4']
    """
    import csv

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(POINTS_COLUMNS)
        for p in picks:
            axis, index, row, col = pick_plane(p)
            w.writerow([axis, index, row, col, int(p["size"])])
    return path


def load_points(
    path: PathLike, shape: Sequence[int], size: int = 256, scale: float | Sequence[float] = 1.0
) -> list[dict[str, Any]]:
    """Read a points file as picks (centres clamped so each patch lies inside a volume of ``shape``).

    Two layouts are read:

    - ``save_points``'s ``axis,index,row,col[,size]``;
    - napari's points CSV (``index,axis-0,axis-1[,axis-2]``, as napari's *Save Selected Layer*
      writes a points layer): ``(z, y, x)`` for a volume, ``(y, x)`` for a 2D image, picked on xy.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    shape : sequence of int
        The image's shape (2D or ``(Z, Y, X)``) at the level the picks are for.
    size : int
        Patch size where the file has none.
    scale : float or sequence of float
        Coordinates are divided by it (per ``(z, y, x)`` dimension, or one number for all), e.g. 2 to
        pick on pyramid level 1 from points placed on the full-resolution image.

    Returns
    -------
    list of dict
        Picks ``{"axis", "z", "y", "x", "size"}``.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "napari.csv"
    >>> _ = f.write_text("index,axis-0,axis-1,axis-2\\n0,2.0,40.0,10.0\\n")
    >>> load_points(f, (4, 64, 64), size=16, scale=(1, 2, 2))
    [{'axis': 'xy', 'z': 2, 'y': 20, 'x': 8, 'size': 16}]
    """
    import csv

    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty points file; expected a header axis,index,row,col or index,axis-0,axis-1")
    head = [h.strip() for h in rows[0]]
    s3 = shape3(shape)
    sc = np.broadcast_to(np.asarray(scale, dtype=float), (3,))
    picks = []
    for line, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            continue
        rec = dict(zip(head, (c.strip() for c in r)))
        try:
            if {"axis", "index", "row", "col"} <= set(head):
                axis = check_axis(rec["axis"])
                fixed, (rd, cd) = _dims(axis)
                index = float(rec["index"]) / sc[fixed]
                row, col = float(rec["row"]) / sc[rd], float(rec["col"]) / sc[cd]
                psize = int(float(rec["size"])) if rec.get("size") else size
            elif "axis-0" in head and "axis-1" in head:
                coords = [float(rec[k]) for k in ("axis-0", "axis-1", "axis-2") if k in head]
                z, y, x = ([0.0] + coords) if len(coords) == 2 else coords
                axis, index, row, col, psize = "xy", z / sc[0], y / sc[1], x / sc[2], size
            else:
                want = "axis,index,row,col[,size] or index,axis-0,axis-1[,axis-2]"
                raise ValueError(f"{path}: unknown columns {head}; expected {want}")
            index = min(max(int(round(index)), 0), s3[_dims(axis)[0]] - 1)
            picks.append(make_pick(axis, index, row, col, psize, s3))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}, line {line}: cannot read {r} ({e})") from None
    return picks


# --------------------------------------------------------------------------------------- flipbooks


def flipbook_range(pick: dict[str, Any], shape: Sequence[int], depth: int = 5) -> tuple[int, int]:
    """``(start, stop)`` of ``depth`` consecutive slices along the pick's axis, centred on its slice.

    Clamped to the volume as empanada-napari's ``_pick_flipbooks`` clamps its plane (a pick on the
    first slice gets slices 0..depth-1); a volume with fewer slices gives all of them.

    Parameters
    ----------
    pick : dict
        A pick ``{"axis", "z", "y", "x", "size"}``.
    shape : sequence of int
        The volume's shape (2D or ``(Z, Y, X)``).
    depth : int
        Slices in the flipbook (empanada-napari uses 5).

    Returns
    -------
    tuple of int
        ``(start, stop)`` along the dimension the pick's axis holds fixed.

    Examples
    --------
    >>> flipbook_range(make_pick("xy", 0, 8, 8, 16, (20, 16, 16)), (20, 16, 16))
    (0, 5)
    >>> flipbook_range(make_pick("xy", 10, 8, 8, 16, (20, 16, 16)), (20, 16, 16), depth=3)
    (9, 12)
    """
    depth = int(depth)
    if depth < 1:
        raise ValueError(f"flipbook depth must be >= 1, got {depth}")
    fixed, _ = _dims(pick["axis"])
    n = shape3(shape)[fixed]
    _, index, _, _ = pick_plane(pick)
    start = min(max(0, index - depth // 2), max(0, n - depth))
    return start, min(n, start + depth)


def crop_flipbook(volume, pick: dict[str, Any], depth: int = 5, shape: Sequence[int] | None = None) -> np.ndarray:
    """The flipbook of a pick: its patch on ``depth`` consecutive slices (``flipbook_range``).

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` volume (numpy, zarr, dask, ``VolumeSource``...).
    pick : dict
        A pick ``{"axis", "z", "y", "x", "size"}``.
    depth : int
        Slices in the flipbook.
    shape : sequence of int, optional
        The volume's shape (``volume.shape`` by default).

    Returns
    -------
    numpy.ndarray
        ``(depth, h, w)``, each slice oriented as the pick's axis shows it.

    Examples
    --------
    >>> vol = np.arange(6 * 4 * 4).reshape(6, 4, 4)
    >>> fb = crop_flipbook(vol, make_pick("xy", 3, 2, 2, 2, vol.shape), depth=3)
    >>> fb.shape, fb[:, 0, 0].tolist()
    ((3, 2, 2), [37, 53, 69])
    """
    shape = tuple(volume.shape) if shape is None else tuple(shape)
    a, b = flipbook_range(pick, shape, depth)
    return np.stack([crop_pick(volume, {**pick, **_at_slice(pick, i)}, shape) for i in range(a, b)])


def _at_slice(pick: dict[str, Any], index: int) -> dict[str, int]:
    _, _, row, col = pick_plane(pick)
    z, y, x = plane_to_volume(pick["axis"], int(index), row, col)
    return {"z": z, "y": y, "x": x}


def save_flipbooks(
    image,
    picks: Sequence[dict[str, Any]],
    dataset_dir: PathLike,
    name: str,
    depth: int = 5,
    on_clash: str = "skip",
) -> dict[str, Any]:
    """Write each pick's flipbook to ``DATASET/<name>/flipbooks/<patch file name>``.

    A flipbook (``depth`` consecutive slices of a patch, as empanada-napari's *Pick training patches*
    makes for 3D data) is the annotation context of a patch: ``save_patches`` writes the training pair
    (the pick's own slice, the flipbook's middle) under the same file name in ``images``/``masks``, as
    empanada-napari's *Store training dataset* keeps the middle slice of each flipbook. Each file is a
    ``(depth, h, w)`` TIFF written atomically.

    Parameters
    ----------
    image : array-like
        ``(Z, Y, X)`` volume.
    picks : list of dict
        Picks ``{"axis", "z", "y", "x", "size"}``.
    dataset_dir : str or os.PathLike
        The dataset folder.
    name : str
        Subfolder and file-name prefix (as ``save_patches``).
    depth : int
        Slices per flipbook.
    on_clash : str
        Existing files are skipped (``"skip"``) or refused before anything is written (``"error"``).

    Returns
    -------
    dict
        ``{"dir", "written": [file names], "skipped": [file names]}``.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> vol = np.zeros((9, 32, 32), np.uint8)
    >>> res = save_flipbooks(vol, [make_pick("xy", 4, 16, 16, 16, vol.shape)], tempfile.mkdtemp(), "fb")
    >>> tifffile.imread(Path(res["dir"]) / "flipbooks" / res["written"][0]).shape
    (5, 16, 16)
    """
    import tifffile

    if on_clash not in ("skip", "error"):
        raise ValueError(f"on_clash must be 'skip' or 'error', got {on_clash!r}")
    if len(image.shape) != 3:
        raise ValueError(f"flipbooks need a 3D (Z, Y, X) volume; got shape {tuple(image.shape)}")
    root = Path(dataset_dir) / str(name)
    folder = root / "flipbooks"
    names = [patch_filename(str(name), p) for p in picks]
    clashes = [fn for fn in names if (folder / fn).exists()]
    if clashes and on_clash == "error":
        raise FileExistsError(f"{len(clashes)} flipbook(s) already exist in {folder} (e.g. {clashes[0]})")
    written, skipped = [], []
    for pick, fn in zip(picks, names):
        if (folder / fn).exists() or fn in written:
            skipped.append(fn)
            continue
        stack = crop_flipbook(image, pick, depth)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / fn, suffix=".tif") as tmp:
            tifffile.imwrite(tmp, stack, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"})
        written.append(fn)
    return {"dir": str(root), "written": written, "skipped": skipped}


# ------------------------------------------------------------------------------ multiscale images


def pyramid_levels(data) -> list:
    """The levels of a multiscale image, full resolution first.

    Parameters
    ----------
    data : list or zarr.Group or str or os.PathLike
        A list/tuple of array-likes, a zarr group (OME-Zarr ``multiscales`` metadata, else its arrays
        ``"0"``, ``"1"``, ...), or the path of such a zarr folder.

    Returns
    -------
    list
        The levels' array-likes.

    Examples
    --------
    >>> [a.shape for a in pyramid_levels([np.zeros((8, 8)), np.zeros((4, 4))])]
    [(8, 8), (4, 4)]
    """
    if isinstance(data, (str, os.PathLike)):
        import zarr

        data = zarr.open(str(data), mode="r")
    if isinstance(data, (list, tuple)):
        levels = list(data)
    elif hasattr(data, "arrays") and hasattr(data, "attrs"):  # a zarr group
        meta = dict(data.attrs).get("multiscales") or dict(data.attrs).get("ome", {}).get("multiscales")
        if meta:
            paths = [d["path"] for d in meta[0]["datasets"]]
        else:
            names = {n for n, _ in data.arrays()}
            paths = [str(i) for i in range(len(names)) if str(i) in names]
        if not paths:
            raise ValueError("zarr group has no multiscales metadata and no arrays '0', '1', ...; pass the array")
        levels = [data[p] for p in paths]
    else:
        levels = [data]
    for lv in levels:
        if not hasattr(lv, "shape"):
            raise TypeError(f"pyramid levels must be array-likes, got {type(lv).__name__}")
    return levels


def pyramid_level(data, level: int = 0):
    """One level of a multiscale image (see ``pyramid_levels``) and its scale factor to level 0.

    Parameters
    ----------
    data : list or zarr.Group or str or os.PathLike
        The multiscale image.
    level : int
        The level (0: full resolution).

    Returns
    -------
    tuple
        ``(array, scale)``: ``scale`` per dimension is level 0's shape over this level's (about 2 per
        level in a 2x pyramid), to map coordinates between levels.

    Examples
    --------
    >>> arr, scale = pyramid_level([np.zeros((4, 8, 8)), np.zeros((4, 4, 4))], 1)
    >>> arr.shape, scale
    ((4, 4, 4), (1.0, 2.0, 2.0))
    """
    levels = pyramid_levels(data)
    if not -len(levels) <= int(level) < len(levels):
        raise IndexError(
            f"pyramid level {level} out of range: the image has {len(levels)} level(s), 0..{len(levels) - 1}"
        )
    arr = levels[int(level)]
    base = levels[0]
    if len(arr.shape) != len(base.shape):
        raise ValueError(f"pyramid levels differ in dimensions: {tuple(base.shape)} and {tuple(arr.shape)}")
    return arr, tuple(float(b) / float(a) for b, a in zip(base.shape, arr.shape))
