"""Panoptic-DeepLab training targets (Cheng et al. 2020, arXiv:1911.10194, section 3.2).

From a panoptic mask: the semantic map, a center heatmap (a Gaussian of peak 1 at each thing
instance's center) and (dy, dx) offsets from every thing pixel to its instance's center.

Center choice: the paper and empanada use the centroid, which falls outside curved objects
(a U-shaped mitochondrion) and then points offsets at background. Here the center is the
object's own pixel closest to its centroid: the centroid itself for convex objects, and always
inside the object.

Sparse labels: pixels holding ``IGNORE_LABEL`` (-1, see ``data/ignore.py``) are unlabelled. Their
semantic target is ``IGNORE_LABEL`` (the loss skips it) and three rules keep the other targets honest:

- An object that touches the unlabelled region (8-connected) is *cut*: part of it may lie under the
  unlabelled pixels, so the centre of its visible part is not its centre. A cut object keeps its
  semantic target (its pixels are foreground), but gets no centre and no offset targets: its offsets
  are skipped, and so is the heatmap on and around it (below). A false centre would teach the model
  to put centres on object edges.
- The heatmap is unknown within ``2 * sigma`` of any unlabelled pixel or cut object: an unlabelled
  object's centre lies somewhere under the unlabelled pixels, and its Gaussian reaches out of them.
  Beyond ``2 * sigma`` a Gaussian has fallen below exp(-2) = 0.14 of its peak (and the centre is
  further still, inside its object), so the zero target there is right to within that. ``ctr_valid``
  marks where the heatmap target holds.
- Background pixels next to the unlabelled region keep their semantic target: the user labelled
  them background. Only their heatmap is unknown (the rule above); they have no offsets anyway.

Cost is O(pixels + instances * window), never instances x pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .ignore import IGNORE_LABEL


def split_panoptic(
    mask: np.ndarray, label_divisor: int | None, thing_list: Sequence[int] = (1,), num_classes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Return (semantic class map, thing instance map) from a mask.

    ``label_divisor=None``: every nonzero id is an instance of class 1. Otherwise ids are
    ``class * label_divisor + instance``; stuff classes contribute to semantics only.
    """
    mask = np.asarray(mask)
    if label_divisor is None:
        sem = (mask > 0).astype(np.int64)
        inst = mask.astype(np.int64, copy=False)
        return sem, inst
    sem = (mask // label_divisor).astype(np.int64)
    bad = np.unique(sem[(sem > num_classes) | (sem < 0)])
    if bad.size:
        raise ValueError(
            f"mask has class ids {bad.tolist()} beyond num_classes={num_classes} "
            f"(label_divisor={label_divisor}); check label_divisor or num_classes"
        )
    inst = np.where(np.isin(sem, list(thing_list)), mask, 0).astype(np.int64)
    return sem, inst


def instance_centers(inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids and (y, x) centers of the instances: each instance's pixel nearest its centroid.

    Works on the thing pixels only (a few percent of a patch), with per-id sums by ``bincount``:
    a tenth of the cost of ``ndimage.center_of_mass`` + ``minimum_position`` over the whole patch,
    which the training loop paid 16 times a step. Ties go to the first pixel in raster order, as
    ``ndimage.minimum_position`` does.
    """
    flat = np.asarray(inst).ravel()
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    lab = flat[fg].astype(np.int64, copy=False)
    if int(lab.max()) > 4 * flat.size:  # sparse huge ids: count over compact ones instead
        ids, lab = np.unique(lab, return_inverse=True)
    else:
        ids = None
    counts = np.bincount(lab)
    yy, xx = np.divmod(fg, inst.shape[1])
    cy = np.bincount(lab, weights=yy) / np.maximum(counts, 1)
    cx = np.bincount(lab, weights=xx) / np.maximum(counts, 1)
    d = (yy - cy[lab]) ** 2 + (xx - cx[lab]) ** 2
    order = np.lexsort((d, lab))  # by id, then distance; lexsort is stable, so raster order breaks ties
    first = np.r_[True, lab[order][1:] != lab[order][:-1]]
    best = fg[order[first]]
    if ids is None:
        ids = lab[order[first]]
    return ids.astype(np.int64), np.stack(np.divmod(best, inst.shape[1]), 1).astype(np.int64)


def center_heatmap(shape: tuple[int, int], centers: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """Max over instances of exp(-d^2 / 2 sigma^2), drawn in a 6-sigma window around each center."""
    h, w = shape
    heat = np.zeros(shape, np.float32)
    if len(centers) == 0:
        return heat
    r = int(3 * sigma + 1)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    g = np.exp(-(dy**2 + dx**2) / (2 * sigma**2)).astype(np.float32).ravel()
    ys = (centers[:, 0, None] + dy.ravel()[None]).ravel()
    xs = (centers[:, 1, None] + dx.ravel()[None]).ravel()
    vals = np.tile(g, len(centers))
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    np.maximum.at(heat, (ys[ok], xs[ok]), vals[ok])
    return heat


def center_offsets(inst: np.ndarray, ids: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: center minus pixel coordinate for thing pixels, 0 elsewhere."""
    off = np.zeros((2,) + inst.shape, np.float32)
    if ids.size == 0:
        return off
    lut = np.zeros((int(inst.max()) + 1, 2), np.float32)
    lut[ids] = centers
    fg = inst > 0
    yy, xx = np.nonzero(fg)
    c = lut[inst[fg]]
    off[0][fg] = c[:, 0] - yy
    off[1][fg] = c[:, 1] - xx
    return off


def panoptic_targets(
    mask: np.ndarray,
    *,
    label_divisor: int | None = None,
    thing_list: Sequence[int] = (1,),
    num_classes: int = 1,
    sigma: float = 8.0,
) -> dict[str, np.ndarray]:
    """Panoptic-DeepLab targets of one 2D mask, with unlabelled pixels (``IGNORE_LABEL``) left out.

    Parameters
    ----------
    mask : numpy.ndarray
        2D int labels (instance ids, or ``class * label_divisor + instance``); ``IGNORE_LABEL`` (-1)
        marks unlabelled pixels (``training_mask`` maps a file's ignore value to it).
    label_divisor : int, optional
        None: every nonzero id is an instance of class 1.
    thing_list : sequence of int
        Classes with instances.
    num_classes : int
        Foreground classes.
    sigma : float
        Sigma of the centre Gaussians, in pixels.

    Returns
    -------
    dict
        ``sem`` (H, W) int64 (``IGNORE_LABEL`` where unlabelled), ``ctr_hmp`` (1, H, W) float32,
        ``ctr_valid`` (H, W) bool (where the heatmap target holds), ``offsets`` (2, H, W) float32 and
        ``thing`` (H, W) bool (where the offset target holds: pixels of uncut thing instances).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((32, 32), np.int64)
    >>> m[4:10, 4:10] = 1; m[20:28, 20:26] = 2; m[26:, :] = -1  # object 2 is cut by the unlabelled rows
    >>> t = panoptic_targets(m, sigma=2)
    >>> int(t["sem"][30, 0]), bool(t["thing"][5, 5]), bool(t["thing"][22, 22]), bool(t["ctr_valid"][22, 22])
    (-1, True, False, False)
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask.shape}")
    ignore = mask == IGNORE_LABEL
    sparse = bool(ignore.any())
    sem, inst = split_panoptic(np.where(ignore, 0, mask) if sparse else mask, label_divisor, thing_list, num_classes)
    valid = np.ones(mask.shape, bool)
    if sparse:
        # instances with a pixel next to (or under) the unlabelled region are cut: no centre, no offsets
        near = ndimage.binary_dilation(ignore, structure=np.ones((3, 3), bool))
        cut = np.unique(inst[near])
        cut = cut[cut != 0]
        unknown = ignore.copy()
        if cut.size:
            is_cut = np.isin(inst, cut)
            unknown |= is_cut
            inst = np.where(is_cut, 0, inst)
        valid = ndimage.distance_transform_edt(~unknown) > 2 * sigma
        sem[ignore] = IGNORE_LABEL
    ids, centers = instance_centers(inst)
    return {
        "sem": sem,
        "ctr_hmp": center_heatmap(mask.shape, centers, sigma)[None],
        "ctr_valid": valid,
        "offsets": center_offsets(inst, ids, centers),
        "thing": inst > 0,
    }
