"""Validation during training: whole images through the model, postprocessing and metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn as nn

from ..data.dataset import Pair, load_pair
from ..data.ignore import IGNORE_LABEL
from ..data.io import intensity_range
from ..inference import segment_image
from ..metrics import evaluate
from ..model_io import ModelCard


def load_validation_set(pairs: Sequence[Pair], cfg, card: ModelCard) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image in [0,1], ground truth as panoptic ids with the card's label divisor) per pair.

    Unlabelled pixels (sparse labels) stay ``IGNORE_LABEL`` (-1) in the ground truth; ``validate``
    scores only the labelled pixels.
    """
    out = []
    div = card.label_divisor
    for p in pairs:
        img, msk = load_pair(p, getattr(cfg, "ignore_unlabelled", True))
        ignored = msk == IGNORE_LABEL
        msk = np.where(ignored, 0, msk)
        lo, hi = intensity_range(img)
        img = np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1)
        if cfg.connected_components:
            from scipy import ndimage

            msk = ndimage.label(msk > 0)[0]
        if cfg.label_divisor is None:
            ids, inv = np.unique(msk, return_inverse=True)  # sequential ids so they stay below the divisor
            inst = inv.reshape(msk.shape)
            gt = np.where(inst > 0, div + inst, 0) if ids[0] == 0 else div + inst + 1
        else:
            gt = msk
        gt = gt.astype(np.int64)
        gt[ignored] = IGNORE_LABEL
        out.append((img, gt))
    return out


def _mosaic(labels: Sequence[np.ndarray], divisor: int, big: int = 10**9) -> np.ndarray:
    """Lay label images side by side (1 px apart) with instance ids renumbered to stay unique."""
    h = max(a.shape[0] for a in labels)
    w = sum(a.shape[1] + 1 for a in labels)
    out = np.zeros((h, w), np.int64)
    x, offset = 0, 0
    for a in labels:
        a = a.astype(np.int64)
        cls, inst = a // divisor, a % divisor
        out[: a.shape[0], x : x + a.shape[1]] = np.where(a > 0, cls * big + inst + offset, 0)
        offset += int(inst.max()) + 1 if a.size else 0
        x += a.shape[1] + 1
    return out


def validate(model: nn.Module, val_set, cfg, card: ModelCard, device) -> dict[str, float]:
    """Foreground IoU, PQ (SQ, RQ) and F1@0.5 pooled over all validation images.

    Pooling (rather than averaging per image) keeps images without objects from scoring a
    perfect 1.0 for an empty prediction. Unlabelled ground-truth pixels (``IGNORE_LABEL``) are set to
    background in both the prediction and the ground truth, so they count for nothing.
    """
    model.eval()
    preds, gts = [], []
    for img, gt in val_set:
        ignored = gt == IGNORE_LABEL
        pred = segment_image(
            model,
            img,
            irange=(0.0, 1.0),
            label_divisor=card.label_divisor,
            device=device,
            seg_thr=cfg.seg_thr,
            center_thr=cfg.center_thr,
            min_distance=cfg.min_distance,
        )
        preds.append(np.where(ignored, 0, pred))
        gts.append(np.where(ignored, 0, gt))
    big = 10**9
    r = evaluate(_mosaic(preds, card.label_divisor, big), _mosaic(gts, card.label_divisor, big), label_divisor=big)
    return {k: float(r[k]) for k in ("iou", "pq", "sq", "rq", "f1") if k in r}
