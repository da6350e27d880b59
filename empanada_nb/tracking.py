"""Slice-to-slice linking of 2D panoptic labels into 3D instances, and 3D size/extent filters.

Linking follows empanada's ``RLEMatcher`` (empanada-dl 0.1.7, ``inference/matcher.py`` and
``inference/patterns.py``): consecutive slices are matched by Hungarian assignment on mask IoU
(pairs below ``iou_thr`` are not matches); an unmatched piece whose intersection-over-*its own*
area with a previous instance reaches ``ioa_thr`` joins that instance (a false split); any other
piece starts a new instance. A backward pass (last slice to first, no new ids) then pushes late
merges back to the slices before them, so a Y-shaped object ends with one id. Here labels are
dense 2D arrays and overlaps come from one ``np.unique`` over pixel pairs instead of RLEs, so
the working set is two slices and a few per-object arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def thing_mask(labels: np.ndarray, thing_list: Sequence[int], label_divisor: int) -> np.ndarray:
    """Pixels that belong to an instance of a thing class (stuff has instance id 0)."""
    return (labels % label_divisor > 0) & np.isin(labels // label_divisor, np.asarray(thing_list))


def overlaps(a: np.ndarray, b: np.ndarray, mask: np.ndarray):
    """Ids, areas and pairwise intersections of the labels of ``a`` and ``b`` inside ``mask``-ed pixels.

    Returns ``(ua, area_a, ub, area_b, ia, ib, inter)``: sorted unique ids with areas for each
    side (counted over their own thing pixels), and sparse pairs (indices into ua/ub) with counts.
    ``mask`` is a tuple (mask_a, mask_b).
    """
    ma, mb = mask
    ua, area_a = np.unique(a[ma], return_counts=True)
    ub, area_b = np.unique(b[mb], return_counts=True)
    both = ma & mb
    pa, pb = a[both], b[both]
    if pa.size == 0:
        e = np.zeros(0, np.int64)
        return ua, area_a, ub, area_b, e, e, e
    key = np.searchsorted(ua, pa).astype(np.int64) * len(ub) + np.searchsorted(ub, pb)
    key, inter = np.unique(key, return_counts=True)
    return ua, area_a, ub, area_b, key // len(ub), key % len(ub), inter


class SliceLinker:
    """Gives consecutive 2D panoptic slices consistent 3D instance ids (one direction)."""

    def __init__(
        self,
        thing_list: Sequence[int],
        label_divisor: int,
        iou_thr: float = 0.25,
        ioa_thr: float = 0.25,
        assign_new: bool = True,
    ):
        if not 0 <= iou_thr <= 1 or not 0 <= ioa_thr <= 1:
            raise ValueError(f"iou_thr and ioa_thr must be in [0, 1], got {iou_thr}, {ioa_thr}")
        self.thing_list = list(thing_list)
        self.div = int(label_divisor)
        self.iou_thr, self.ioa_thr = float(iou_thr), float(ioa_thr)
        self.assign_new = assign_new
        self.target: np.ndarray | None = None
        self.next_label: dict[int, int] = {}

    def _new_id(self, cls: int) -> int:
        n = self.next_label.get(cls, cls * self.div + 1)
        if n % self.div == 0:
            raise ValueError(
                f"more than {self.div - 1} instances of class {cls} in the volume; pass a larger label_divisor"
            )
        self.next_label[cls] = n + 1
        return n

    def _bump(self, ids: np.ndarray) -> None:
        """Make sure new ids come after every id already in use."""
        for cls in np.unique(ids // self.div):
            top = int(ids[ids // self.div == cls].max())
            self.next_label[int(cls)] = max(self.next_label.get(int(cls), 0), top + 1)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Relabel ``labels`` (2D) against the previous slice; returns a new array (stuff untouched)."""
        labels = np.asarray(labels)
        cur_mask = thing_mask(labels, self.thing_list, self.div)
        if self.target is None:
            self.target = labels
            if cur_mask.any():
                self._bump(np.unique(labels[cur_mask]))
            return labels
        prev_mask = thing_mask(self.target, self.thing_list, self.div)
        ut, area_t, uc, area_c, it, ic, inter = overlaps(self.target, labels, (prev_mask, cur_mask))
        if uc.size == 0:
            self.target = labels
            return labels
        same = (ut[it] // self.div) == (uc[ic] // self.div)  # never link across classes
        it, ic, inter = it[same], ic[same], inter[same]
        new_ids = np.zeros(len(uc), dtype=np.int64)
        done = np.zeros(len(uc), dtype=bool)
        if inter.size:
            # Hungarian matching on IoU over the objects that overlap at all
            rows, r_inv = np.unique(it, return_inverse=True)
            cols, c_inv = np.unique(ic, return_inverse=True)
            iou = np.zeros((len(rows), len(cols)))
            iou[r_inv, c_inv] = inter / (area_t[it] + area_c[ic] - inter)
            r, c = linear_sum_assignment(iou, maximize=True)
            ok = iou[r, c] >= self.iou_thr
            new_ids[cols[c[ok]]] = ut[rows[r[ok]]]
            done[cols[c[ok]]] = True
            # unmatched pieces mostly inside a previous instance join it (IoA over the piece's area)
            ioa = np.zeros_like(iou)
            ioa[r_inv, c_inv] = inter / area_c[ic]
            best = ioa.argmax(axis=0)
            join = (ioa[best, np.arange(len(cols))] >= self.ioa_thr) & ~done[cols]
            new_ids[cols[join]] = ut[rows[best[join]]]
            done[cols[join]] = True
        for j in np.flatnonzero(~done):  # a loop over new objects, not pixels
            new_ids[j] = self._new_id(int(uc[j] // self.div)) if self.assign_new else uc[j]
        if not self.assign_new and (~done).any():
            self._bump(uc[~done])
        out = labels.astype(np.int64, copy=True)
        out[cur_mask] = new_ids[np.searchsorted(uc, labels[cur_mask])]
        self.target = out
        return out


def link_stack(
    labels: np.ndarray,
    thing_list: Sequence[int],
    label_divisor: int,
    iou_thr: float = 0.25,
    ioa_thr: float = 0.25,
    backward: bool = True,
) -> np.ndarray:
    """Link an in-memory (Z, H, W) stack of 2D panoptic slices along axis 0 (forward, then backward)."""
    fwd = SliceLinker(thing_list, label_divisor, iou_thr, ioa_thr)
    out = np.stack([fwd(s) for s in labels]) if len(labels) else np.asarray(labels, np.int64)
    if backward:
        bwd = SliceLinker(thing_list, label_divisor, iou_thr, ioa_thr, assign_new=False)
        for i in range(len(out) - 1, -1, -1):
            out[i] = bwd(out[i])
    return out


class LabelStats:
    """Voxel counts and bounding boxes of 3D instances, accumulated slice by slice.

    Per-slice tables are reduced every few dozen slices, so memory follows the number of
    instances, not the number of slices.
    """

    def __init__(self, thing_list: Sequence[int], label_divisor: int):
        self.thing_list, self.div = list(thing_list), int(label_divisor)
        self._parts: list[tuple[np.ndarray, ...]] = []
        self.ids = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.lo = np.zeros((0, 3), np.int64)
        self.hi = np.zeros((0, 3), np.int64)

    def update(self, labels: np.ndarray, index: int) -> None:
        """Add the 2D slice ``labels`` at position ``index`` along the linking axis."""
        m = thing_mask(labels, self.thing_list, self.div)
        ys, xs = np.nonzero(m)
        if ys.size == 0:
            return
        ids, inv, count = np.unique(labels[ys, xs], return_inverse=True, return_counts=True)
        n = len(ids)
        lo = np.full((n, 3), np.iinfo(np.int64).max)
        hi = np.full((n, 3), -1, np.int64)
        lo[:, 0] = hi[:, 0] = index
        np.minimum.at(lo[:, 1], inv, ys)
        np.minimum.at(lo[:, 2], inv, xs)
        np.maximum.at(hi[:, 1], inv, ys)
        np.maximum.at(hi[:, 2], inv, xs)
        self._parts.append((ids.astype(np.int64), count, lo, hi))
        if len(self._parts) >= 32:
            self._reduce()

    def _reduce(self) -> None:
        if not self._parts:
            return
        ids = np.concatenate([self.ids] + [p[0] for p in self._parts])
        count = np.concatenate([self.count] + [p[1] for p in self._parts])
        lo = np.concatenate([self.lo] + [p[2] for p in self._parts])
        hi = np.concatenate([self.hi] + [p[3] for p in self._parts])
        self._parts = []
        order = np.argsort(ids, kind="stable")
        ids, count, lo, hi = ids[order], count[order], lo[order], hi[order]
        self.ids, starts = np.unique(ids, return_index=True)
        self.count = np.add.reduceat(count, starts)
        self.lo = np.minimum.reduceat(lo, starts, axis=0)
        self.hi = np.maximum.reduceat(hi, starts, axis=0)

    def relabel_map(
        self, min_size: int = 0, min_extent: int = 0, label_divisor: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(old ids, new ids): instances smaller than ``min_size`` voxels or thinner than
        ``min_extent`` along any axis (empanada's ``remove_pancakes``) map to 0, the rest to
        consecutive ids per class (``class * label_divisor + 1, 2, ...``; default: this table's divisor)."""
        out_div = int(label_divisor or self.div)
        self._reduce()
        keep = (
            (self.count >= min_size) & ((self.hi - self.lo + 1).min(axis=1) >= min_extent)
            if self.ids.size
            else np.zeros(0, bool)
        )
        new = np.zeros(len(self.ids), np.int64)
        cls = self.ids // self.div
        for c in np.unique(cls[keep]):  # a loop over classes
            sel = keep & (cls == c)
            n = int(sel.sum())
            if n >= out_div:
                raise ValueError(f"{n} instances of class {c} do not fit label_divisor {out_div}; pass a larger one")
            new[sel] = c * out_div + 1 + np.arange(n)
        return self.ids.copy(), new


def apply_map(
    labels: np.ndarray, old: np.ndarray, new: np.ndarray, thing_list: Sequence[int], label_divisor: int
) -> np.ndarray:
    """Map thing ids in ``labels`` through (old -> new); ids not in ``old`` become 0; stuff is kept."""
    out = np.array(labels, copy=True)
    m = thing_mask(out, thing_list, label_divisor)
    if not m.any():
        return out
    v = out[m]
    if old.size == 0:
        out[m] = 0
        return out
    idx = np.clip(np.searchsorted(old, v), 0, len(old) - 1)
    out[m] = np.where(old[idx] == v, new[idx], 0)
    return out


def filter_stack(
    labels: np.ndarray, thing_list: Sequence[int], label_divisor: int, min_size: int = 0, min_extent: int = 0
) -> np.ndarray:
    """In-memory convenience: drop small/thin 3D instances of a (Z, H, W) stack and renumber."""
    stats = LabelStats(thing_list, label_divisor)
    for i, s in enumerate(labels):
        stats.update(s, i)
    old, new = stats.relabel_map(min_size, min_extent)
    return np.stack([apply_map(s, old, new, thing_list, label_divisor) for s in labels]) if len(labels) else labels
