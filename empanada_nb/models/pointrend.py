"""PointRend semantic refinement (Kirillov et al. 2020, arXiv:1912.08193), as empanada uses it.

Training: predictions at uncertain, randomly oversampled points are returned for a point loss.
Inference: the coarse (1/4) logits are upsampled twice by 2x, each time re-predicting the most
uncertain grid points.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def point_sample(features: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``features`` (N,C,H,W) at ``coords`` (N,P,2) in [0,1] (x, y) -> (N,C,P)."""
    out = F.grid_sample(features, 2.0 * coords.unsqueeze(2) - 1.0, mode=mode, align_corners=False)
    return out.squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    if logits.size(1) == 1:
        return -logits.abs()
    top2 = torch.topk(logits, k=2, dim=1)[0]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


class PointRendSemSegHead(nn.Module):
    def __init__(
        self,
        nin: int,
        num_classes: int,
        num_fc: int = 3,
        train_num_points: int = 1024,
        oversample_ratio: int = 3,
        importance_sample_ratio: float = 0.75,
        subdivision_steps: int = 2,
        subdivision_num_points: int = 8192,
    ):
        super().__init__()
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        layers, cin = [], nin + num_classes
        for _ in range(num_fc):
            conv = nn.Conv1d(cin, nin, 1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            cin = nin + num_classes
        self.fc = nn.ModuleList(layers)
        self.predictor = nn.Conv1d(cin, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def point_head(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = torch.cat([fine, coarse], 1)
        for fc in self.fc:
            x = torch.cat([F.relu(fc(x)), coarse], 1)
        return self.predictor(x)

    def forward(self, coarse: torch.Tensor, features: torch.Tensor, steps: int = -1) -> dict[str, torch.Tensor]:
        """``steps`` < 0 uses ``subdivision_steps`` (empanada passes ``render_steps`` the same way)."""
        if self.training:
            n = coarse.shape[0]
            with torch.no_grad():
                k = int(self.train_num_points * self.oversample_ratio)
                cand = torch.rand(n, k, 2, device=coarse.device)
                unc = uncertainty(point_sample(coarse, cand))[:, 0]
                n_imp = int(self.importance_sample_ratio * self.train_num_points)
                idx = torch.topk(unc, n_imp, dim=1)[1]
                coords = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
                rand = torch.rand(n, self.train_num_points - n_imp, 2, device=coarse.device)
                coords = torch.cat([coords, rand], 1)
            logits = self.point_head(point_sample(features, coords), point_sample(coarse, coords))
            return {"sem_seg_logits": coarse, "point_logits": logits, "point_coords": coords}
        logits = coarse
        for _ in range(self.subdivision_steps if steps < 0 else steps):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            n, c, h, w = logits.shape
            unc = uncertainty(logits).view(n, h * w)
            p = min(h * w, self.subdivision_num_points)
            idx = torch.topk(unc, p, dim=1)[1]
            # grid-cell centres written as empanada's get_uncertain_point_coords_on_grid does, so the
            # sampled coordinates (and the refined logits) agree bit for bit
            ws, hs = 1.0 / float(w), 1.0 / float(h)
            coords = torch.stack(
                [0.5 * ws + ws * (idx % w).float(), 0.5 * hs + hs * torch.div(idx, w, rounding_mode="floor").float()],
                -1,
            )
            pl = self.point_head(point_sample(features, coords), point_sample(coarse, coords))
            logits = logits.reshape(n, c, h * w).scatter(2, idx.unsqueeze(1).expand(-1, c, -1), pl).view(n, c, h, w)
        return {"sem_seg_logits": logits}
