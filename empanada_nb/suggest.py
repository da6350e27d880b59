"""Active patch suggestion: where should the user label next?

Uncertainty sampling (Settles 2009, "Active Learning Literature Survey", University of
Wisconsin-Madison CS Tech. Report 1648, section 3.1): label the examples the current model is least
sure about. Here an "example" is a square training patch, scored by the summed per-pixel uncertainty
under it. Per-pixel uncertainty combines

- ``"semantic"``: the margin of the semantic probabilities, ``1 - (p_first - p_second)`` (margin
  sampling, Scheffer et al. 2001; for one sigmoid class it is ``1 - |2p - 1|``): 1 where the model
  says 50/50, 0 where it is certain;
- ``"center"``: ambiguous instance centres: local maxima of the centre heatmap whose height lies near
  the postprocessing threshold ``center_thr`` (an object that may or may not get a centre, or two
  objects that may or may not split), spread over a disk around the peak;
- ``"flips"``: disagreement of test-time flips (the image as is, flipped left-right and up-down):
  twice the standard deviation of the probabilities and of the heatmap across the flips.

For volumes, ``ortho_disagreement`` adds query-by-committee (Seung, Opper, Sompolinsky 1992; vote
entropy of Dagan and Engelson 1995, Settles 2009 section 3.2): the xy, xz and yz stack segmentations
(``empanada_nb.volume.segment_stack``, the views of ``segment_ortho``) are three committee members,
and a voxel is uncertain where they vote for different classes.

``suggest_patches`` ranks patch windows by summed uncertainty and keeps the best ones by greedy
non-maximum suppression: no suggestion overlaps another, an existing pick or a rejected suggestion
(neighbouring slices of a volume count as the same place, see ``slice_gap``). Suggestions are picks
in exactly the ``empanada_nb.patches`` format, so accepting one is adding a pick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.io import normalize_image
from .geometry import AXES, AXIS_DIMS, check_axis, n_slices, plane_index, plane_shape, shape3
from .patches import make_pick, pick_box

PARTS = ("semantic", "center", "flips")
_FLIPS = ((), (-1,), (-2,))  # as is, left-right, up-down: flips the network sees no differently


def _read_plane(volume, axis: str, index: int) -> np.ndarray:
    idx = (slice(None), slice(None)) if len(volume.shape) == 2 else plane_index(axis, int(index))
    out = volume[idx]
    return np.asarray(out.compute() if hasattr(out, "compute") else out)


def _flip_maps(model: nn.Module, image: np.ndarray, flips: bool, irange, predictor_kw: dict) -> torch.Tensor:
    """(F, S + 3, H, W): the network's maps of ``image`` under each flip, flipped back."""
    from .inference import Predictor

    x = normalize_image(np.asarray(image), getattr(model, "norms", None), irange)
    variants = _FLIPS if flips else _FLIPS[:1]
    views = [np.ascontiguousarray(np.flip(x, axis=d) if d else x) for d in variants]
    maps = Predictor(model, **predictor_kw).maps(views)
    return torch.stack([torch.flip(m, dims=d) if d else m for m, d in zip(maps, variants)])


def _margin(sem: torch.Tensor) -> torch.Tensor:
    """``1 - (p_first - p_second)`` of (S, H, W) probabilities (S = 1: a sigmoid)."""
    if sem.shape[0] == 1:
        return 1 - (2 * sem[0] - 1).abs()
    top = torch.topk(sem, 2, dim=0).values
    return 1 - (top[0] - top[1])


def _center_ambiguity(hmp: torch.Tensor, center_thr: float, min_distance: int) -> torch.Tensor:
    """Peaks of the (H, W) heatmap near ``center_thr``, spread over a disk of ``2 * min_distance``."""
    k = 2 * int(min_distance) + 1
    h = hmp[None, None]
    peaks = (h == F.max_pool2d(h, k, stride=1, padding=k // 2)) & (h > center_thr / 4)
    # 1 at the threshold, 0.61 at twice or half of it, ~0 for a confident peak (height ~1 for thr 0.1)
    ratio = torch.log(h.clamp_min(1e-6) / center_thr)
    amb = torch.where(peaks, torch.exp(-(ratio**2) / (2 * np.log(2) ** 2)), torch.zeros_like(h))
    r = 4 * int(min_distance) + 1
    return F.max_pool2d(amb, r, stride=1, padding=r // 2)[0, 0]


def uncertainty_map(
    model: nn.Module,
    image,
    flips: bool = True,
    *,
    weights: dict[str, float] | None = None,
    irange: tuple[float, float] | None = None,
    center_thr: float = 0.1,
    min_distance: int = 3,
    parts: bool = False,
    downsample: int = 1,
    tile_size: int | None = None,
    batch_size: int = 4,
    device=None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Per-pixel uncertainty of ``model`` on a 2D image, in [0, 1] (1: the model cannot tell).

    The weighted mean of the semantic margin, the ambiguity of centre-heatmap peaks and the
    disagreement of test-time flips (see the module docstring for each and its source).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    image : array_like
        A 2D image (one slice of a volume), any numeric dtype.
    flips : bool
        Also run the image flipped left-right and up-down; their mean probabilities feed the other
        parts and their disagreement is the ``"flips"`` part (3 network passes instead of 1).
    weights : dict, optional
        Weight of each part (``"semantic"``, ``"center"``, ``"flips"``); default 1 each.
    irange : tuple of float, optional
        Intensity range for ``normalize_image`` (compute it once per volume); default the image's.
    center_thr : float
        The postprocessing centre threshold: heatmap peaks near it are ambiguous.
    min_distance : int
        The postprocessing peak distance (pixels): peaks are maxima over ``2 * min_distance + 1``.
    parts : bool
        Return every part as well (a dict with ``"uncertainty"`` and the parts).
    downsample : int
        1, 2, 4, ...: shrink the image for the network (as ``segment_image``).
    tile_size : int, optional
        Tile side in network-input pixels; None tiles only large images.
    batch_size : int
        Tiles per network call.
    device : str or torch.device, optional
        Where to run the model (default: where its parameters are).

    Returns
    -------
    numpy.ndarray or dict
        float32 ``(H, W)`` map; with ``parts``, ``{"uncertainty": map, "semantic": ..., "center": ...,
        "flips": ...}`` (``"flips"`` only with ``flips``).

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> u = uncertainty_map(model, np.zeros((32, 48), np.uint8))
    >>> u.shape, u.dtype, bool(0 <= u.min() and u.max() <= 1)
    ((32, 48), dtype('float32'), True)
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"uncertainty_map takes a 2D image, got shape {img.shape}; pass one slice of a volume")
    w = {p: 1.0 for p in PARTS}
    unknown = set(weights or {}) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown uncertainty parts {sorted(unknown)}; use {list(PARTS)}")
    w.update(weights or {})
    kw = {"downsample": downsample, "tile_size": tile_size, "batch_size": batch_size, "device": device}
    maps = _flip_maps(model, img, flips, irange, kw)
    n_sem = maps.shape[1] - 3
    sem, hmp = maps[:, :n_sem], maps[:, n_sem]
    out = {
        "semantic": _margin(sem.mean(0)),
        "center": _center_ambiguity(hmp.mean(0), center_thr, min_distance),
    }
    if flips:
        # the std of values in [0, 1] is at most 0.5: twice it is in [0, 1]
        spread = torch.maximum(sem.std(0, unbiased=False).amax(0), hmp.clamp(0, 1).std(0, unbiased=False))
        out["flips"] = (2 * spread).clamp(0, 1)
    total = sum(w[k] for k in out)
    if total <= 0:
        raise ValueError("uncertainty weights must not all be 0")
    u = sum(w[k] * v for k, v in out.items()) / total
    res = {k: v.numpy().astype(np.float32) for k, v in out.items()}
    res["uncertainty"] = u.clamp(0, 1).numpy().astype(np.float32)
    return res if parts else res["uncertainty"]


def ortho_disagreement(
    model: nn.Module,
    volume,
    *,
    label_divisor: int | None = None,
    progress=False,
    **stack_kwargs,
) -> np.ndarray:
    """Per-voxel disagreement of the xy, xz and yz segmentations of a volume, in [0, 1].

    Query-by-committee: the three stack segmentations of ``segment_ortho`` (``segment_stack`` along
    each axis, one intensity range for all three) vote for a class at every voxel; the result is the
    vote entropy, divided by its largest possible value (0: the views agree; 1 for a 2-to-1 split
    between background and one class; 1 for three different classes).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    volume : array_like or str or os.PathLike
        A ``(Z, Y, X)`` array-like or a TIFF/zarr path.
    label_divisor : int, optional
        Default the model card's.
    progress : bool or callable
        As ``segment_stack``'s.
    **stack_kwargs
        Passed to ``segment_stack`` (``downsample``, ``min_size``, ``batch_size``, ...; not ``axis``).

    Returns
    -------
    numpy.ndarray
        float32 ``(Z, Y, X)``.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> vol = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    >>> ortho_disagreement(model, vol).shape
    (4, 32, 32)
    """
    from .inference import check_divisor
    from .model_io import card_for
    from .volume import as_volume, segment_stack, volume_irange

    if "axis" in stack_kwargs:
        raise ValueError("ortho_disagreement runs every axis; do not pass axis")
    vol = as_volume(volume)
    if len(vol.shape) != 3:
        raise ValueError(f"ortho_disagreement needs a (Z, Y, X) volume, got shape {tuple(vol.shape)}")
    card = card_for(model)
    div = check_divisor(label_divisor, card)
    if stack_kwargs.get("irange") is None:
        stack_kwargs["irange"] = volume_irange(vol)  # one range for the three views, as segment_ortho
    n_values = min(3, card.num_classes + 1)
    votes = []
    for axis in AXES:
        labels = segment_stack(model, vol, axis=axis, label_divisor=div, progress=progress, **stack_kwargs)
        votes.append(np.asarray(labels) // div)  # the class each view votes for
        del labels
    a, b, c = votes
    # vote entropy of 3 voters: all agree 0; 2-1 split H(1/3, 2/3); all differ log 3
    split = (a != b) | (b != c) | (a != c)
    all_differ = (a != b) & (b != c) & (a != c)
    h21 = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3))
    out = np.where(all_differ, np.log(3), np.where(split, h21, 0.0)).astype(np.float32)
    return out / np.float32(h21 if n_values == 2 else np.log(3))


# ------------------------------------------------------------------------------ ranking windows


def _box3(pick: dict[str, Any], shape3_: tuple[int, int, int], gap: int) -> np.ndarray:
    """A pick's patch as a 3D box ``[z0, z1, y0, y1, x0, x1]``, ``gap - 1`` slices thicker each side."""
    axis, index, r0, r1, c0, c1 = pick_box(pick, shape3_)
    fixed, (rd, cd) = AXIS_DIMS[axis]
    box = np.zeros(6, np.int64)
    box[2 * fixed : 2 * fixed + 2] = (index - (gap - 1), index + gap)
    box[2 * rd : 2 * rd + 2] = (r0, r1)
    box[2 * cd : 2 * cd + 2] = (c0, c1)
    return box


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    lo = np.maximum(box[0::2], boxes[:, 0::2])
    hi = np.minimum(box[1::2], boxes[:, 1::2])
    return bool(((hi > lo).all(axis=1)).any())


def _window_starts(n: int, size: int, stride: int) -> np.ndarray:
    if n <= size:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n - size + 1, stride)
    return np.unique(np.append(starts, n - size))


def rank_windows(
    maps: dict[int, np.ndarray],
    shape: Sequence[int],
    n: int,
    patch_size: int,
    *,
    axis: str = "xy",
    exclude: Iterable[dict[str, Any]] = (),
    slice_gap: int = 5,
    stride: int | None = None,
) -> list[tuple[dict[str, Any], float]]:
    """The ``n`` patch windows of largest summed uncertainty that overlap nothing, best first.

    Greedy non-maximum suppression over windows of ``patch_size`` on a grid of ``stride``: the best
    window is kept, windows overlapping it (or any of ``exclude``) are dropped, and so on. Two patches
    overlap where their boxes intersect in the volume, a patch counting as ``2 * slice_gap - 1``
    slices thick (so ``slice_gap=1``: only on the same slice).

    Parameters
    ----------
    maps : dict of int to numpy.ndarray
        ``{slice index along axis: (rows, cols) uncertainty}``, e.g. from ``uncertainty_map``.
    shape : sequence of int
        The volume's shape (or the 2D image's).
    n : int
        How many windows to return (fewer when no room is left).
    patch_size : int
        Side of the square patches.
    axis : str
        The axis of the slices in ``maps``.
    exclude : iterable of dict
        Picks (``empanada_nb.patches`` format, any axis) that suggestions must not overlap.
    slice_gap : int
        Patches on slices closer than this overlap where their boxes do (neighbouring slices look alike).
    stride : int, optional
        Step of the window grid in pixels (default ``patch_size // 4``).

    Returns
    -------
    list of (dict, float)
        ``(pick, summed uncertainty)`` pairs.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.zeros((64, 64), np.float32); u[40:56, 8:24] = 1
    >>> [(p["y"], p["x"], s) for p, s in rank_windows({0: u}, (64, 64), 1, 16)]
    [(48, 16, 256.0)]
    """
    axis = check_axis(axis)
    s3 = shape3(shape)
    size, gap = int(patch_size), max(1, int(slice_gap))
    if size < 1:
        raise ValueError(f"patch_size must be positive, got {size}")
    stride = max(1, int(stride or size // 4))
    ph, pw = plane_shape(s3, axis)
    cands = []  # (score, index, r0, c0)
    for index, u in maps.items():
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (ph, pw):
            raise ValueError(f"uncertainty map of slice {index} has shape {u.shape}, slices are {(ph, pw)}")
        ii = np.zeros((ph + 1, pw + 1))
        ii[1:, 1:] = u.cumsum(0).cumsum(1)
        r0, c0 = _window_starts(ph, size, stride), _window_starts(pw, size, stride)
        r1, c1 = np.minimum(r0 + size, ph), np.minimum(c0 + size, pw)
        sums = ii[r1][:, c1] - ii[r0][:, c1] - ii[r1][:, c0] + ii[r0][:, c0]
        rr, cc = np.meshgrid(r0, c0, indexing="ij")
        cands.append(np.stack([sums.ravel(), np.full(sums.size, int(index)), rr.ravel(), cc.ravel()], 1))
    if not cands or n <= 0:
        return []
    allc = np.concatenate(cands)
    order = np.lexsort((allc[:, 3], allc[:, 2], allc[:, 1], -allc[:, 0]))  # ties: first slice, row, col
    taken = [_box3(p, s3, gap) for p in exclude]
    boxes = np.array(taken, np.int64).reshape(-1, 6)
    out: list[tuple[dict[str, Any], float]] = []
    for score, index, r0, c0 in allc[order]:
        pick = make_pick(axis, int(index), int(r0) + size // 2, int(c0) + size // 2, size, s3)
        box = _box3(pick, s3, 1)  # this one is one slice thick; the kept ones carry the gap
        if _overlaps(box, boxes):
            continue
        out.append((pick, float(score)))
        boxes = np.vstack([boxes, _box3(pick, s3, gap)])
        if len(out) >= n:
            break
    return out


def default_slices(shape: Sequence[int], axis: str, max_slices: int = 16) -> list[int]:
    """Up to ``max_slices`` slice indices along ``axis``, evenly spread (all of a short volume)."""
    count = n_slices(shape3(shape), axis)
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, max(1, int(max_slices))))})


def suggest_patches(
    model: nn.Module,
    volume,
    n: int = 16,
    patch_size: int = 256,
    *,
    exclude: Iterable[dict[str, Any]] = (),
    axis: str = "xy",
    slices: Sequence[int] | None = None,
    max_slices: int = 16,
    flips: bool = True,
    ortho: bool = False,
    ortho_weight: float = 1.0,
    ortho_kwargs: dict[str, Any] | None = None,
    weights: dict[str, float] | None = None,
    slice_gap: int = 5,
    stride: int | None = None,
    irange: tuple[float, float] | None = None,
    return_scores: bool = False,
    **map_kwargs,
) -> list[dict[str, Any]] | list[tuple[dict[str, Any], float]]:
    """Suggest the ``n`` patches to label next: where ``model`` is least sure, none overlapping.

    Each candidate slice gets an ``uncertainty_map`` (plus, with ``ortho``, ``ortho_weight`` times the
    ``ortho_disagreement`` of the volume); ``rank_windows`` then keeps the patches of largest summed
    uncertainty that overlap neither each other nor ``exclude`` (existing picks and rejected
    suggestions). Uncertainty sampling (Settles 2009); the ortho term is query-by-committee.

    Parameters
    ----------
    model : torch.nn.Module
        The current model (e.g. finetuned on the patches labelled so far).
    volume : array_like
        A 2D image or a ``(Z, Y, X)`` volume (numpy, memmap, zarr, ``open_volume``).
    n : int
        How many patches to suggest.
    patch_size : int
        Side of the square patches.
    exclude : iterable of dict
        Picks not to overlap: the picks made so far and the suggestions rejected.
    axis : str
        The slices the patches lie on (``"xy"``, ``"xz"``, ``"yz"``).
    slices : sequence of int, optional
        Slice indices along ``axis`` to consider (default ``default_slices``: ``max_slices`` spread).
    max_slices : int
        Slices scored when ``slices`` is not given (each costs 1 or 3 network passes).
    flips : bool
        Test-time flips (see ``uncertainty_map``).
    ortho : bool
        Add the disagreement of the xy, xz and yz segmentations (volumes only; segments the whole
        volume three times, so pass ``ortho_kwargs={"downsample": 2}`` or more for large volumes).
    ortho_weight : float
        Weight of the ortho term against the mean of the 2D parts.
    ortho_kwargs : dict, optional
        Passed to ``ortho_disagreement`` (and so to ``segment_stack``).
    weights : dict, optional
        Weights of the 2D parts (see ``uncertainty_map``).
    slice_gap : int
        Slices closer than this count as the same place (see ``rank_windows``).
    stride : int, optional
        Step of the candidate window grid (default ``patch_size // 4``).
    irange : tuple of float, optional
        Intensity range (default: sampled once from the volume).
    return_scores : bool
        Return ``(pick, summed uncertainty)`` pairs instead of picks.
    **map_kwargs
        Passed to ``uncertainty_map`` (``downsample``, ``center_thr``, ``batch_size``, ...).

    Returns
    -------
    list of dict
        Picks ``{"axis", "z", "y", "x", "size"}`` as ``empanada_nb.patches`` makes them, most
        uncertain first (``(pick, score)`` pairs with ``return_scores``).

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> vol = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    >>> picks = enb.suggest_patches(model, vol, n=2, patch_size=16, flips=False)
    >>> len(picks), sorted(picks[0])
    (2, ['axis', 'size', 'x', 'y', 'z'])
    """
    from .volume import as_volume, volume_irange

    axis = check_axis(axis)
    if not hasattr(volume, "shape") or len(volume.shape) != 2:
        volume = as_volume(volume)  # paths, tensors, lists; a one-line error for anything else
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) == 2 and axis != "xy":
        raise ValueError("a 2D image has only 'xy' slices")
    count = n_slices(shape3(shape), axis)
    idx = default_slices(shape, axis, max_slices) if slices is None else sorted({int(i) for i in slices})
    bad = [i for i in idx if not 0 <= i < count]
    if bad:
        raise IndexError(f"slices {bad[:5]} out of range 0..{count - 1} along {axis}")
    if irange is None:
        irange = volume_irange(volume) if len(shape) == 3 else None
    disagreement = None
    if ortho and len(shape) == 3:
        disagreement = ortho_disagreement(model, volume, irange=irange, **(ortho_kwargs or {}))
    maps = {}
    for i in idx:
        u = uncertainty_map(model, _read_plane(volume, axis, i), flips, weights=weights, irange=irange, **map_kwargs)
        if disagreement is not None:
            u = (u + float(ortho_weight) * disagreement[plane_index(axis, i)]) / (1 + float(ortho_weight))
        maps[i] = u
    ranked = rank_windows(maps, shape, n, patch_size, axis=axis, exclude=exclude, slice_gap=slice_gap, stride=stride)
    return ranked if return_scores else [p for p, _ in ranked]
