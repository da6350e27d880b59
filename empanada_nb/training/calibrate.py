"""The foreground threshold, fitted on labelled images and folded into the model.

A briefly trained model often ranks pixels well but is not calibrated at 0.5: after ~125 steps from
random init on 2 CPU cores, one VNC model's foreground probabilities stopped at 0.496 (its foreground
pixels sat at the semantic head's bias: ``prior.py`` says why and how training now avoids it) and
scored IoU 0 at 0.5, against 0.59 at 0.40. Rather than a threshold that every caller would have to
carry (API, CLI, widgets, exports, empanada's own tools), the threshold that scores best on labelled
images is folded into the bias of the semantic predictor, the last 1x1 convolution of the semantic
head, so that 0.5 *is* that threshold:

- one channel (sigmoid): ``sigmoid(z) >= t`` is ``sigmoid(z - logit(t)) >= 0.5``, so ``b -= logit(t)``;
- several channels (softmax, channel 0 background): ``1 - p(background) >= t`` is
  ``logsumexp(z_fg) - z_bg >= logit(t)``, so the background bias gets ``+= logit(t)``, which keeps
  ``harden_semantic``'s rule and leaves the argmax among foreground classes as it was.

This is the bias-only special case of Platt scaling (Platt 1999; Guo et al. 2017, "On calibration of
modern neural networks", ICML): one shift of the decision logit chosen on held-out data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..data.ignore import IGNORE_LABEL, ignore_value, training_mask
from ..data.io import intensity_range, normalize_image
from ..inference import Predictor, as_image2d, model_norms

#: the foreground thresholds tried
SEG_THRESHOLDS = tuple(round(0.20 + 0.05 * i, 2) for i in range(11))  # 0.20 ... 0.70
#: the foreground IoU a threshold must gain over 0.5 on validation images to be folded in (less is noise)
MIN_GAIN = 0.005
#: ... and on training images, which only a collapse of the model's probabilities should move: on a
#: 15-minute VNC model the training slices preferred 0.35 (IoU 0.792 -> 0.825) while the held-out block
#: preferred 0.5 (0.644 -> 0.623 at 0.35); a collapsed model gains ~0.6 (IoU 0 at 0.5)
MIN_GAIN_TRAINING = 0.05
#: training images the fit uses when a run has no validation images
CALIBRATION_IMAGES = 8


def semantic_predictor(model: nn.Module) -> nn.Conv2d | None:
    """The last convolution of the semantic head (the one whose bias the fit shifts), or None.

    None for models whose semantic output is not that convolution's: PointRend refines the coarse
    semantic logits with its own point head, and TorchScript or quantized models have no such module.
    """
    if getattr(model, "semantic_pr", None) is not None or getattr(model, "pointrend", False):
        return None
    head = getattr(getattr(model, "semantic_head", None), "head", None)
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else None
    if isinstance(last, nn.Conv2d) and last.bias is not None and type(last) is nn.Conv2d:
        return last
    return None


def foreground_iou_by_threshold(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], thresholds: Sequence[float] = SEG_THRESHOLDS
) -> dict[float, float]:
    """Foreground IoU at each threshold, pooled over images; unlabelled pixels count for nothing.

    Parameters
    ----------
    probs : sequence of numpy.ndarray
        Foreground probability ``(H, W)`` per image.
    masks : sequence of numpy.ndarray
        Labels of the same shapes: > 0 foreground, 0 background, ``IGNORE_LABEL`` (-1) unlabelled.
    thresholds : sequence of float
        The thresholds to score.

    Returns
    -------
    dict of float to float
        IoU per threshold (0.0 where neither prediction nor truth has foreground).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.1, 0.4, 0.45, 0.9]])
    >>> m = np.array([[0, 1, 1, 1]])
    >>> foreground_iou_by_threshold([p], [m], [0.3, 0.5])
    {0.3: 1.0, 0.5: 0.3333333333333333}
    """
    inter = np.zeros(len(thresholds))
    union = np.zeros(len(thresholds))
    for p, m in zip(probs, masks):
        known = m != IGNORE_LABEL
        truth = (m > 0)[known]
        p = np.asarray(p)[known]
        for i, t in enumerate(thresholds):
            pred = p >= t
            inter[i] += np.count_nonzero(pred & truth)
            union[i] += np.count_nonzero(pred | truth)
    return {float(t): float(inter[i] / union[i]) if union[i] else 0.0 for i, t in enumerate(thresholds)}


@torch.no_grad()
def shift_semantic_bias(model: nn.Module, threshold: float) -> None:
    """Fold a foreground ``threshold`` into the semantic predictor's bias, so 0.5 gives what it gave.

    Parameters
    ----------
    model : torch.nn.Module
        An eager PanopticDeepLab / PanopticBiFPN model without PointRend.
    threshold : float
        The foreground probability threshold, in (0, 1).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When the model has no semantic predictor to shift or ``threshold`` is not in (0, 1).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> from empanada_nb.training.calibrate import shift_semantic_bias, semantic_predictor
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> shift_semantic_bias(model, 0.25)
    >>> round(float(semantic_predictor(model).bias[0]), 4)  # -logit(0.25)
    1.0986
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    conv = semantic_predictor(model)
    if conv is None:
        raise ValueError("this model has no semantic predictor to shift (PointRend, TorchScript or quantized model)")
    shift = math.log(threshold / (1.0 - threshold))
    if conv.bias.numel() == 1:
        conv.bias -= shift
    else:
        conv.bias[0] += shift


def _probabilities(model: nn.Module, images: Sequence[np.ndarray], device=None) -> list[np.ndarray]:
    """Foreground probability per image in [0, 1] (already scaled), at full resolution."""
    pred = Predictor(model, device=device)
    norms = model_norms(model)
    out = []
    for img in images:
        maps = pred.maps([normalize_image(img, norms, (0.0, 1.0))])[0]
        sem = maps[: pred.n_sem].numpy()
        out.append(sem[0] if pred.n_sem == 1 else 1.0 - sem[0])
    return out


def fit_threshold(
    model: nn.Module,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    thresholds: Sequence[float] = SEG_THRESHOLDS,
    min_gain: float = MIN_GAIN,
    device=None,
    apply: bool = True,
) -> dict:
    """The fit on images already scaled to [0, 1] and masks with ``IGNORE_LABEL`` (see ``calibrate_threshold``)."""
    if semantic_predictor(model) is None:
        raise ValueError("this model has no semantic predictor to calibrate (PointRend, TorchScript, quantized)")
    if not any(np.any(m > 0) for m in masks):
        raise ValueError("the masks hold no labelled foreground: the threshold cannot be fitted on them")
    scores = foreground_iou_by_threshold(_probabilities(model, images, device), masks, sorted({0.5, *thresholds}))
    at_half = scores[0.5]
    best = max(scores, key=lambda t: (scores[t], -abs(t - 0.5)))  # ties go to the threshold nearest 0.5
    threshold = best if scores[best] >= at_half + min_gain else 0.5
    result = {
        "threshold": threshold,
        "iou_at_0.5": at_half,
        "iou": scores[threshold],
        "images": len(images),
        "scores": scores,
        "applied": False,
    }
    if apply and threshold != 0.5:
        shift_semantic_bias(model, threshold)
        result["applied"] = True
    return result


def calibrate_threshold(
    model: nn.Module,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    thresholds: Sequence[float] = SEG_THRESHOLDS,
    min_gain: float = MIN_GAIN,
    device=None,
    apply: bool = True,
) -> dict:
    """Fit the foreground threshold on labelled images and fold it into the model.

    Tries each of ``thresholds`` on the model's foreground probabilities, pools the foreground IoU over
    the images, and when the best beats 0.5 by at least ``min_gain``, shifts the semantic predictor's
    bias so that 0.5 gives that threshold's segmentation everywhere (``segment_*``, CLI, widgets,
    exports). ``train`` and ``finetune`` do this at the end of a run (``TrainConfig.calibrate``); this
    function does it for a model you have, e.g. MitoNet on a few labelled slices of your data.

    Parameters
    ----------
    model : torch.nn.Module
        An eager model without PointRend; changed in place when ``apply``.
    images : sequence of numpy.ndarray
        2D greyscale images, any dtype (scaled as ``segment_image`` scales them).
    masks : sequence of numpy.ndarray
        Their labels, read as training reads them: 0 background, > 0 objects, the dtype's ignore value
        (255 for uint8, 65535 for uint16) unlabelled, except in a 0/255 mask, where 255 is objects.
    thresholds : sequence of float
        The thresholds tried (0.5 is always scored).
    min_gain : float
        The IoU a threshold must gain over 0.5 to be folded in.
    device : str or torch.device, optional
        Where the network runs (default: where the model is).
    apply : bool
        False reports the fit without changing the model.

    Returns
    -------
    dict
        ``threshold`` (0.5 when kept), ``iou_at_0.5``, ``iou`` (at ``threshold``), ``images``,
        ``scores`` (IoU per threshold), ``applied``.

    Raises
    ------
    ValueError
        When the lists differ in length or shapes, the masks hold no foreground, or the model has no
        semantic predictor to shift (PointRend, TorchScript, quantized).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> image, truth = enb.synthetic_image(64, n_objects=3)
    >>> fit = enb.calibrate_threshold(model, [image], [truth], apply=False)
    >>> sorted(fit)[:3], 0.2 <= fit["threshold"] <= 0.7
    (['applied', 'images', 'iou'], True)
    """
    if len(images) != len(masks) or not len(images):
        raise ValueError(f"give as many masks as images, at least one (got {len(images)} images, {len(masks)} masks)")
    scaled, labels = [], []
    for i, (img, msk) in enumerate(zip(images, masks)):
        img = as_image2d(img)
        msk = np.asarray(msk)
        if msk.shape != img.shape:
            raise ValueError(f"mask {i} has shape {msk.shape}, its image {img.shape}: give one mask per image")
        lo, hi = intensity_range(img)
        scaled.append(np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-12), 0, 1))
        labels.append(_read_mask(msk))
    return fit_threshold(model, scaled, labels, thresholds=thresholds, min_gain=min_gain, device=device, apply=apply)


def _read_mask(mask: np.ndarray) -> np.ndarray:
    """A mask as training reads it, with a 0/255 binary mask's 255 read as objects (as the dataset does)."""
    m = training_mask(mask)
    if not np.any(m > 0) and mask.dtype.kind in "ui" and np.any(mask == ignore_value(mask.dtype)):
        m = (mask != 0).astype(np.int64)
    return m


def spread(items: Sequence, n: int) -> list:
    """``n`` items spread evenly over ``items`` (all of them when there are no more than ``n``).

    Examples
    --------
    >>> spread(list(range(10)), 3)
    [0, 4, 9]
    """
    if len(items) <= n:
        return list(items)
    return [items[int(round(i * (len(items) - 1) / (n - 1)))] for i in range(n)] if n > 1 else [items[0]]


def calibrate_foreground(model: nn.Module, data, device, source: str) -> dict | None:
    """The end-of-training fit: ``data`` is ``load_validation_set``'s (image in [0, 1], gt) pairs.

    Returns the fit with its ``source``, or None when the model or the data cannot be fitted on (a
    PointRend model, no images, no labelled foreground); a failure warns and leaves the model as it is.
    """
    if semantic_predictor(model) is None or not data:
        return None
    images = [img for img, _ in data]
    masks = [gt for _, gt in data]
    if not any(np.any(m > 0) for m in masks):
        return None
    was_training = model.training
    gain = MIN_GAIN_TRAINING if source == "training images" else MIN_GAIN
    try:
        fit = fit_threshold(model, images, masks, device=device, min_gain=gain)
    except Exception as e:  # a failed fit must not lose the trained model
        warnings.warn(f"the foreground threshold could not be fitted ({e}); the model keeps 0.5", stacklevel=3)
        return None
    finally:
        model.train(was_training)
    fit["source"] = source
    return fit
