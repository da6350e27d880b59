"""Panoptic postprocessing: semantic logits + center heatmap + offsets -> panoptic ids.

Follows Panoptic-DeepLab (Cheng et al. 2020, arXiv:1911.10194) as adapted by empanada-dl 0.1.7
(``empanada/inference/postprocess.py`` and ``PanopticDeepLabRenderEngine`` in ``engines.py``):
centers are heatmap peaks kept by max-pool NMS, every thing pixel joins the center nearest to where
its offset points, instances take the majority thing class of their pixels, and stuff classes are
kept when their area reaches ``stuff_area``. Unlike empanada, the work here is done only for thing
pixels, without Python loops over instances or classes, so it runs on any torch device.

Panoptic ids are ``class_id * label_divisor + instance_id`` (instance ids from 1, 0 is background).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "panoptic_postprocess",
    "panoptic_postprocess_batch",
    "harden_semantic",
    "find_centers",
    "group_pixels",
    "split_fragments",
    "fill_instance_holes",
]

ArrayLike = Union[torch.Tensor, np.ndarray]

# Coarse grouping works on 1/4 resolution, the stride at which empanada's render engine groups
# pixels when coarse_boundaries=True (the decoder's native output stride).
COARSE_STRIDE = 4
# Pixels x centers distance block computed at once (float32 elements, 1 MB): memory stays bounded
# for any frame size and number of centers, and the block stays cache-resident.
GROUP_BLOCK_ELEMENTS = 1 << 18


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _drop_batch(x: torch.Tensor, name: str, channels: int | None) -> torch.Tensor:
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(
                f"{name} has batch size {x.shape[0]}; pass one image (C, H, W) or use panoptic_postprocess_batch"
            )
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[0] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    return x


def harden_semantic(sem_logits: ArrayLike, seg_thr: float = 0.5) -> torch.Tensor:
    """Turn semantic logits ``(S, H, W)`` into class ids ``(H, W)`` (long, 0 = background).

    S == 1: ``sigmoid >= seg_thr`` gives class 1 (empanada's ``_harden_seg``).
    S > 1: a pixel is foreground when ``1 - p(background) >= seg_thr`` and then takes the argmax
    of the foreground channels. empanada ignores its confidence threshold for multi-class models
    (plain argmax); thresholding the foreground probability keeps one meaning for ``seg_thr`` in
    both cases, and for S == 2 at seg_thr=0.5 it is exactly the argmax.
    """
    x = _as_tensor(sem_logits, "sem_logits")
    if x.ndim == 4:
        x = _drop_batch(x, "sem_logits", None)
    if x.ndim != 3:
        raise ValueError(f"sem_logits must be (S, H, W), got shape {tuple(x.shape)}")
    x = x.float()
    if x.shape[0] == 1:
        return (torch.sigmoid(x[0]) >= seg_thr).long()
    p_fg = 1.0 - torch.softmax(x, dim=0)[0]
    cls = x[1:].argmax(dim=0) + 1
    return torch.where(p_fg >= seg_thr, cls, torch.zeros_like(cls))


def find_centers(
    ctr_hmp: ArrayLike, center_thr: float = 0.1, nms_kernel: int = 3, top_k: int | None = None
) -> torch.Tensor:
    """Peaks of a center heatmap ``(H, W)`` or ``(1, H, W)`` as a ``(K, 2)`` long tensor of (y, x).

    Matches empanada's ``find_instance_center``: values at or below ``center_thr`` are discarded and a
    pixel is a peak when it equals the max-pool of size ``nms_kernel`` around it (plateaus keep every
    tied pixel). ``top_k`` keeps the highest peaks (Panoptic-DeepLab's option). Peaks are returned in
    raster order, which fixes the instance numbering.
    """
    h = _as_tensor(ctr_hmp, "ctr_hmp")
    while h.ndim > 2 and h.shape[0] == 1:
        h = h[0]
    if h.ndim != 2:
        raise ValueError(f"ctr_hmp must be (H, W) or (1, H, W), got shape {tuple(h.shape)}")
    if int(nms_kernel) < 1:
        raise ValueError(f"nms_kernel must be >= 1, got {nms_kernel}")
    k = int(nms_kernel)
    h = h.float()
    lo, hi = -(k // 2), k - k // 2  # window [i + lo, i + hi): even kernels lean up-left, as in empanada
    # a peak must exceed center_thr and 0 (empanada keeps ctr_hmp > 0 after thresholding to -1)
    cand = torch.nonzero(h > max(float(center_thr), 0.0))
    if cand.shape[0] * k * k <= 2 * h.numel():
        # sparse NMS: compare each candidate with its window only; below-threshold neighbours are
        # smaller than any candidate, so comparing raw values equals empanada's thresholded max-pool
        pad = F.pad(h[None, None], (-lo, hi - 1, -lo, hi - 1), value=float("-inf"))[0, 0]
        d = torch.arange(k, device=h.device)
        wy = (cand[:, 0:1] + d).repeat_interleave(k, dim=1)
        wx = (cand[:, 1:2] + d).repeat(1, k)
        win_max = pad[wy, wx].amax(dim=1)
        ctr = cand[h[cand[:, 0], cand[:, 1]] >= win_max]
    else:
        t = torch.where(h > center_thr, h, torch.full_like(h, -1.0))
        pooled = F.max_pool2d(t[None, None], kernel_size=k, stride=1, padding=k // 2)[0, 0]
        if k % 2 == 0:
            # even kernels pad one pixel too many; empanada clips the last row and column
            pooled = pooled[:-1, :-1]
        ctr = torch.nonzero((t == pooled) & (t > 0))
    if top_k is not None and ctr.shape[0] > top_k:
        scores = h[ctr[:, 0], ctr[:, 1]]
        idx = torch.topk(scores, int(top_k)).indices.sort().values
        ctr = ctr[idx]
    return ctr


def group_pixels(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index (0..K-1) of the nearest center for each point, in bounded-memory blocks.

    ``points`` ``(P, 2)`` are the pixel coordinates plus their predicted offsets, ``centers``
    ``(K, 2)``; both float and in the same units. Exact ties go to the lower center index (like
    argmin in empanada's ``group_pixels``); points within float32 rounding of two centers'
    bisector may go either way.
    """
    n_pts, n_ctr = points.shape[0], centers.shape[0]
    out = torch.empty(n_pts, dtype=torch.long, device=points.device)
    if n_pts == 0:
        return out
    # |v - c|^2 = |v|^2 - 2 v.c + |c|^2, and |v|^2 is the same for every center: one matmul per
    # block. Coordinates are centred on the centers' mean to keep float32 rounding far below a pixel.
    mean = centers.mean(dim=0)
    c = centers - mean
    c_sq = (c * c).sum(dim=1)[None]
    c_t = (-2.0 * c).T.contiguous()
    step = max(1, GROUP_BLOCK_ELEMENTS // max(n_ctr, 1))
    for start in range(0, n_pts, step):
        blk = points[start : start + step] - mean
        out[start : start + step] = torch.addmm(c_sq, blk, c_t).argmin(dim=1)
    return out


def _coarse_grid(n: int, stride: int, device: torch.device) -> torch.Tensor:
    # mean full-res coordinate of each stride block; the last block may be partial
    start = torch.arange(0, n, stride, device=device, dtype=torch.float32)
    end = torch.clamp(start + stride - 1, max=n - 1)
    return (start + end) / 2


def _instance_ids(
    thing_idx: torch.Tensor,
    shape: tuple[int, int],
    ctr_hmp: torch.Tensor,
    offsets: torch.Tensor,
    center_thr: float,
    nms_kernel: int,
    top_k: int | None,
    fine: bool,
) -> torch.Tensor | None:
    """Class-agnostic instance id (1..K) of each thing pixel (flat indices ``thing_idx``), or None
    when no center is found. Only thing pixels are touched, never the whole frame."""
    H, W = shape
    py, px = thing_idx // W, thing_idx % W
    off = offsets.reshape(2, -1)
    # where each thing pixel votes for its center
    vy = py.float() + off[0, thing_idx]
    vx = px.float() + off[1, thing_idx]
    if fine:
        ctr = find_centers(ctr_hmp, center_thr, nms_kernel, top_k)
        if ctr.shape[0] == 0:
            return None
        return group_pixels(torch.stack((vy, vx), dim=1), ctr.float()) + 1
    # Coarse boundaries (empanada's default): centers and grouping at 1/4 resolution, then the
    # instance cells are nearest-upsampled and cut by the full-resolution semantic mask. empanada
    # groups the decoder's native 1/4-resolution offsets; from full-resolution outputs each cell
    # instead votes with the mean center location (pixel + offset) of its thing pixels, so cells on
    # an object's rim are not pulled off by the background pixels' offsets.
    s = COARSE_STRIDE
    hmp_c = F.avg_pool2d(ctr_hmp[None], s, s, ceil_mode=True)[0, 0]
    ctr = find_centers(hmp_c, center_thr, nms_kernel, top_k)
    if ctr.shape[0] == 0:
        return None
    Hc, Wc = hmp_c.shape
    gy, gx = _coarse_grid(H, s, thing_idx.device), _coarse_grid(W, s, thing_idx.device)
    ctr_f = torch.stack((gy[ctr[:, 0]], gx[ctr[:, 1]]), dim=1)
    cell = (py // s) * Wc + px // s
    n = torch.bincount(cell, minlength=Hc * Wc)
    sy = torch.bincount(cell, weights=vy, minlength=Hc * Wc)
    sx = torch.bincount(cell, weights=vx, minlength=Hc * Wc)
    need = torch.nonzero(n).squeeze(1)
    cnt = n[need].float()
    pts = torch.stack((sy[need] / cnt, sx[need] / cnt), dim=1)
    lut = torch.zeros(Hc * Wc, dtype=torch.long, device=thing_idx.device)
    lut[need] = group_pixels(pts, ctr_f) + 1
    return lut[cell]


def _merge(
    sem: torch.Tensor,
    thing_idx: torch.Tensor,
    ins: torch.Tensor | None,
    things: Sequence[int],
    n_classes: int,
    label_divisor: int,
    stuff_area: int,
) -> torch.Tensor:
    """Panoptic ids (H, W) from class ids and the thing pixels' instance ids (empanada's
    ``merge_semantic_and_instance``, vectorized with bincount instead of a loop per instance)."""
    dev = sem.device
    flat = sem.reshape(-1)
    pan = torch.zeros_like(flat)
    if ins is not None and ins.numel():
        n_cls = max(things) + 1
        n_ins = int(ins.max())
        # class histogram per instance, over thing pixels only: the vote is among thing classes
        hist = torch.bincount(ins * n_cls + flat[thing_idx], minlength=(n_ins + 1) * n_cls).view(n_ins + 1, n_cls)
        present = hist.sum(dim=1) > 0
        cls = hist.argmax(dim=1)  # ties go to the lower class id, like torch.mode in empanada
        # instances are numbered per class in order of their center, starting at 1
        number = (F.one_hot(cls, n_cls) * present[:, None]).cumsum(dim=0).gather(1, cls[:, None])[:, 0]
        if int(number.max()) >= label_divisor:
            raise ValueError(
                f"{int(number.max())} instances of one class do not fit label_divisor={label_divisor}; "
                "increase label_divisor"
            )
        lut = torch.where(present, cls * label_divisor + number, torch.zeros_like(cls))
        pan[thing_idx] = lut[ins]
    stuff = [c for c in range(1, n_classes + 1) if c not in things]
    if stuff:
        # a stuff class is kept where its total area reaches stuff_area (thing pixels never carry it)
        area = torch.bincount(flat, minlength=n_classes + 1)
        keep = torch.zeros(n_classes + 1, dtype=torch.bool, device=dev)
        keep[stuff] = True
        keep &= area >= stuff_area
        if bool(keep.any()):
            pan = torch.where(keep[flat], flat * label_divisor, pan)
    return pan.view(sem.shape)


def panoptic_postprocess(
    sem_logits: ArrayLike,
    ctr_hmp: ArrayLike,
    offsets: ArrayLike,
    *,
    thing_list: Sequence[int] = (1,),
    label_divisor: int = 1000,
    seg_thr: float = 0.5,
    center_thr: float = 0.1,
    min_distance: int = 3,
    stuff_area: int = 64,
    semantic_only: bool = False,
    fine_boundaries: bool = False,
    fill_holes: bool = False,
    nms_kernel: int | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """Panoptic segmentation ``(H, W)`` (torch.long, on the inputs' device) of one image.

    Inputs are the model outputs at full resolution, each optionally with a leading batch dimension
    of 1. The center NMS window is ``nms_kernel`` pixels, or ``min_distance`` when not given:
    empanada-napari passes its "Centers Min Distance" straight through as the max-pool kernel size.
    With ``fine_boundaries=False`` (empanada's default) centers are found and pixels grouped at 1/4
    resolution, so the window then spans ``4 * kernel`` full-resolution pixels; ``True`` groups at
    full resolution.

    Parameters
    ----------
    sem_logits : torch.Tensor or numpy.ndarray
        ``(S, H, W)`` semantic logits (S = 1: sigmoid; else softmax with channel 0 background).
    ctr_hmp : torch.Tensor or numpy.ndarray
        ``(1, H, W)`` center heatmap.
    offsets : torch.Tensor or numpy.ndarray
        ``(2, H, W)`` (dy, dx) from each pixel to its instance center, in pixels.
    thing_list : sequence of int
        Classes split into instances; the others are stuff.
    label_divisor : int
        Panoptic ids are ``class_id * label_divisor + instance_id``.
    seg_thr : float
        Foreground probability threshold (``harden_semantic``).
    center_thr : float
        Heatmap values at or below this are not centers.
    min_distance : int
        NMS kernel size when ``nms_kernel`` is not given.
    stuff_area : int
        Stuff classes (and all classes when ``semantic_only``) get id ``class * label_divisor`` when
        their total area reaches this (as in empanada).
    semantic_only : bool
        Skip instance grouping.
    fine_boundaries : bool
        Group at full resolution instead of 1/4.
    fill_holes : bool
        Fill background holes enclosed by a single instance (``fill_instance_holes``, on CPU).
    nms_kernel : int, optional
        Center max-pool window in pixels (at the grouping resolution).
    top_k : int, optional
        Keep only the ``top_k`` highest centers.

    Returns
    -------
    torch.Tensor
        ``(H, W)`` long panoptic ids, 0 for background.

    Raises
    ------
    ValueError
        When the inputs' shapes do not agree or have the wrong number of channels.

    Examples
    --------
    Two square objects with ideal model outputs (Gaussian centers, offsets pointing at them):

    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> gt = np.zeros((32, 32), np.int32)
    >>> gt[4:12, 4:12] = 1
    >>> gt[18:28, 16:30] = 2
    >>> yy, xx = np.indices(gt.shape)
    >>> center = np.array([0, 8, 23])
    >>> sem = np.where(gt > 0, 10.0, -10.0)[None]
    >>> hmp = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 8) + np.exp(-((yy - 23) ** 2 + (xx - 23) ** 2) / 8)
    >>> off = np.stack([center[gt] - yy, center[gt] - xx]) * (gt > 0)
    >>> pan = enb.panoptic_postprocess(sem, hmp[None], off)
    >>> pan.shape, pan.unique().tolist()
    (torch.Size([32, 32]), [0, 1001, 1002])
    >>> enb.evaluate(pan.numpy(), gt)["pq"]
    1.0
    """
    sem_logits = _drop_batch(_as_tensor(sem_logits, "sem_logits"), "sem_logits", None)
    ctr_hmp = _drop_batch(_as_tensor(ctr_hmp, "ctr_hmp"), "ctr_hmp", 1)
    offsets = _drop_batch(_as_tensor(offsets, "offsets"), "offsets", 2)
    shape = sem_logits.shape[-2:]
    if ctr_hmp.shape[-2:] != shape or offsets.shape[-2:] != shape:
        raise ValueError(
            f"spatial sizes differ: sem_logits {tuple(shape)}, ctr_hmp {tuple(ctr_hmp.shape[-2:])}, "
            f"offsets {tuple(offsets.shape[-2:])}; pass outputs of the same image at full resolution"
        )
    if label_divisor < 1:
        raise ValueError(f"label_divisor must be >= 1, got {label_divisor}")
    kernel = int(min_distance if nms_kernel is None else nms_kernel)
    if kernel < 1:
        raise ValueError(f"min_distance / nms_kernel must be >= 1, got {kernel}")
    n_cls = max(sem_logits.shape[0] - 1, 1)
    things = [int(c) for c in thing_list]
    bad = [c for c in things if not 1 <= c <= n_cls]
    if bad and not semantic_only:
        raise ValueError(
            f"thing_list {things} has classes outside 1..{n_cls} "
            f"for a model with {sem_logits.shape[0]} semantic channel(s)"
        )
    if semantic_only:
        things = []

    with torch.no_grad():
        sem = harden_semantic(sem_logits, seg_thr)
        ins, thing_idx = None, None
        if things:
            if len(things) == 1:
                thing = sem == things[0]
            else:
                thing = torch.isin(sem, torch.as_tensor(things, device=sem.device))
            thing_idx = torch.nonzero(thing.reshape(-1)).squeeze(1)
            if thing_idx.numel():
                ins = _instance_ids(
                    thing_idx,
                    tuple(sem.shape),
                    ctr_hmp.float(),
                    offsets.float(),
                    center_thr,
                    kernel,
                    top_k,
                    fine_boundaries,
                )
        pan = _merge(sem, thing_idx, ins, things, n_cls, label_divisor, stuff_area)
    dev = pan.device
    if fill_holes and things:
        filled = fill_instance_holes(pan.cpu().numpy(), label_divisor=label_divisor)
        pan = torch.from_numpy(filled).to(dev)
    return pan


def panoptic_postprocess_batch(sem_logits: ArrayLike, ctr_hmp: ArrayLike, offsets: ArrayLike, **kwargs) -> torch.Tensor:
    """``panoptic_postprocess`` for each image of ``(N, ...)`` model outputs.

    Parameters
    ----------
    sem_logits : torch.Tensor or numpy.ndarray
        ``(N, S, H, W)`` semantic logits.
    ctr_hmp : torch.Tensor or numpy.ndarray
        ``(N, 1, H, W)`` center heatmaps.
    offsets : torch.Tensor or numpy.ndarray
        ``(N, 2, H, W)`` offsets.
    **kwargs
        Passed to ``panoptic_postprocess`` (``thing_list``, ``label_divisor``, thresholds, ...).

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` long panoptic ids.

    Raises
    ------
    ValueError
        When the inputs are not 4D with the same batch size.

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18").eval()
    >>> with torch.no_grad():
    ...     out = model(torch.zeros(2, 1, 64, 64))
    >>> enb.panoptic_postprocess_batch(out["sem_logits"], out["ctr_hmp"], out["offsets"]).shape
    torch.Size([2, 64, 64])
    """
    sem_logits = _as_tensor(sem_logits, "sem_logits")
    ctr_hmp = _as_tensor(ctr_hmp, "ctr_hmp")
    offsets = _as_tensor(offsets, "offsets")
    for name, x in (("sem_logits", sem_logits), ("ctr_hmp", ctr_hmp), ("offsets", offsets)):
        if x.ndim != 4:
            raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}")
    if not sem_logits.shape[0] == ctr_hmp.shape[0] == offsets.shape[0]:
        raise ValueError(f"batch sizes differ: {sem_logits.shape[0]}, {ctr_hmp.shape[0]}, {offsets.shape[0]}")
    if sem_logits.shape[0] == 0:
        return torch.zeros((0, *sem_logits.shape[-2:]), dtype=torch.long, device=sem_logits.device)
    return torch.stack([panoptic_postprocess(s, c, o, **kwargs) for s, c, o in zip(sem_logits, ctr_hmp, offsets)])


def _to_numpy(labels: ArrayLike) -> tuple[np.ndarray, torch.device | None]:
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().numpy(), labels.device
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array or torch.Tensor, got {type(labels).__name__}")
    return labels, None


def _back(arr: np.ndarray, device: torch.device | None) -> ArrayLike:
    return arr if device is None else torch.from_numpy(arr).to(device)


def split_fragments(
    labels: ArrayLike, *, label_divisor: int | None = None, connectivity: int | None = None
) -> ArrayLike:
    """Give each disconnected piece of a label its own id (2D or 3D; numpy in, numpy out; torch likewise).

    Like empanada's ``force_connected`` (``inference/rle.py``), which relabels connected components
    per class; here the largest piece keeps the original id so unsplit objects keep theirs, and the
    other pieces get the next free ids. One labelling pass over the whole array.

    Parameters
    ----------
    labels : torch.Tensor or numpy.ndarray
        2D or 3D integer labels.
    label_divisor : int, optional
        New ids stay in their piece's class; stuff ids ``class * label_divisor`` are left whole.
    connectivity : int, optional
        As in ``skimage.measure.label`` (default: full, 8 in 2D / 26 in 3D, as empanada).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Labels of the input's type (and device), same shape.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> enb.split_fragments(np.array([[5, 5, 0, 5], [0, 0, 0, 5]]))
    array([[5, 5, 0, 6],
           [0, 0, 0, 6]])
    """
    from skimage.measure import label as cc_label

    arr, dev = _to_numpy(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got {arr.dtype}")
    if arr.size == 0 or not arr.any():
        return _back(arr.copy(), dev)
    # skimage labels regions of equal value, so touching different ids stay apart
    comp = cc_label(arr, background=0, connectivity=connectivity)
    n = int(comp.max())
    flat_c, flat_l = comp.ravel(), arr.ravel()
    orig = np.zeros(n + 1, dtype=np.int64)
    orig[flat_c] = flat_l
    size = np.bincount(flat_c, minlength=n + 1)
    ids = np.arange(1, n + 1)
    if label_divisor is not None:
        stuff = orig[ids] % label_divisor == 0
    else:
        stuff = np.zeros(n, dtype=bool)
    # the largest component per original id keeps the id (stuff keeps it for every piece)
    order = np.lexsort((-size[ids], orig[ids]))
    first = np.ones(n, dtype=bool)
    first[1:] = orig[ids][order][1:] != orig[ids][order][:-1]
    keep = np.empty(n, dtype=bool)
    keep[order] = first
    keep |= stuff
    lut = orig.copy()
    extra = ids[~keep]
    if extra.size:
        if label_divisor is None:
            lut[extra] = int(arr.max()) + 1 + np.arange(extra.size)
        else:
            cls = orig[extra] // label_divisor
            srt = np.argsort(cls, kind="stable")
            extra, cls = extra[srt], cls[srt]
            starts = np.r_[0, np.flatnonzero(np.diff(cls)) + 1]
            rank = np.arange(extra.size) - np.repeat(starts, np.diff(np.r_[starts, extra.size]))
            # highest id already used by each class
            u = np.unique(flat_l[flat_l > 0])
            ucls = u // label_divisor
            top = np.zeros(int(ucls.max()) + 1, dtype=np.int64)
            np.maximum.at(top, ucls, u)
            new = top[cls] + 1 + rank
            if np.any(new // label_divisor != cls):
                raise ValueError(f"splitting fragments overflows label_divisor={label_divisor}; increase label_divisor")
            lut[extra] = new
    if int(lut.max()) > np.iinfo(arr.dtype).max:
        raise ValueError(
            f"new ids up to {int(lut.max())} do not fit {arr.dtype}; cast labels to a wider integer type first"
        )
    return _back(lut.astype(arr.dtype)[comp], dev)


def fill_instance_holes(labels: np.ndarray, *, label_divisor: int | None = None) -> np.ndarray:
    """Fill background (0) holes that are enclosed by a single label, for all labels at once.

    A hole is a 0-region (face-connected, as ``scipy.ndimage.binary_fill_holes``) that does not touch
    the array border and whose face neighbours all carry one label. With ``label_divisor``, stuff ids
    (``class * label_divisor``) are not filled. Vectorized: one ``ndimage.label`` pass plus a
    neighbour-pair table, instead of ``binary_fill_holes`` per instance. Returns a new array.
    """
    arr = np.asarray(labels)
    out = arr.copy()
    bg = arr == 0
    if not bg.any() or bg.all():
        return out
    comp, n = ndimage.label(bg)
    if n == 0:
        return out
    # components touching the border are not enclosed
    border = np.zeros(n + 1, dtype=bool)
    for ax in range(arr.ndim):
        border[np.take(comp, 0, axis=ax).ravel()] = True
        border[np.take(comp, -1, axis=ax).ravel()] = True
    pairs_c, pairs_l = [], []
    for ax in range(arr.ndim):
        a = [slice(None)] * arr.ndim
        b = [slice(None)] * arr.ndim
        a[ax], b[ax] = slice(None, -1), slice(1, None)
        for s, t in ((tuple(a), tuple(b)), (tuple(b), tuple(a))):
            c, lab = comp[s], arr[t]
            m = (c > 0) & (lab != 0)
            pairs_c.append(c[m])
            pairs_l.append(lab[m])
    pc = np.concatenate(pairs_c)
    pl = np.concatenate(pairs_l)
    if pc.size == 0:
        return out
    pairs = np.unique(np.stack([pc, pl.astype(np.int64)], axis=1), axis=0)
    n_nb = np.bincount(pairs[:, 0], minlength=n + 1)
    fill = np.zeros(n + 1, dtype=arr.dtype)
    single = pairs[n_nb[pairs[:, 0]] == 1]
    fill[single[:, 0]] = single[:, 1]
    fill[border] = 0
    if label_divisor is not None:
        fill[fill % label_divisor == 0] = 0
    fill[0] = 0
    holes = bg & (fill[comp] != 0)
    out[holes] = fill[comp[holes]]
    return out
