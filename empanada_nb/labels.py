"""Proofreading tools on numpy label arrays (2D or 3D) and label export.

Editing functions (merge, delete, split, morph) locate the labels they edit in one pass over the
array and then work only inside those labels' bounding boxes (``scipy.ndimage.find_objects``), the
way empanada-napari's merge/split/delete widgets do, without one full-array pass per label. They
return a new array, or edit ``labels`` itself and return it when ``inplace=True`` (cheaper for large
volumes). They never change the dtype: an id that does not fit raises ``ValueError``.

Panoptic ids are ``class_id * label_divisor + instance_id``; with ``label_divisor`` ids equal to
``class_id * label_divisor`` are stuff (semantic-only) regions, not objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._atomic import MARKER, atomic_dir, atomic_path, claim
from .data.ignore import ignore_value, max_label
from .geometry import n_slices, plane_index

__all__ = [
    "merge_labels",
    "delete_labels",
    "split_label",
    "morph_label",
    "filter_labels",
    "count_labels",
    "label_table",
    "export_label_table",
    "next_label",
    "first_slice",
    "relabel_sequential",
    "label_boxes",
    "export_tiff",
]

MORPH_OPS = ("dilate", "erode", "open", "close", "fill_holes")
# Elements per slab when scanning for boxes (bounds int64 temporaries to ~128 MB).
SLAB_ELEMENTS = 1 << 24


def _check_labels(labels: np.ndarray, ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array, got {type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.ndim not in ndims:
        raise ValueError(f"labels must be {' or '.join(f'{d}D' for d in ndims)}, got shape {labels.shape}")
    return labels


def _check_fits(value: int, dtype: np.dtype) -> None:
    if value > np.iinfo(dtype).max:
        raise ValueError(f"label {value} does not fit dtype {dtype}; cast labels to a wider integer type first")


def _ids(ids: int | Iterable[int]) -> np.ndarray:
    arr = np.unique(np.atleast_1d(np.asarray(ids if not isinstance(ids, (set, frozenset)) else list(ids))))
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"label ids must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _present(labels: np.ndarray) -> np.ndarray:
    """Sorted nonzero ids present in ``labels`` (bincount when ids are small, else np.unique); the
    unlabelled value of sparse labels (the dtype's ignore value) is no id."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top < max(4 * flat.size, 1 << 20):
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
    else:
        u = np.unique(flat)
        ids = u[u > 0].astype(np.int64)
    if labels.dtype.kind == "u" and ids.size and ids[-1] == ignore_value(labels.dtype):
        ids = ids[:-1]
    return ids


def label_boxes(labels: np.ndarray, ids: int | Iterable[int]) -> dict[int, tuple[slice, ...]]:
    """Bounding boxes (tuples of slices) of the requested ids that are present, in one pass.

    The array is scanned in slabs along axis 0 so that temporaries stay bounded for large volumes.

    Parameters
    ----------
    labels : numpy.ndarray
        1D to 4D integer label array.
    ids : int or iterable of int
        The ids to locate (0 and absent ids are left out of the result).

    Returns
    -------
    dict of int to tuple of slice
        ``{id: box}`` with ``labels[box]`` the smallest block holding all of that id.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb.labels import label_boxes
    >>> labels = np.zeros((4, 6), np.int32)
    >>> labels[1:3, 2:5] = 3
    >>> label_boxes(labels, [3, 8])
    {3: (slice(1, 3, None), slice(2, 5, None))}
    """
    _check_labels(labels, (1, 2, 3, 4))
    want = _ids(ids)
    want = want[want > 0]
    boxes: dict[int, tuple[slice, ...]] = {}
    if want.size == 0 or labels.size == 0:
        return boxes
    step = max(1, SLAB_ELEMENTS // max(labels[0].size, 1))
    for z0 in range(0, labels.shape[0], step):
        slab = labels[z0 : z0 + step]
        if want.size == 1:
            compact = (slab == want[0]).view(np.uint8)
        else:
            # map the requested ids to 1..n so find_objects stays small whatever the id values
            pos = np.minimum(np.searchsorted(want, slab), want.size - 1)
            compact = np.where(want[pos] == slab, pos + 1, 0).astype(np.int32)
        for i, b in zip(want.tolist(), ndimage.find_objects(compact, max_label=want.size)):
            if b is None:
                continue
            b = (slice(b[0].start + z0, b[0].stop + z0), *b[1:])
            old = boxes.get(i)
            boxes[i] = (
                b if old is None else tuple(slice(min(o.start, n.start), max(o.stop, n.stop)) for o, n in zip(old, b))
            )
    return boxes


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def _out(labels: np.ndarray, inplace: bool) -> np.ndarray:
    return labels if inplace else labels.copy()


def merge_labels(
    labels: np.ndarray, ids: Iterable[int], into: int | None = None, *, inplace: bool = False
) -> np.ndarray:
    """Give all ``ids`` the id ``into`` (default: the smallest of ``ids``, as empanada-napari).

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    ids : iterable of int
        The label ids to merge (0 is ignored; ids not present are skipped).
    into : int, optional
        The id the merged label gets; default ``min(ids)``. Must fit ``labels.dtype``.
    inplace : bool
        Edit ``labels`` itself (cheaper for large volumes) instead of a copy.

    Returns
    -------
    numpy.ndarray
        The edited labels (``labels`` itself when ``inplace=True``), same dtype.

    Raises
    ------
    ValueError
        When ``ids`` holds no nonzero id, or ``into`` is not positive or does not fit the dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.array([[1, 1, 0, 2], [3, 0, 0, 2]], np.int32)
    >>> enb.merge_labels(labels, [2, 3])
    array([[1, 1, 0, 2],
           [2, 0, 0, 2]], dtype=int32)
    >>> enb.merge_labels(labels, [1, 3], into=7)
    array([[7, 7, 0, 2],
           [7, 0, 0, 2]], dtype=int32)
    """
    _check_labels(labels)
    ids_ = _ids(ids)
    ids_ = ids_[ids_ > 0]
    if ids_.size == 0:
        raise ValueError("merge_labels needs at least one nonzero label id")
    target = int(ids_.min() if into is None else into)
    if target <= 0:
        raise ValueError(f"into must be a positive label id, got {into}")
    _check_fits(target, labels.dtype)
    out = _out(labels, inplace)
    for i, box in label_boxes(labels, ids_).items():
        view = out[box]
        view[view == i] = target
    return out


def delete_labels(labels: np.ndarray, ids: int | Iterable[int], *, inplace: bool = False) -> np.ndarray:
    """Set the given ids to background (0).

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    ids : int or iterable of int
        The ids to delete; ids not present are skipped.
    inplace : bool
        Edit ``labels`` itself instead of a copy.

    Returns
    -------
    numpy.ndarray
        The edited labels, same dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.array([[1, 1, 0, 2], [3, 0, 0, 2]], np.int32)
    >>> enb.delete_labels(labels, [1, 3])
    array([[0, 0, 0, 2],
           [0, 0, 0, 2]], dtype=int32)
    """
    _check_labels(labels)
    out = _out(labels, inplace)
    for i, box in label_boxes(labels, ids).items():
        view = out[box]
        view[view == i] = 0
    return out


def next_label(labels: np.ndarray, class_id: int | None = None, label_divisor: int | None = None) -> int:
    """The next unused id: ``max + 1``, or with ``label_divisor`` the next instance id of ``class_id``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label array (1D to 4D).
    class_id : int, optional
        The class of the new object (panoptic ids ``class_id * label_divisor + instance``).
    label_divisor : int, optional
        Give it together with ``class_id``.

    Returns
    -------
    int
        An id not yet used in ``labels``.

    Raises
    ------
    ValueError
        When only one of ``class_id`` and ``label_divisor`` is given, or the class has no free id.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> enb.next_label(np.array([[0, 3], [5, 0]]))
    6
    >>> enb.next_label(np.array([[1001, 1002], [2001, 0]]), class_id=1, label_divisor=1000)
    1003
    """
    _check_labels(labels, (1, 2, 3, 4))
    if (class_id is None) != (label_divisor is None):
        raise ValueError("give class_id and label_divisor together (or neither)")
    if label_divisor is None:
        return max_label(labels) + 1  # the unlabelled value (sparse labels) is no id
    lo, hi = class_id * label_divisor, (class_id + 1) * label_divisor
    in_cls = labels[(labels >= lo) & (labels < hi)]
    new = int(in_cls.max(initial=lo)) + 1
    if new >= hi:
        raise ValueError(f"class {class_id} has no free id below {hi}; increase label_divisor")
    return new


def _ball(radius: int, ndim: int) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid**2).sum(0) <= radius * radius


def split_label(
    labels: np.ndarray,
    label_id: int,
    min_distance: int = 10,
    points: np.ndarray | Sequence[Sequence[int]] | None = None,
    new_label: int | None = None,
    *,
    label_divisor: int | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Split one label by watershed inside its bounding box (empanada-napari's split tool).

    Markers are the distance-transform peaks at least ``min_distance`` apart (``peak_local_max``)
    flooded on the negative distance, or, when ``points`` are given, those points flooded on a flat
    landscape (geodesic nearest seed), as in empanada-napari. The largest piece keeps ``label_id``;
    the others get ``new_label``, ``new_label + 1``, ... Fewer than two markers: nothing to split,
    labels are returned unchanged.

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    label_id : int
        The label to split.
    min_distance : int
        Minimum distance in pixels between automatic markers.
    points : array_like, optional
        ``(P, labels.ndim)`` array coordinates of seeds; points outside the label are ignored.
    new_label : int, optional
        First id of the new pieces; default ``next_label`` (within the label's class when
        ``label_divisor`` is given).
    label_divisor : int, optional
        Keep new ids in ``label_id``'s class.
    inplace : bool
        Edit ``labels`` itself instead of a copy.

    Returns
    -------
    numpy.ndarray
        The edited labels, same dtype.

    Raises
    ------
    ValueError
        When ``label_id`` is not in ``labels``, or the new ids do not fit the dtype or the class.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.zeros((8, 16), np.int32)
    >>> labels[2:6, 1:15] = 1
    >>> out = enb.split_label(labels, 1, points=[(3, 2), (3, 13)])
    >>> np.unique(out).tolist()
    [0, 1, 2]
    >>> int(out[3, 2]), int(out[3, 13])
    (1, 2)
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    _check_labels(labels)
    boxes = label_boxes(labels, label_id)
    if label_id not in boxes:
        raise ValueError(f"label {label_id} is not in labels")
    box = boxes[label_id]
    mask = labels[box] == label_id
    offset = np.array([s.start for s in box])
    if points is not None:
        pts = np.asarray(points, dtype=np.int64).reshape(-1, labels.ndim) - offset
        inside = np.all((pts >= 0) & (pts < mask.shape), axis=1)
        pts = pts[inside]
        pts = pts[mask[tuple(pts.T)]] if pts.size else pts
        energy = np.zeros(mask.shape, np.float32)
    else:
        # pad so the label's box edges count as background for the distance transform
        dist = ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]
        pts = peak_local_max(
            dist, min_distance=max(int(min_distance), 1), exclude_border=False, labels=mask.astype(np.uint8)
        )
        energy = -dist
    markers = np.zeros(mask.shape, np.int32)
    if len(pts):
        markers[tuple(np.asarray(pts).T)] = np.arange(1, len(pts) + 1)
    if len(pts) < 2:
        return _out(labels, inplace)
    ws = watershed(energy, markers, mask=mask)
    sizes = np.bincount(ws.ravel(), minlength=len(pts) + 1)
    sizes[0] = 0
    order = np.argsort(-sizes, kind="stable")
    pieces = order[sizes[order] > 0]
    if pieces.size < 2:
        return _out(labels, inplace)
    if new_label is None:
        cls = None if label_divisor is None else int(label_id) // label_divisor
        new_label = next_label(labels, cls, label_divisor)
    new_ids = new_label + np.arange(pieces.size - 1)
    _check_fits(int(new_ids[-1]), labels.dtype)
    if label_divisor is not None and int(new_ids[-1]) // label_divisor != int(label_id) // label_divisor:
        raise ValueError(
            f"new ids up to {int(new_ids[-1])} leave class {int(label_id) // label_divisor}; increase label_divisor"
        )
    lut = np.zeros(len(pts) + 1, dtype=np.int64)
    lut[pieces[0]] = label_id
    lut[pieces[1:]] = new_ids
    out = _out(labels, inplace)
    view = out[box]
    hit = mask & (ws > 0)  # pixels no marker reaches (other fragments) keep label_id
    view[hit] = lut[ws[hit]].astype(labels.dtype)
    return out


def morph_label(
    labels: np.ndarray,
    label_id: int,
    op: str,
    radius: int = 1,
    *,
    max_hole_size: int | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Apply a morphological ``op`` (dilate, erode, open, close, fill_holes) to one label.

    Uses a ball of ``radius`` (disk in 2D) inside the label's box grown by the radius. Pixels are only
    ever added where the background is (other labels are never overwritten); removed pixels become 0.
    The array border is treated as if the label continued beyond it, so objects touching the border
    are not eroded from it. ``fill_holes`` fills every enclosed hole, or with ``max_hole_size`` only
    holes of at most that many pixels/voxels (empanada-napari's morph widget's hole size).

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    label_id : int
        The label to change.
    op : {"dilate", "erode", "open", "close", "fill_holes"}
        The operation.
    radius : int
        Radius of the ball (ignored by ``fill_holes``).
    max_hole_size : int, optional
        ``fill_holes`` only: fill holes of at most this many pixels/voxels (None: every hole).
    inplace : bool
        Edit ``labels`` itself instead of a copy.

    Returns
    -------
    numpy.ndarray
        The edited labels, same dtype.

    Raises
    ------
    ValueError
        When ``op`` is unknown, ``radius < 1``, or ``label_id`` is not in ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.zeros((5, 5), np.uint8)
    >>> labels[2, 2] = 4
    >>> enb.morph_label(labels, 4, "dilate", radius=1)
    array([[0, 0, 0, 0, 0],
           [0, 0, 4, 0, 0],
           [0, 4, 4, 4, 0],
           [0, 0, 4, 0, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    >>> ring = np.pad(np.zeros((3, 3), np.uint8), 1, constant_values=1)
    >>> small = enb.morph_label(ring, 1, "fill_holes", max_hole_size=8)
    >>> int(small.sum()), int(enb.morph_label(ring, 1, "fill_holes").sum())
    (16, 25)
    """
    _check_labels(labels)
    if op not in MORPH_OPS:
        raise ValueError(f"op must be one of {', '.join(MORPH_OPS)}; got {op!r}")
    if radius < 1 and op != "fill_holes":
        raise ValueError(f"radius must be >= 1, got {radius}")
    boxes = label_boxes(labels, label_id)
    if label_id not in boxes:
        raise ValueError(f"label {label_id} is not in labels")
    r = int(radius) if op != "fill_holes" else 0
    box = _grow(boxes[label_id], 2 * r + 1, labels.shape)
    src = labels[box]
    mask = src == label_id
    if op == "fill_holes":
        new = ndimage.binary_fill_holes(mask)
        if max_hole_size is not None:
            # keep the holes larger than max_hole_size open
            holes, n = ndimage.label(new & ~mask)
            big = np.flatnonzero(np.bincount(holes.ravel(), minlength=n + 1)[1:] > int(max_hole_size)) + 1
            new &= ~np.isin(holes, big)
    else:
        fp = _ball(r, labels.ndim)
        pad = np.pad(mask, r + 1, mode="edge")
        fn = {
            "dilate": ndimage.binary_dilation,
            "erode": ndimage.binary_erosion,
            "open": ndimage.binary_opening,
            "close": ndimage.binary_closing,
        }[op]
        new = fn(pad, structure=fp)[(slice(r + 1, -(r + 1)),) * labels.ndim]
    out = _out(labels, inplace)
    view = out[box]
    view[mask & ~new] = 0
    view[new & (src == 0)] = label_id
    return out


def filter_labels(
    labels: np.ndarray, min_size: int = 0, remove_border: bool = False, *, inplace: bool = False
) -> np.ndarray:
    """Remove labels smaller than ``min_size`` pixels/voxels and, optionally, labels touching the border.

    One bincount over the whole array (empanada-napari's filter widget loops ``np.unique`` per label).

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    min_size : int
        Labels with fewer pixels (voxels) than this are removed.
    remove_border : bool
        Also remove labels that touch any face of the array.
    inplace : bool
        Edit ``labels`` itself instead of a copy.

    Returns
    -------
    numpy.ndarray
        The filtered labels, same dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.array([[1, 0, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]], np.int32)
    >>> enb.filter_labels(labels, min_size=2)
    array([[0, 0, 0, 0],
           [0, 0, 2, 2],
           [0, 0, 2, 2],
           [0, 0, 0, 0]], dtype=int32)
    """
    _check_labels(labels)
    flat = labels.ravel()
    top = int(flat.max(initial=0))
    if top < max(4 * flat.size, 1 << 20):
        idx = flat.astype(np.intp, copy=False)
        n = top + 1
        ids = None
    else:
        ids, inv = np.unique(flat, return_inverse=True)
        idx, n = inv.ravel(), ids.size
    sizes = np.bincount(idx, minlength=n)
    drop = sizes < min_size
    if remove_border:
        idx_arr = idx.reshape(labels.shape)
        for ax in range(labels.ndim):
            drop[np.take(idx_arr, 0, axis=ax).ravel()] = True
            drop[np.take(idx_arr, -1, axis=ax).ravel()] = True
    value = np.arange(n, dtype=labels.dtype) if ids is None else ids.astype(labels.dtype)
    zero = value == 0
    drop &= ~zero
    out = _out(labels, inplace)
    if drop.any():
        out[drop[idx].reshape(labels.shape)] = 0
    return out


def count_labels(labels: np.ndarray, label_divisor: int | None = None) -> dict[int, int]:
    """Number of objects per class: ``{class_id: count}`` (see ``label_table`` for slices and ids).

    Without ``label_divisor`` ids carry no class: every nonzero id is one object, all reported under
    class 1 (``{1: number of ids}``), whatever their values. With it, the class of an id is
    ``id // label_divisor`` and stuff ids (``class_id * label_divisor``) are not objects and are not
    counted.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label array (1D to 4D).
    label_divisor : int, optional
        Read ids as panoptic ``class_id * label_divisor + instance_id``.

    Returns
    -------
    dict of int to int
        Object count per class id (classes with no object are absent).

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> enb.count_labels(np.array([0, 4, 4, 9]))
    {1: 2}
    >>> enb.count_labels(np.array([1001, 1002, 2000, 2001]), label_divisor=1000)
    {1: 2, 2: 1}
    """
    _check_labels(labels, (1, 2, 3, 4))
    ids = _present(labels)
    if label_divisor is None:
        return {1: int(ids.size)} if ids.size else {}
    ids = ids[ids % label_divisor != 0]
    cls, counts = np.unique(ids // label_divisor, return_counts=True)
    return {int(c): int(n) for c, n in zip(cls, counts)}


def _class_rows(ids: np.ndarray, label_divisor: int | None, names: dict, where) -> list[dict]:
    if label_divisor is None:
        groups = {1: ids} if ids.size else {}
    else:
        ids = ids[ids % label_divisor != 0]  # stuff regions are not objects
        cls = ids // label_divisor
        groups = {int(c): ids[cls == c] for c in np.unique(cls)}
    return [
        {"class": c, "name": names.get(c, str(c)), "slice": where, "count": int(g.size), "ids": [int(i) for i in g]}
        for c, g in groups.items()
    ]


def label_table(
    labels: np.ndarray,
    label_divisor: int | None = None,
    class_names: dict[int, str] | Sequence[str] | None = None,
    per_slice: bool = False,
    axis: str = "xy",
) -> list[dict]:
    """Objects per class, for the volume or per slice, with their ids (empanada-napari's Count Labels).

    Parameters
    ----------
    labels : numpy.ndarray
        2D or ``(Z, Y, X)`` label array.
    label_divisor : int, optional
        Panoptic ids ``class * label_divisor + instance``; without it every nonzero id is an object of class 1.
    class_names : dict or list of str, optional
        ``{class_id: name}``, or names of classes 1, 2, ... in order.
    per_slice : bool
        One row per class and slice along ``axis`` (slices without objects are left out).
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"`` (3D labels with ``per_slice``).

    Returns
    -------
    list of dict
        Rows ``{"class", "name", "slice" (None for the whole array), "count", "ids"}``.

    Examples
    --------
    >>> lab = np.array([[[0, 1001], [2001, 1002]], [[0, 1001], [0, 1000]]])
    >>> [(r["name"], r["count"], r["ids"]) for r in label_table(lab, 1000, ["mito", "er"])]
    [('mito', 2, [1001, 1002]), ('er', 1, [2001])]
    >>> [(r["slice"], r["count"]) for r in label_table(lab, 1000, per_slice=True)]
    [(0, 2), (0, 1), (1, 1)]
    """
    _check_labels(labels)
    if label_divisor is not None and int(label_divisor) < 1:
        raise ValueError(f"label_divisor must be a positive integer or None, got {label_divisor}")
    if isinstance(class_names, dict):
        names = {int(k): str(v) for k, v in class_names.items()}
    else:
        names = {i + 1: str(n) for i, n in enumerate(class_names or ())}
    if not per_slice:
        return _class_rows(_present(labels), label_divisor, names, None)
    vol = labels if labels.ndim == 3 else labels[None]
    rows: list[dict] = []
    for i in range(n_slices(vol.shape, axis)):
        rows += _class_rows(_present(vol[plane_index(axis, i)]), label_divisor, names, i)
    return rows


def export_label_table(rows: Sequence[dict], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``label_table`` rows as CSV (``.csv``) or an Excel workbook (``.xlsx``, needs openpyxl).

    Columns ``class, name, slice, count, ids`` (ids separated by spaces; slice empty for the whole array).
    The xlsx file has the same table on sheet ``counts`` and one sheet per class listing its ids (as
    empanada-napari's Count Labels export). Written atomically; an existing file is refused unless
    ``overwrite=True``.

    Parameters
    ----------
    rows : list of dict
        Rows of ``label_table``.
    path : str or os.PathLike
        Target file, ``.csv`` or ``.xlsx``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import tempfile
    >>> out = export_label_table(label_table(np.array([[0, 3], [4, 4]])), Path(tempfile.mkdtemp()) / "n.csv")
    >>> out.read_text().splitlines()
    ['class,name,slice,count,ids', '1,1,,2,3 4']
    """
    import csv

    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".csv", ".xlsx"):
        raise ValueError(f"export to a .csv or .xlsx file, got {path.name!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    cols = ("class", "name", "slice", "count", "ids")
    table = [
        [r["class"], r["name"], "" if r["slice"] is None else r["slice"], r["count"], " ".join(map(str, r["ids"]))]
        for r in rows
    ]
    if kind == ".csv":
        with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows(table)
        return path
    try:
        from openpyxl import Workbook
    except ImportError:
        raise ImportError("xlsx export needs openpyxl (pip install openpyxl), or export to .csv") from None
    wb = Workbook()
    ws = wb.active
    ws.title = "counts"
    ws.append(list(cols))
    for row in table:
        ws.append(row)
    by_class: dict[str, list[int]] = {}
    for r in rows:
        by_class.setdefault(str(r["name"]), []).extend(r["ids"])
    for name, ids in by_class.items():
        sheet = wb.create_sheet(title=name[:31] or "class")  # Excel sheet names are at most 31 characters
        sheet.append(["Label ID"])
        for i in sorted(set(ids)):
            sheet.append([i])
    with atomic_path(path, suffix=".xlsx") as tmp:
        wb.save(tmp)
    return path


def first_slice(labels: np.ndarray, label_id: int, axis: int = 0) -> int:
    """Index of the first slice along ``axis`` that contains ``label_id`` (to jump to a label).

    Parameters
    ----------
    labels : numpy.ndarray
        2D to 4D integer label array.
    label_id : int
        The label to look for.
    axis : int
        The slicing axis (negative counts from the end).

    Returns
    -------
    int
        The smallest index ``i`` with ``label_id`` in ``labels.take(i, axis)``.

    Raises
    ------
    ValueError
        When ``label_id`` is not in ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> labels = np.zeros((4, 3, 3), np.int32)
    >>> labels[2:, 1, 1] = 5
    >>> enb.first_slice(labels, 5)
    2
    """
    _check_labels(labels, (2, 3, 4))
    axis = axis % labels.ndim
    other = tuple(a for a in range(labels.ndim) if a != axis)
    hit = (labels == label_id).any(axis=other)
    if not hit.any():
        raise ValueError(f"label {label_id} is not in labels")
    return int(np.argmax(hit))


def relabel_sequential(labels: np.ndarray, label_divisor: int | None = None, *, inplace: bool = False) -> np.ndarray:
    """Renumber ids to ``1..n`` in order of their value.

    With ``label_divisor`` the instances of each class are renumbered to
    ``class * label_divisor + 1..n`` and stuff ids ``class * label_divisor`` are kept.

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D integer label array.
    label_divisor : int, optional
        Renumber within each class of panoptic ids.
    inplace : bool
        Edit ``labels`` itself instead of a copy.

    Returns
    -------
    numpy.ndarray
        The renumbered labels, same dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> enb.relabel_sequential(np.array([[0, 7], [30, 7]]))
    array([[0, 1],
           [2, 1]])
    >>> enb.relabel_sequential(np.array([[1000, 1005], [1009, 2040]]), label_divisor=1000)
    array([[1000, 1001],
           [1002, 2001]])
    """
    _check_labels(labels)
    ids = _present(labels)
    if label_divisor is None:
        new = np.arange(1, ids.size + 1)
    else:
        cls = ids // label_divisor
        inst = ids % label_divisor != 0
        # rank of each instance within its class (ids are sorted, so classes are contiguous)
        cum = np.cumsum(inst)
        starts = np.r_[0, np.flatnonzero(np.diff(cls)) + 1]
        before = np.repeat(np.r_[0, cum][starts], np.diff(np.r_[starts, ids.size]))
        new = np.where(inst, cls * label_divisor + cum - before, ids)
    out = _out(labels, inplace)
    if ids.size and not np.array_equal(new, ids):
        lut_ids = np.r_[0, ids]
        lut_new = np.r_[0, new].astype(labels.dtype)
        out[...] = lut_new[np.searchsorted(lut_ids, labels)]
    return out


def _tiff_dtype(labels: np.ndarray) -> np.dtype:
    top = int(labels.max(initial=0))
    if labels.size and int(labels.min()) < 0:
        raise ValueError("labels have negative ids; labels must be >= 0 to export")
    if top <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    if top <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise ValueError(f"max label {top} does not fit 32 bits; relabel_sequential(labels, label_divisor) first")


def export_tiff(labels: np.ndarray, path: str | os.PathLike, series: bool = False, *, overwrite: bool = False) -> Path:
    """Write labels as one TIFF, or a 3D stack as a folder of 2D TIFFs.

    One TIFF holds a 2D image or a 3D ZYX multi-page stack; with ``series=True`` a 3D stack becomes
    a folder of 2D TIFFs ``<folder name>_0000.tif`` ... (zero-padded to the stack length). Stored as
    int32 when the largest id fits, else uint32; the shape is kept exactly (no added axes). Writes
    are atomic (temporary + rename); an existing target is refused unless ``overwrite=True``.

    Parameters
    ----------
    labels : numpy.ndarray
        2D or 3D label array with ids >= 0.
    path : str or os.PathLike
        The TIFF file, or the folder with ``series=True``.
    series : bool
        Write one file per slice into the folder ``path``.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    ValueError
        When ``series=True`` for non-3D labels, ids are negative, or ids do not fit 32 bits.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tifffile
    >>> import empanada_nb as enb
    >>> labels = np.zeros((3, 8, 8), np.uint16)
    >>> labels[1, 2:4, 2:4] = 9
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = enb.export_tiff(labels, Path(tmp) / "labels.tif")
    ...     tifffile.imread(out).dtype, tifffile.imread(out).shape
    ...     folder = enb.export_tiff(labels, Path(tmp) / "slices", series=True)
    ...     sorted(p.name for p in folder.iterdir())
    (dtype('int32'), (3, 8, 8))
    ['slices_0000.tif', 'slices_0001.tif', 'slices_0002.tif']
    """
    _check_labels(labels)
    path = Path(path)
    claim(path, overwrite)
    if series and labels.ndim != 3:
        raise ValueError(f"series=True writes a 3D stack slice by slice; labels have shape {labels.shape}")
    import tifffile

    arr = labels.astype(_tiff_dtype(labels), copy=False)
    if series:
        width = max(4, len(str(arr.shape[0] - 1)))
        with atomic_dir(path, overwrite) as tmp:
            for i, plane in enumerate(arr):  # one file per slice is the format itself
                tifffile.imwrite(
                    tmp / f"{path.name}_{i:0{width}d}.tif", plane, photometric="minisblack", software=MARKER
                )
        return path
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass a file path or series=True")
    axes = "ZYX" if arr.ndim == 3 else "YX"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", metadata={"axes": axes}, software=MARKER)
    return path
