"""Segmentation metrics: foreground IoU, panoptic quality, F1 / precision / recall / AP at IoU thresholds.

Definitions follow empanada-dl 0.1.7 (``evaluation/instance_metrics.py``, ``panoptic_metrics.py``,
``semantic_metrics.py``), computed on dense 2D or 3D label arrays instead of run-length encodings:

- one-to-one matching by IoU; for thresholds >= 0.5 a match (IoU > threshold) is necessarily unique
  (Kirillov et al. 2019, arXiv:1801.00868), below 0.5 the pairs are chosen by Hungarian assignment
  on IoU like empanada's ``rle_matcher``;
- ``TP`` = matched pairs, ``FP`` = unmatched predictions, ``FN`` = unmatched ground-truth objects;
- precision TP/(TP+FP), recall TP/(TP+FN), F1 TP/(TP+FP/2+FN/2);
- AP = TP/(TP+FP+FN): the single-threshold "average precision" of EM instance segmentation
  benchmarks (Lucchi++/ MitoEM style, empanada's ``ap``), not the COCO area under a PR curve;
- PQ = SQ * RQ with SQ the mean IoU of the TPs at 0.5 and RQ the F1 at 0.5;
- every score is 1.0 when there is nothing to find and nothing found (empanada's convention).

All counting uses one sparse contingency table of (pred id, gt id) pairs, never a loop over labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

__all__ = ["evaluate", "match_instances", "Matches"]


class Matches(NamedTuple):
    """One-to-one matched pairs: ``pred[i]`` matches ``gt[i]`` with ``iou[i]``."""

    pred: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


def _as_labels(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer label array (or bool mask), got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D or 3D, got shape {arr.shape}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{name} has negative labels; labels must be >= 0 (0 = background)")
    return arr


def _check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_labels(pred, "pred"), _as_labels(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}; compare arrays of the same image or volume")
    return p, g


def _compact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, areas, index) with ids the sorted nonzero labels, index[i] = 1 + position of flat[i] in ids
    (0 for background)."""
    top = int(flat.max()) if flat.size else 0
    if top < max(4 * flat.size, 1 << 20):
        flat = flat.astype(np.intp, copy=False)
        counts = np.bincount(flat, minlength=top + 1)
        counts[0] = 0
        ids = np.flatnonzero(counts)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids, counts[ids], lut[flat]
    ids, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if ids.size and ids[0] == 0:
        return ids[1:], counts[1:], inv.astype(np.int64)
    return ids, counts, inv.astype(np.int64) + 1


def _pair_ious(p: np.ndarray, g: np.ndarray):
    """Ids, areas and the overlapping (pred, gt) pairs with their intersection and IoU."""
    fp, fg = p.ravel(), g.ravel()
    p_ids, p_area, pi = _compact(fp)
    g_ids, g_area, gi = _compact(fg)
    both = (pi > 0) & (gi > 0)
    key = pi[both] * (g_ids.size + 1) + gi[both]
    if (p_ids.size + 1) * (g_ids.size + 1) <= 1 << 24:
        inter = np.bincount(key, minlength=(p_ids.size + 1) * (g_ids.size + 1))
        key = np.flatnonzero(inter)
        inter = inter[key]
    else:
        key, inter = np.unique(key, return_counts=True)
    a, b = key // (g_ids.size + 1) - 1, key % (g_ids.size + 1) - 1
    iou = inter / (p_area[a] + g_area[b] - inter)
    return p_ids, p_area, g_ids, g_area, a, b, iou


def _one_to_one(a: np.ndarray, b: np.ndarray, iou: np.ndarray, thr: float):
    """Indices into the candidate pairs forming a one-to-one matching with IoU > thr."""
    cand = np.flatnonzero(iou > thr)
    if thr >= 0.5 or cand.size == 0:
        return cand  # IoU > 0.5 cannot hold for two pairs sharing an object
    ua, ia = np.unique(a[cand], return_inverse=True)
    ub, ib = np.unique(b[cand], return_inverse=True)
    cost = np.zeros((ua.size, ub.size))
    cost[ia, ib] = -iou[cand]
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 0
    sel = np.full((ua.size, ub.size), -1, dtype=np.int64)
    sel[ia, ib] = cand
    return np.sort(sel[r[ok], c[ok]])


def _to_instances(p: np.ndarray, g: np.ndarray, binary: bool, label_divisor: int | None, connectivity: int | None):
    if binary:
        if label_divisor is not None:
            raise ValueError("binary=True takes plain masks; drop label_divisor")
        struct = ndimage.generate_binary_structure(p.ndim, connectivity or p.ndim)
        p = ndimage.label(p > 0, structure=struct)[0]
        g = ndimage.label(g > 0, structure=struct)[0]
    return p, g


def match_instances(
    pred: Any,
    gt: Any,
    iou_threshold: float = 0.5,
    *,
    label_divisor: int | None = None,
) -> Matches:
    """One-to-one matches between predicted and ground-truth ids with IoU > ``iou_threshold``.

    Each nonzero id is an object. With ``label_divisor`` only objects of the same class
    (``id // label_divisor``) can match. Pairs are sorted by predicted id.

    Parameters
    ----------
    pred, gt : array_like
        Predicted and ground-truth integer labels of the same shape (2D or 3D; numpy or torch).
    iou_threshold : float
        A pair matches when its IoU is strictly above this; below 0.5 pairs are chosen by Hungarian
        assignment (empanada's ``rle_matcher``).
    label_divisor : int, optional
        Read ids as panoptic ``class_id * label_divisor + instance_id``.

    Returns
    -------
    Matches
        Named tuple of arrays ``pred``, ``gt`` (matched ids) and ``iou``.

    Raises
    ------
    ValueError
        When the shapes differ or the inputs are not integer labels.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> gt = np.zeros((8, 8), np.int32)
    >>> gt[1:4, 1:4] = 1
    >>> gt[5:8, 5:8] = 2
    >>> pred = np.zeros_like(gt)
    >>> pred[1:4, 1:3] = 7
    >>> m = enb.match_instances(pred, gt)
    >>> m.pred.tolist(), m.gt.tolist(), m.iou.round(3).tolist()
    ([7], [1], [0.667])
    """
    p, g = _check_pair(pred, gt)
    p_ids, _, g_ids, _, a, b, iou = _pair_ious(p, g)
    if label_divisor is not None:
        same = p_ids[a] // label_divisor == g_ids[b] // label_divisor
        a, b, iou = a[same], b[same], iou[same]
    sel = _one_to_one(a, b, iou, iou_threshold)
    order = np.argsort(p_ids[a[sel]], kind="stable")
    sel = sel[order]
    return Matches(p_ids[a[sel]], g_ids[b[sel]], iou[sel])


def _key(t: float) -> str:
    return f"{round(t * 100):d}"


def _ratio(num: float, den: float) -> float:
    return 1.0 if den == 0 else float(num / den)


def _class_scores(n_pred: int, n_gt: int, match_ious: dict, thresholds: Sequence[float]) -> dict:
    """Scores of one class from the IoUs of its one-to-one matches at each threshold."""
    out: dict[str, Any] = {"n_pred": n_pred, "n_gt": n_gt}
    for t in thresholds:
        tp = int(match_ious[t].size)
        fp, fn = n_pred - tp, n_gt - tp
        k = _key(t)
        out[f"tp_{k}"], out[f"fp_{k}"], out[f"fn_{k}"] = tp, fp, fn
        out[f"precision_{k}"] = _ratio(tp, tp + fp)
        out[f"recall_{k}"] = _ratio(tp, tp + fn)
        out[f"f1_{k}"] = _ratio(tp, tp + 0.5 * fp + 0.5 * fn)
        out[f"ap_{k}"] = _ratio(tp, tp + fp + fn)
    tp_ious = match_ious[0.5]
    tp = tp_ious.size
    rq = _ratio(tp, tp + 0.5 * (n_pred - tp) + 0.5 * (n_gt - tp))
    sq = float(tp_ious.mean()) if tp else (1.0 if n_pred == n_gt == 0 else 0.0)
    out.update(pq=sq * rq, sq=sq, rq=rq)
    return out


def evaluate(
    pred: Any,
    gt: Any,
    *,
    label_divisor: int | None = None,
    instances: bool = True,
    binary: bool = False,
    iou_thresholds: Sequence[float] = (0.5, 0.75),
    connectivity: int | None = None,
) -> dict:
    """Compare a predicted and a ground-truth label array (2D or 3D, same shape).

    Each nonzero id is an object; with ``label_divisor`` the class of an id is ``id // label_divisor``
    and objects match only within their class, otherwise every object is class 1. Definitions follow
    empanada-dl 0.1.7 (see the module docstring).

    Parameters
    ----------
    pred, gt : array_like
        Predicted and ground-truth integer labels (or masks with ``binary=True``), numpy or torch.
    label_divisor : int, optional
        Read ids as panoptic ``class_id * label_divisor + instance_id``.
    instances : bool
        Also score instances (PQ, F1, AP); ``False`` reports only the foreground IoU.
    binary : bool
        Treat both inputs as masks; objects are their connected components.
    iou_thresholds : sequence of float
        Thresholds for precision, recall, F1 and AP.
    connectivity : int, optional
        1..ndim as in ``scipy.ndimage.generate_binary_structure`` for ``binary=True``; default full,
        like empanada.

    Returns
    -------
    dict
        Averaged over the classes present in either array: ``iou`` (foreground IoU), ``pq``, ``sq``,
        ``rq``, and for each threshold t (key suffix ``round(100*t)``, e.g. ``f1_50``, ``ap_75``)
        ``precision_*``, ``recall_*``, ``f1_*``, ``ap_*`` (AP = TP/(TP+FP+FN)); ``f1`` is the F1 at
        the first threshold; ``n_pred`` and ``n_gt`` count objects over all classes; ``per_class``
        maps class id to the same scores plus ``tp_*``, ``fp_*``, ``fn_*``.

    Raises
    ------
    ValueError
        When the shapes differ or the inputs are not label arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> gt = np.zeros((8, 8), np.int32)
    >>> gt[1:4, 1:4] = 1
    >>> gt[5:8, 5:8] = 2
    >>> pred = np.zeros_like(gt)
    >>> pred[1:4, 1:3] = 7
    >>> scores = enb.evaluate(pred, gt)
    >>> round(scores["iou"], 3), round(scores["f1_50"], 3), round(scores["pq"], 3), scores["n_pred"], scores["n_gt"]
    (0.333, 0.667, 0.444, 1, 2)
    >>> round(enb.evaluate(pred > 0, gt > 0, binary=True, instances=False)["iou"], 3)
    0.333
    """
    p, g = _check_pair(pred, gt)
    if label_divisor is not None and label_divisor < 1:
        raise ValueError(f"label_divisor must be >= 1, got {label_divisor}")
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not thresholds or any(not 0 <= t < 1 for t in thresholds):
        raise ValueError(f"iou_thresholds must be non-empty values in [0, 1), got {iou_thresholds}")
    p, g = _to_instances(p, g, binary, label_divisor, connectivity)

    div = label_divisor
    for name, arr in (("pred", p), ("gt", g)):
        if div and np.any((arr > 0) & (arr < div)):
            raise ValueError(
                f"{name} has ids below label_divisor={div} (class 0); pass label_divisor only for panoptic ids"
            )
    cls_p = p // div if div else (p > 0).astype(np.uint8)
    cls_g = g // div if div else (g > 0).astype(np.uint8)
    # foreground IoU per class: the class maps' contingency pairs whose two classes agree
    cp_ids, cp_area, cg_ids, cg_area, ca, cb, ciou = _pair_ious(cls_p, cls_g)
    classes = [int(c) for c in np.union1d(cp_ids, cg_ids)]
    same_cls = cp_ids[ca] == cg_ids[cb]
    class_iou = dict(zip(cp_ids[ca][same_cls].tolist(), ciou[same_cls].tolist()))
    per_class: dict[int, dict] = {c: {"iou": float(class_iou.get(c, 0.0))} for c in classes}

    if instances:
        p_ids, _, g_ids, _, a, b, iou = _pair_ious(p, g)
        pc = p_ids // div if div else np.ones_like(p_ids)
        gc = g_ids // div if div else np.ones_like(g_ids)
        same = pc[a] == gc[b]
        a, b, iou = a[same], b[same], iou[same]
        n_pred_c = dict(zip(*np.unique(pc, return_counts=True)))
        n_gt_c = dict(zip(*np.unique(gc, return_counts=True)))
        matched = {}
        for t in sorted(set(thresholds) | {0.5}):
            sel = _one_to_one(a, b, iou, t)
            matched[t] = (pc[a[sel]], iou[sel])
        for c in classes:
            per_class[c].update(
                _class_scores(
                    int(n_pred_c.get(c, 0)),
                    int(n_gt_c.get(c, 0)),
                    {t: m_iou[m_cls == c] for t, (m_cls, m_iou) in matched.items()},
                    thresholds,
                )
            )

    result: dict[str, Any] = {}
    keys = list(per_class[classes[0]]) if classes else ["iou"]
    if not classes and instances:
        keys = ["iou", *_class_scores(0, 0, {t: np.zeros(0) for t in (*thresholds, 0.5)}, thresholds)]
    for k in keys:
        if k.startswith(("tp_", "fp_", "fn_")) or k in ("n_pred", "n_gt"):
            continue
        result[k] = float(np.mean([per_class[c][k] for c in classes])) if classes else 1.0
    if instances:
        result["f1"] = result[f"f1_{_key(thresholds[0])}"]
        result["n_pred"] = sum(per_class[c]["n_pred"] for c in classes)
        result["n_gt"] = sum(per_class[c]["n_gt"] for c in classes)
    result["per_class"] = per_class
    return result
