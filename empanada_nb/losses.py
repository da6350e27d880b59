"""Panoptic loss as in empanada's ``losses.PanopticLoss``.

Bootstrapped cross-entropy over the hardest ``top_k_percent`` pixels (Wu et al. 2016), MSE on
the center heatmap, L1 on offsets averaged over thing pixels, and a PointRend point CE.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.pointrend import point_sample


class PanopticLoss(nn.Module):
    def __init__(
        self,
        ce_weight: float = 1.0,
        mse_weight: float = 200.0,
        l1_weight: float = 0.01,
        pr_weight: float = 1.0,
        top_k_percent: float = 0.2,
    ):
        super().__init__()
        self.ce_weight, self.mse_weight, self.l1_weight, self.pr_weight = ce_weight, mse_weight, l1_weight, pr_weight
        self.top_k_percent = top_k_percent

    @staticmethod
    def _pixel_ce(logits: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        if logits.size(1) == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], (sem > 0).to(logits.dtype), reduction="none")
        return F.cross_entropy(logits, sem.long(), reduction="none")

    def forward(
        self, out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        sem = target["sem"]
        ce_pix = self._pixel_ce(out["sem_logits"].float(), sem).reshape(-1)
        k = max(1, int(self.top_k_percent * ce_pix.numel()))
        ce = ce_pix.mean() if self.top_k_percent >= 1 else torch.topk(ce_pix, k, sorted=False)[0].mean()
        mse = F.mse_loss(out["ctr_hmp"].float(), target["ctr_hmp"])
        thing = (target["thing"] if "thing" in target else sem > 0).unsqueeze(1)
        w = thing.to(out["offsets"].dtype).expand_as(out["offsets"])
        denom = w.sum()
        l1 = (F.l1_loss(out["offsets"].float(), target["offsets"], reduction="none") * w).sum() / denom.clamp_min(1)
        total = self.ce_weight * ce + self.mse_weight * mse + self.l1_weight * l1
        terms = {"ce": ce, "mse": mse, "l1": l1}
        if "sem_points" in out:
            labels = point_sample(sem.unsqueeze(1).float(), out["point_coords"], mode="nearest")
            pts = out["sem_points"].float()
            if pts.size(1) == 1:
                pr = F.binary_cross_entropy_with_logits(pts, (labels > 0).float())
            else:
                pr = F.cross_entropy(pts, labels[:, 0].long())
            total = total + self.pr_weight * pr
            terms["pointrend_ce"] = pr
        return total, {k: float(v.detach()) for k, v in terms.items()}
