"""Validation during training: whole images through the model, postprocessing and metrics."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.dataset import Pair, load_pair
from ..data.io import intensity_range
from ..data.targets import split_panoptic
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


@torch.inference_mode()
def predict_panoptic(model: nn.Module, img01: np.ndarray, card: ModelCard, cfg, device) -> np.ndarray:
    """Panoptic ids for one [0,1] image, padded to the model's factor and cropped back."""
    from ..postprocess import panoptic_postprocess

    h, w = img01.shape
    f = model.padding_factor
    ph, pw = (-h) % f, (-w) % f
    x = torch.from_numpy(img01)[None, None].to(device)
    x = (x - model.norms["mean"]) / model.norms["std"]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    out = model(x)
    pan = panoptic_postprocess(out["sem_logits"][0, :, :h, :w], out["ctr_hmp"][0, :, :h, :w],
                               out["offsets"][0, :, :h, :w], thing_list=card.thing_list,
                               label_divisor=card.label_divisor, seg_thr=cfg.seg_thr, center_thr=cfg.center_thr,
                               min_distance=cfg.min_distance)
    return pan.cpu().numpy()


def validate(model: nn.Module, val_set, cfg, card: ModelCard, device) -> Dict[str, float]:
    """Mean foreground IoU, PQ and F1@0.5 over the validation images."""
    from ..metrics import evaluate

    model.eval()
    rows = []
    for img, gt in val_set:
        pred = predict_panoptic(model, img, card, cfg, device)
        rows.append(evaluate(pred, gt, label_divisor=card.label_divisor))
    keys = ("iou", "pq", "sq", "rq", "f1")
    return {k: float(np.mean([r[k] for r in rows])) for k in keys if all(k in r for r in rows)}
