"""Validation during training: whole images through the model, postprocessing and metrics."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch.nn as nn

from ..data.dataset import Pair, load_pair
from ..data.io import intensity_range
from ..inference import segment_image
from ..metrics import evaluate
from ..model_io import ModelCard


def load_validation_set(pairs: Sequence[Pair], cfg, card: ModelCard) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(image in [0,1], ground truth as panoptic ids with the card's label divisor) per pair."""
    out = []
    div = card.label_divisor
    for p in pairs:
        img, msk = load_pair(p)
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
        out.append((img, gt.astype(np.int64)))
    return out


def validate(model: nn.Module, val_set, cfg, card: ModelCard, device) -> Dict[str, float]:
    """Mean foreground IoU, PQ and F1@0.5 over the validation images."""
    model.eval()
    rows = []
    for img, gt in val_set:
        pred = segment_image(model, img, irange=(0.0, 1.0), label_divisor=card.label_divisor, device=device,
                             seg_thr=cfg.seg_thr, center_thr=cfg.center_thr, min_distance=cfg.min_distance)
        rows.append(evaluate(pred, gt, label_divisor=card.label_divisor))
    keys = ("iou", "pq", "sq", "rq", "f1")
    return {k: float(np.mean([r[k] for r in rows])) for k in keys if all(k in r for r in rows)}
