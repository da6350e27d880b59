"""2D inference: normalization, padding, downsampling, seam-free tiling, ROI and batches.

The network runs on tiles (or the whole image); its raw outputs (semantic probabilities, center
heatmap, offsets) are stitched into full-size maps and postprocessed *once*, so an object that
crosses a tile seam is never split or duplicated. Stitching takes every pixel from exactly one
tile: the one whose *core* holds it, where cores split each overlap at its midpoint (the
center-cropping of overlap-tile strategies, Ronneberger et al. 2015, U-Net, sec. 2). Offsets
are vectors relative to their own pixel, so they need no tile-origin correction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psutil
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import postprocess as pp
from ._device import resolve_device
from .data.io import intensity_range, normalize_image
from .labels import filter_labels
from .model_io import card_for
from .models.blocks import semantic_channels
from .models.fuse import fuse_for_inference, is_eager
from .precision import resolve_precision

#: images whose downsampled sides are all at most this run as one tile when ``tile_size`` is None
AUTO_WHOLE = 2048
#: tile side used when ``tile_size`` is None and the image is larger than ``AUTO_WHOLE``
AUTO_TILE = 1024
DOWNSAMPLES = (1, 2, 4, 8, 16, 32, 64)
_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def as_image2d(image, what: str = "image") -> np.ndarray:
    """``image`` as a 2D array, or a one-line ValueError that says what to do."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape}); pass a non-empty 2D greyscale image")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        raise ValueError(
            f"{what} has a colour channel axis (shape {a.shape}); convert it to greyscale "
            "first, e.g. image.mean(axis=-1)"
        )
    if a.ndim != 2:
        raise ValueError(
            f"{what} must be 2D (H, W), got shape {a.shape}; for a stack use segment_batch or segment_stack"
        )
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what} has dtype {a.dtype}; pass a numeric greyscale image")
    return a


def _check_downsample(downsample: int) -> int:
    if downsample not in DOWNSAMPLES:
        raise ValueError(f"downsample must be one of {', '.join(map(str, DOWNSAMPLES))}, got {downsample!r}")
    return int(downsample)


# --------------------------------------------------------------------------------------------
# tiling geometry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One tile along one axis: it reads ``[start, stop)`` and owns ``[core_start, core_stop)``."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def tile_spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Tiles of ``tile`` px covering ``length`` px with at least ``overlap`` px of overlap.

    Cores partition ``[0, length)``: each overlap is split at its midpoint, so every core pixel
    has at least ``overlap // 2`` px of context inside its tile (except at the image border).
    """
    if length <= tile:
        return [Span(0, length, 0, length)]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile_size), got {overlap} for tile size {tile}")
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    stops = [s + tile for s in starts]
    cuts = [0] + [(stops[i] + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [length]
    return [Span(a, b, c0, c1) for a, b, c0, c1 in zip(starts, stops, cuts[:-1], cuts[1:])]


def tile_grid(shape: tuple[int, int], tile: int, overlap: int) -> list[tuple[Span, Span]]:
    """(y span, x span) for every tile of a ``shape`` image, row by row."""
    return [(sy, sx) for sy in tile_spans(shape[0], tile, overlap) for sx in tile_spans(shape[1], tile, overlap)]


def _round_up(n: int, factor: int) -> int:
    return int(math.ceil(n / factor) * factor)


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad (N, C, h0, w0) at the bottom/right to (h, w): reflect, replicate where the image is too small."""
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# --------------------------------------------------------------------------------------------
# the predictor: network outputs stitched at full resolution
# --------------------------------------------------------------------------------------------


def model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


#: test-time flips besides the image as is: left-right, up-down and both. The four form a group, so
#: the averaged maps are exactly equivariant to those flips (a flipped image gives the flipped result)
FLIPS = ((-1,), (-2,), (-2, -1))


def probs_to_logits(sem: torch.Tensor) -> torch.Tensor:
    """Inverse of sigmoid (one channel) or a softmax-equivalent log (several); postprocessing takes logits."""
    p = sem.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p) if sem.shape[0] == 1 else torch.log(p)


class Predictor:
    """Runs ``model`` on normalized 2D images and returns stitched full-resolution maps.

    Maps are float32 CPU tensors ``(S + 3, H, W)``: S semantic probabilities (sigmoid or softmax),
    the center heatmap, then offsets (dy, dx) in full-resolution pixels.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        downsample: int = 1,
        tile_size: int | None = None,
        tile_overlap: int = 128,
        batch_size: int = 4,
        device=None,
        precision: str = "fp32",
        flips: bool = False,
    ):
        self.model = model
        self.flips = bool(flips)
        self.device = resolve_device(device) if device is not None else model_device(model)
        if device is not None:
            model.to(self.device)
        self.downsample = _check_downsample(downsample)
        self.factor = int(getattr(model, "padding_factor", 16))
        if tile_size is not None and tile_size < self.factor:
            raise ValueError(f"tile_size must be at least the model's padding factor {self.factor}, got {tile_size}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        self.tile_size = tile_size
        self.tile_overlap = int(tile_overlap)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.n_sem = semantic_channels(int(getattr(model, "num_classes", 1)))
        self.cuda = self.device.type == "cuda"
        self.eager = is_eager(model)
        # TorchScript and quantized models run as they are, in fp32
        self.precision = resolve_precision(precision if self.eager else "fp32", self.device)

    def network(self) -> nn.Module:
        """What runs: the BatchNorm-folded eval copy of the model (``fuse_for_inference``).

        Its memory layout is channels-last (NHWC) at every precision: oneDNN's CPU convolutions (fp32
        and AMX bf16) and cuDNN's tensor-core kernels are fastest on it (see ``Precision.channels_last``).
        """
        # normal tensors even when called under inference_mode: the cached copy outlives this call
        with torch.inference_mode(False):
            net = fuse_for_inference(self.model)
            if net is not self.model:  # no copy when the layout is already the one asked for
                fmt = torch.channels_last if self.precision.channels_last else torch.contiguous_format
                net.to(memory_format=fmt)
        return net

    # ---- geometry ----
    def small_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        d = self.downsample
        return (max(1, math.ceil(shape[0] / d)), max(1, math.ceil(shape[1] / d)))

    def tile_for(self, small: tuple[int, int]) -> int:
        """Tile side (a multiple of the padding factor) in model-input pixels."""
        if self.tile_size is None:
            t = max(small) if max(small) <= AUTO_WHOLE else AUTO_TILE
        else:
            t = min(self.tile_size, max(small))
        return _round_up(t, self.factor)

    def check_memory(self, shape: tuple[int, int], n_images: int = 1) -> None:
        need = (self.n_sem + 3) * 4 * shape[0] * shape[1] * n_images
        avail = psutil.virtual_memory().available
        if need > 0.5 * avail:
            raise ValueError(
                f"stitched network outputs for {shape[0]}x{shape[1]} px need {need / 2**30:.1f} GiB "
                f"({avail / 2**30:.1f} GiB free); use a larger downsample or an roi"
            )

    # ---- network ----
    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """(N, 1, h, w) normalized -> (N, S + 3, h, w) float32 on CPU: probs, heatmap, offsets."""
        net = net if net is not None else self.network()
        x = x.to(self.device, non_blocking=True)
        if self.precision.channels_last and net is not self.model:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast(self.device):
            out = net(x)
        logits = out["sem_logits"].float()
        sem = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        # one contiguous (N, C, H, W) block: the stitching below reads it row by row
        return torch.cat([sem, out["ctr_hmp"].float(), out["offsets"].float()], dim=1).contiguous().cpu()

    def _empty(self, shape: tuple[int, int]) -> torch.Tensor:
        maps = torch.zeros((self.n_sem + 3,) + tuple(shape), dtype=torch.float32)
        if self.n_sem > 1:
            maps[0] = 1.0  # background wins where nothing was predicted (skipped tiles)
        return maps

    def maps(self, images: Sequence[np.ndarray], rois: Sequence[np.ndarray | None] | None = None) -> list[torch.Tensor]:
        """Stitched full-resolution maps for normalized float32 2D ``images`` (any sizes).

        With ``flips``, the mean of the maps of each image as is, flipped left-right, up-down and both
        (each flipped back, the offsets along a flipped axis negated): test-time augmentation, 4
        network passes.
        """
        net = self.network()
        if net is not self.model:  # an eval copy: the user's model keeps its mode
            return self._all_maps(images, rois, net)
        was_training = self.model.training
        self.model.eval()
        try:
            return self._all_maps(images, rois, net)
        finally:
            self.model.train(was_training)

    def _all_maps(self, images, rois, net: nn.Module) -> list[torch.Tensor]:
        out = self._maps(images, rois, net)
        if not self.flips:
            return out
        for dims in FLIPS:
            views = [np.ascontiguousarray(np.flip(img, axis=dims)) for img in images]
            vrois = [None if r is None else np.ascontiguousarray(np.flip(r, axis=dims)) for r in rois] if rois else rois
            for acc, m in zip(out, self._maps(views, vrois, net)):
                m = torch.flip(m, dims=dims)
                for d in dims:  # an offset along a flipped axis points the other way: dy is channel -2, dx -1
                    m[d] *= -1
                acc += m
        for acc in out:
            acc /= 1 + len(FLIPS)
        return out

    def _maps(self, images, rois, net: nn.Module) -> list[torch.Tensor]:
        d = self.downsample
        smalls, canvases, jobs = [], [], []
        for i, img in enumerate(images):
            self.check_memory(img.shape)
            x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
            small = self.small_shape(img.shape)
            if d > 1:
                # area averaging is the anti-aliased box filter for integer factors
                x = F.interpolate(x, size=small, mode="area")
            roi = rois[i] if rois is not None else None
            if roi is not None and d > 1:
                roi = (
                    F.adaptive_max_pool2d(torch.from_numpy(roi.astype(np.float32))[None, None], small)[0, 0].numpy() > 0
                )
            tile = self.tile_for(small)
            smalls.append(small)
            canvases.append(self._empty(small))
            for sy, sx in tile_grid(small, tile, self.tile_overlap):
                if roi is not None and not roi[sy.core_start : sy.core_stop, sx.core_start : sx.core_stop].any():
                    continue  # the tile owns no ROI pixel: skip the network
                jobs.append((i, sy, sx, x[..., sy.start : sy.stop, sx.start : sx.stop], tile))
        # batch tiles of the same padded size together
        jobs.sort(key=lambda j: (self._padded(j), j[0]))
        for k in range(0, len(jobs), self.batch_size):
            self._run_group(jobs[k : k + self.batch_size], canvases, net)
        return [self._upsample(c, img.shape) for c, img in zip(canvases, images)]

    def _padded(self, job) -> tuple[int, int]:
        h, w = job[3].shape[-2:]
        return _round_up(h, self.factor), _round_up(w, self.factor)

    def _run_group(self, group, canvases, net: nn.Module) -> None:
        # split the group where the padded size changes (sorted, so groups stay contiguous)
        by_size: dict[tuple[int, int], list] = {}
        for job in group:
            by_size.setdefault(self._padded(job), []).append(job)
        for (ph, pw), jobs in by_size.items():
            x = torch.cat([_pad_to(j[3], ph, pw) for j in jobs], dim=0)
            out = self._forward(x, net)
            for o, (i, sy, sx, _, _) in zip(out, jobs):
                canvases[i][:, sy.core_start : sy.core_stop, sx.core_start : sx.core_stop] = o[
                    :,
                    sy.core_start - sy.start : sy.core_stop - sy.start,
                    sx.core_start - sx.start : sx.core_stop - sx.start,
                ]

    def _upsample(self, maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        if tuple(maps.shape[-2:]) == tuple(shape):
            return maps
        sy, sx = shape[0] / maps.shape[-2], shape[1] / maps.shape[-1]
        up = F.interpolate(maps[None], size=tuple(shape), mode="bilinear", align_corners=False)[0]
        up[-2] *= sy  # offsets are in pixels: scale them to the full resolution
        up[-1] *= sx
        return up


# --------------------------------------------------------------------------------------------
# postprocessing of stitched maps
# --------------------------------------------------------------------------------------------


#: 2D ``min_area`` of a model that learned none from its training objects (``default_min_area``):
#: instances of fewer pixels are dropped. Chosen on a validation block
#: (Lucchi++ slices 125-164, ``benchmarks/tune_postprocess.py``, a 15-minute model, with that search's
#: thresholds): F1@0.5 0.824 (0 px) -> 0.865 (128) -> 0.892 (512) at 5 nm pixels; a second model
#: 0.789 -> 0.844 -> 0.863. 128 keeps a 200 nm mitochondrion section at pixels up to ~15 nm.
MIN_AREA = 128


def default_min_area(model: nn.Module) -> int:
    """The 2D ``min_area`` used when none is given: the one the model learned from its training
    objects (``card.min_area``, ``training/object_size.py``), else ``MIN_AREA``.

    Parameters
    ----------
    model : torch.nn.Module
        A model with or without a card.

    Returns
    -------
    int
        Pixels; instances with fewer are dropped.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> default_min_area(model)
    128
    >>> card_for(model).min_area = 300  # what training sets
    >>> default_min_area(model)
    300
    """
    learned = getattr(getattr(model, "card", None), "min_area", None)
    return int(learned) if learned is not None else MIN_AREA


@dataclass
class PostOptions:
    """Panoptic postprocessing options, shared by 2D and 3D inference."""

    thing_list: list[int]
    label_divisor: int
    seg_thr: float = 0.5
    center_thr: float = 0.1
    min_distance: int = 3
    stuff_area: int = 64
    semantic_only: bool = False
    fine_boundaries: bool = False
    fill_holes: bool = False
    split_fragments: bool = True
    min_area: int = 0  #: 2D only: smaller instances are dropped (stack inference filters in 3D instead)

    def __call__(self, maps: torch.Tensor) -> np.ndarray:
        """Panoptic ids (H, W) int64 from one image's stitched maps (S + 3, H, W)."""
        s = maps.shape[0] - 3
        labels = pp.panoptic_postprocess(
            probs_to_logits(maps[:s]),
            maps[s : s + 1],
            maps[s + 1 :],
            thing_list=self.thing_list,
            label_divisor=self.label_divisor,
            seg_thr=self.seg_thr,
            center_thr=self.center_thr,
            min_distance=self.min_distance,
            stuff_area=self.stuff_area,
            semantic_only=self.semantic_only,
            fine_boundaries=self.fine_boundaries,
            fill_holes=self.fill_holes,
        )
        if self.split_fragments and not self.semantic_only:
            labels = pp.split_fragments(labels, label_divisor=self.label_divisor)
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        labels = np.asarray(labels, dtype=np.int64)
        if self.min_area > 0 and not self.semantic_only:
            labels = drop_small_instances(labels, self.min_area, self.label_divisor)
        return labels


def drop_small_instances(labels: np.ndarray, min_area: int, label_divisor: int) -> np.ndarray:
    """``labels`` with every instance smaller than ``min_area`` pixels set to 0 (stuff ids are kept).

    ``filter_labels`` does the counting; stuff regions (ids that are a multiple of ``label_divisor``)
    have their own threshold, ``stuff_area``, so they are put back.

    Parameters
    ----------
    labels : numpy.ndarray
        Panoptic ids ``class * label_divisor + instance``.
    min_area : int
        Instances with fewer pixels are removed.
    label_divisor : int
        Ids that are a multiple of it are stuff (no instance) and stay.

    Returns
    -------
    numpy.ndarray
        The filtered labels (a copy).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.array([[1001, 1001, 1002], [0, 2000, 2000]])
    >>> drop_small_instances(lab, 2, 1000)
    array([[1001, 1001,    0],
           [   0, 2000, 2000]])
    """
    out = filter_labels(labels, min_area)
    stuff = (labels % label_divisor == 0) & (labels != 0)
    out[stuff] = labels[stuff]
    return out


def post_options(model: nn.Module, label_divisor: int | None = None, **kw) -> PostOptions:
    card = card_for(model)
    if kw.get("min_area", 0) is None:  # 2D: the model's learned minimum, else MIN_AREA
        kw["min_area"] = default_min_area(model)
    return PostOptions(thing_list=list(card.thing_list), label_divisor=check_divisor(label_divisor, card), **kw)


def check_divisor(label_divisor: int | None, card) -> int:
    """``label_divisor`` (None: the card's) as a positive int, or a ValueError (0 used to mean "default")."""
    if label_divisor is None:
        return int(card.label_divisor)
    if int(label_divisor) < 1:
        raise ValueError(f"label_divisor must be a positive integer (or None for the model's), got {label_divisor}")
    return int(label_divisor)


def engine(
    model: nn.Module,
    label_divisor: int | None = None,
    *,
    downsample: int = 1,
    tile_size: int | None = None,
    tile_overlap: int = 128,
    batch_size: int = 4,
    device=None,
    precision: str = "fp32",
    flips: bool = False,
    **post_kw,
) -> tuple[PostOptions, Predictor, np.dtype]:
    """The postprocessing options, the network runner and the label dtype shared by 2D and 3D inference."""
    post = post_options(model, label_divisor, **post_kw)
    pred = Predictor(
        model,
        downsample=downsample,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
        flips=flips,
    )
    return post, pred, label_dtype(pred.n_sem, post.label_divisor)


def model_norms(model: nn.Module) -> dict[str, float]:
    """The model's input normalisation ``{"mean", "std"}`` (from the model, else its card)."""
    return dict(getattr(model, "norms", None) or card_for(model).norms)


def label_dtype(n_classes: int, label_divisor: int):
    """The smallest of int32/int64 that holds panoptic ids ``class * label_divisor + instance``."""
    return np.int32 if (n_classes + 1) * label_divisor < 2**31 else np.int64


def _roi_box(roi: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The ROI's bounding box grown by ``margin`` px of context, or None if the ROI is empty."""
    rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
    if rows.size == 0:
        return None
    h, w = roi.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def segment_image(
    model: nn.Module,
    image,
    *,
    downsample: int = 1,
    tile_size: int | None = None,
    tile_overlap: int = 128,
    roi: np.ndarray | None = None,
    batch_size: int = 4,
    device=None,
    precision: str = "fp32",
    flips: bool = False,
    irange: tuple[float, float] | None = None,
    label_divisor: int | None = None,
    seg_thr: float = 0.5,
    center_thr: float = 0.1,
    min_distance: int = 3,
    stuff_area: int = 64,
    semantic_only: bool = False,
    fine_boundaries: bool = False,
    fill_holes: bool = False,
    split_fragments: bool = True,
    min_area: int | None = None,
    return_probs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Panoptic labels ``(H, W)`` (``class * label_divisor + instance``) for one 2D image.

    The image is normalized with the model's norms (``normalize_image``), padded to the model's
    padding factor, run through the network (tiled when large) and postprocessed
    (``panoptic_postprocess``).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    image : array_like
        2D greyscale image ``(H, W)`` (a leading or trailing axis of 1 is dropped), any numeric dtype.
    downsample : int
        1, 2, 4, ..., 64: shrink the input for the network; outputs come back at full resolution.
    tile_size : int, optional
        Tile side in network-input pixels (after downsampling); None tiles only images larger
        than ``AUTO_WHOLE`` px.
    tile_overlap : int
        Overlap of neighbouring tiles, in network-input pixels.
    roi : numpy.ndarray, optional
        Boolean ``(H, W)`` region of interest: pixels outside are 0 and tiles owning no ROI pixel
        are skipped.
    batch_size : int
        Tiles per network call.
    device : str or torch.device, optional
        Default: the model's device.
    precision : str
        ``"fp32"`` (reference), ``"bf16"`` (CPUs with AMX/AVX512-BF16, or CUDA), ``"fp16"`` (CUDA) or
        ``"auto"`` (the fastest the device runs natively); unsupported choices warn and run fp32.
        See ``precision.resolve_precision`` and the speed page of the docs for the accuracy change.
    flips : bool
        Test-time augmentation: average the network's maps of the image as is, flipped left-right,
        up-down and both (4 passes: 4x the network time).
    irange : tuple of float, optional
        Intensity range mapped to [0, 1]; default the image's own (see ``normalize_image``).
    label_divisor : int, optional
        Panoptic ids are ``class * label_divisor + instance``; default the model card's (1000).
    seg_thr : float
        Foreground probability threshold.
    center_thr : float
        Center heatmap threshold.
    min_distance : int
        Center NMS window (see ``panoptic_postprocess``).
    stuff_area : int
        Minimum area of a stuff region.
    semantic_only : bool
        Return semantic classes only (ids ``class * label_divisor``), no instances.
    fine_boundaries : bool
        Group pixels into instances at full instead of 1/4 resolution.
    fill_holes : bool
        Fill background holes enclosed by one instance.
    split_fragments : bool
        Give disconnected pieces of a label their own ids (empanada's ``force_connected``).
    min_area : int, optional
        Drop instances smaller than this many (full-resolution) pixels: most false positives of a
        briefly trained model are small; 0 keeps everything. Default: the minimum the model learned
        from its training objects (``model.card.min_area``, see ``training/object_size.py``), else
        ``MIN_AREA``.
    return_probs : bool
        Also return the semantic probabilities.

    Returns
    -------
    labels : numpy.ndarray
        ``(H, W)`` integer panoptic labels (int32 when the ids fit, else int64).
    probs : numpy.ndarray
        Only with ``return_probs``: float32 ``(H, W)`` foreground probability for one class, else
        ``(S, H, W)`` with channel 0 background.

    Raises
    ------
    ValueError
        When ``image`` is not a 2D greyscale image, or an option is out of range.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> image, _ = enb.synthetic_image(64, n_objects=3)
    >>> labels = enb.segment_image(model, image)
    >>> labels.shape, labels.dtype
    ((64, 64), dtype('int32'))
    >>> labels, probs = enb.segment_image(model, image, return_probs=True)
    >>> probs.shape
    (64, 64)
    """
    img = as_image2d(image)
    post, pred, dtype = engine(
        model,
        label_divisor,
        downsample=downsample,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
        flips=flips,
        seg_thr=seg_thr,
        center_thr=center_thr,
        min_distance=min_distance,
        stuff_area=stuff_area,
        semantic_only=semantic_only,
        fine_boundaries=fine_boundaries,
        fill_holes=fill_holes,
        split_fragments=split_fragments,
        min_area=min_area,
    )
    box = (slice(0, img.shape[0]), slice(0, img.shape[1]))
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        if roi.shape != img.shape:
            raise ValueError(f"roi shape {roi.shape} does not match image shape {img.shape}")
        box = _roi_box(roi, tile_overlap * pred.downsample)
        if box is None:  # empty ROI: nothing to segment
            labels = np.zeros(img.shape, dtype)
            return (labels, np.squeeze(pred._empty(img.shape)[: pred.n_sem].numpy(), 0)) if return_probs else labels
    irange = irange if irange is not None else intensity_range(img)
    x = normalize_image(img[box], model_norms(model), irange)
    maps = pred.maps([x], [roi[box]] if roi is not None else None)[0]
    labels = np.zeros(img.shape, dtype)
    labels[box] = post(maps)
    if roi is not None:
        labels[~roi] = 0
    if not return_probs:
        return labels
    probs = pred._empty(img.shape)[: pred.n_sem].numpy()
    probs[(slice(None),) + box] = maps[: pred.n_sem].numpy()
    if roi is not None:
        probs[:, ~roi] = 0.0
        if pred.n_sem > 1:
            probs[0, ~roi] = 1.0  # background
    return labels, (probs[0] if pred.n_sem == 1 else probs)


def segment_batch(
    model: nn.Module,
    images: np.ndarray | Iterable,
    *,
    batch_size: int = 4,
    irange: tuple[float, float] | None = None,
    progress: bool = False,
    **kwargs,
) -> np.ndarray | list[np.ndarray]:
    """Segment many 2D images, batching the network over images (or their tiles).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``.
    images : numpy.ndarray or iterable of array_like
        An ``(N, H, W)`` array, or an iterable of 2D images (sizes may differ).
    batch_size : int
        Images (or tiles) per network call.
    irange : tuple of float, optional
        Intensity range; default each image's own range. Pass one for a consistent stack.
    progress : bool
        Show a tqdm progress bar.
    **kwargs
        Those of ``segment_image`` (``roi`` and ``return_probs`` excepted).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        ``(N, H, W)`` labels for an array input, else a list of 2D label arrays.

    Raises
    ------
    ValueError
        When given ``roi``/``return_probs``, or an array that is not ``(N, H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> image, _ = enb.synthetic_image(64, n_objects=3)
    >>> enb.segment_batch(model, np.stack([image, image])).shape
    (2, 64, 64)
    >>> [labels.shape for labels in enb.segment_batch(model, [image, image[:48]])]
    [(64, 64), (48, 64)]
    """
    if "roi" in kwargs or "return_probs" in kwargs:
        raise ValueError("segment_batch takes no roi/return_probs; call segment_image per image")
    post_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in PostOptions.__dataclass_fields__}
    post_kw.setdefault("min_area", None)  # segment_image's default (PostOptions' 0 is for stack inference)
    post = post_options(model, post_kw.pop("label_divisor", None), **post_kw)
    pred = Predictor(model, batch_size=batch_size, **kwargs)
    is_array = isinstance(images, np.ndarray)
    if is_array and images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    results = [labels for labels in _iter_batch(pred, post, model, images, irange, progress)]
    if is_array:
        dtype = label_dtype(pred.n_sem, post.label_divisor)
        return np.stack(results).astype(dtype, copy=False) if results else np.zeros(images.shape, dtype)
    return results


def _iter_batch(
    pred: Predictor, post: PostOptions, model: nn.Module, images: Iterable, irange, progress: bool
) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    norms = model_norms(model)
    dtype = label_dtype(pred.n_sem, post.label_divisor)
    total = len(images) if hasattr(images, "__len__") else None
    buf: list[np.ndarray] = []
    with tqdm(total=total, desc="segment", unit="img", disable=not progress) as bar:

        def flush():
            for maps in pred.maps(buf):
                yield post(maps).astype(dtype, copy=False)
            bar.update(len(buf))
            buf.clear()

        for i, image in enumerate(images):
            img = as_image2d(image, f"image {i}")
            buf.append(normalize_image(img, norms, irange if irange is not None else intensity_range(img)))
            if len(buf) == pred.batch_size:
                yield from flush()
        if buf:
            yield from flush()
