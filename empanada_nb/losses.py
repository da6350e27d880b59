"""Panoptic loss as in empanada's ``losses.PanopticLoss``.

Bootstrapped cross-entropy over the hardest ``top_k_percent`` pixels (Wu et al. 2016), MSE on
the center heatmap, L1 on offsets averaged over thing pixels, and a PointRend point CE.

Sparse labels: pixels whose semantic target is ``IGNORE_LABEL`` (-1) are unlabelled and left out of
every term. The bootstrapped CE takes its top k among labelled pixels only (k = ``top_k_percent`` of
them), the heatmap MSE averages over ``ctr_valid`` (where ``panoptic_targets`` knows the heatmap
target), the offset L1 over ``thing`` (uncut labelled instances) and the PointRend CE over the
sampled points that fall on labelled pixels. Without unlabelled pixels every term equals the dense
loss; a term with nothing labelled is 0 (still connected to the graph, with zero gradient).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.ignore import IGNORE_LABEL
from .models.pointrend import point_sample


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (with a zero gradient) where nothing is selected."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1)


class PanopticLoss(nn.Module):
    """The panoptic training loss: bootstrapped CE, heatmap MSE, offset L1 and PointRend CE, weighted.

    Parameters
    ----------
    ce_weight, mse_weight, l1_weight, pr_weight : float
        Weights of the semantic, heatmap, offset and PointRend terms.
    top_k_percent : float
        Fraction of the (labelled) pixels with the highest CE that the semantic term averages.

    Examples
    --------
    >>> import torch
    >>> out = {"sem_logits": torch.zeros(1, 1, 4, 4), "ctr_hmp": torch.zeros(1, 1, 4, 4),
    ...        "offsets": torch.zeros(1, 2, 4, 4)}
    >>> sem = torch.zeros(1, 4, 4, dtype=torch.long); sem[0, :2] = -1  # top half unlabelled
    >>> target = {"sem": sem, "ctr_hmp": torch.zeros(1, 1, 4, 4), "offsets": torch.zeros(1, 2, 4, 4)}
    >>> round(PanopticLoss()(out, target)[1]["ce"], 4)  # log(2) on the 8 labelled pixels
    0.6931
    """

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
        """Per-pixel CE; unlabelled pixels get a finite value (class 0) that callers leave out."""
        if logits.size(1) == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], (sem > 0).to(logits.dtype), reduction="none")
        return F.cross_entropy(logits, sem.long().clamp_min(0), reduction="none")

    def forward(
        self, out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms.

        Parameters
        ----------
        out : dict of torch.Tensor
            The model's outputs (``sem_logits``, ``ctr_hmp``, ``offsets``; ``sem_points`` and
            ``point_coords`` with PointRend).
        target : dict of torch.Tensor
            ``sem`` (N, H, W) with ``IGNORE_LABEL`` where unlabelled, ``ctr_hmp`` (N, 1, H, W),
            ``offsets`` (N, 2, H, W); optional ``ctr_valid`` (N, H, W) and ``thing`` (N, H, W) masks.

        Returns
        -------
        tuple
            The weighted total (a scalar tensor) and the terms as floats.
        """
        sem = target["sem"]
        labelled = sem != IGNORE_LABEL
        ce_pix = self._pixel_ce(out["sem_logits"].float(), sem).reshape(-1)
        flat = labelled.reshape(-1)
        n = int(flat.sum())
        if n == ce_pix.numel():
            kept = ce_pix
        else:
            kept = ce_pix[flat]
        if n == 0:
            ce = ce_pix.sum() * 0.0
        elif self.top_k_percent >= 1:
            ce = kept.mean()
        else:
            k = max(1, int(self.top_k_percent * n))
            ce = torch.topk(kept, k, sorted=False)[0].mean()
        hmp_ok = target.get("ctr_valid")
        hmp_ok = labelled if hmp_ok is None else hmp_ok.bool() & labelled
        mse = _masked_mean((out["ctr_hmp"].float() - target["ctr_hmp"]) ** 2, hmp_ok.unsqueeze(1))
        thing = (target["thing"] if "thing" in target else sem > 0).bool() & labelled
        l1_pix = F.l1_loss(out["offsets"].float(), target["offsets"], reduction="none")
        w = thing.unsqueeze(1).to(l1_pix.dtype).expand_as(l1_pix)
        l1 = (l1_pix * w).sum() / w.sum().clamp_min(1)
        total = self.ce_weight * ce + self.mse_weight * mse + self.l1_weight * l1
        terms = {"ce": ce, "mse": mse, "l1": l1}
        if "sem_points" in out:
            labels = point_sample(sem.unsqueeze(1).float(), out["point_coords"], mode="nearest")
            on = labels[:, 0] != IGNORE_LABEL  # (N, P): points on labelled pixels
            pts = out["sem_points"].float()
            if pts.size(1) == 1:
                pr_pix = F.binary_cross_entropy_with_logits(pts[:, 0], (labels[:, 0] > 0).float(), reduction="none")
            else:
                pr_pix = F.cross_entropy(pts, labels[:, 0].long().clamp_min(0), reduction="none")
            pr = _masked_mean(pr_pix, on)
            total = total + self.pr_weight * pr
            terms["pointrend_ce"] = pr
        return total, {k: float(v.detach()) for k, v in terms.items()}
