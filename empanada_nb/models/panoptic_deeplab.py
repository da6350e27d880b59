"""Panoptic-DeepLab (Cheng et al. 2020, arXiv:1911.10194) as configured in empanada's MitoNet.

ResNet/RegNet encoder at output stride 16, separate semantic and instance decoders, each with
its own ASPP, and three heads: semantic logits, center heatmap and (dy, dx) center offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import PanopticHead, conv_bn_act, semantic_channels, separable_conv_bn_act, upsample
from .encoders import Encoder
from .pointrend import PointRendSemSegHead


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3), rates (2, 4, 6) like empanada."""

    def __init__(self, nin: int, nout: int, rates: Sequence[int] = (2, 4, 6), dropout: float = 0.1):
        super().__init__()
        branches = [conv_bn_act(nin, nout, 1)]
        for r in rates:
            branches.append(
                nn.Sequential(
                    nn.Conv2d(nin, nout, 3, padding=r, dilation=r, bias=False),
                    nn.BatchNorm2d(nout),
                    nn.ReLU(inplace=True),
                )
            )
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(nin, nout, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_act((len(rates) + 2) * nout, nout, 1), nn.Dropout(dropout))

    def forward(self, x):
        res = [b(x) for b in self.branches]
        res.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.project(torch.cat(res, 1))


class PanopticDeepLabDecoder(nn.Module):
    def __init__(
        self,
        nin: int,
        channels: int,
        low_level_widths: Sequence[int],
        project: Sequence[int],
        low_level_stages: Sequence[int] = (3, 2, 1),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.aspp = ASPP(nin, channels, dropout=dropout)
        self.low_level_stages = list(low_level_stages)
        self.project = nn.ModuleList(conv_bn_act(w, p, 1) for w, p in zip(low_level_widths, project))
        self.fuse = nn.ModuleList(separable_conv_bn_act(channels + p, channels, 5) for p in project)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.aspp(feats[-1])
        for stage, proj, fuse in zip(self.low_level_stages, self.project, self.fuse):
            low = proj(feats[stage])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
            x = fuse(torch.cat([x, low], 1))
        return x


class PanopticDeepLab(nn.Module):
    """Outputs (full resolution): ``sem_logits`` (N,S,H,W), ``ctr_hmp`` (N,1,H,W), ``offsets`` (N,2,H,W).

    S is 1 for one class (sigmoid) and ``num_classes + 1`` otherwise (softmax, channel 0 = background).
    """

    architecture = "PanopticDeepLab"
    padding_factor = 16

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 1,
        decoder_channels: int = 256,
        low_level_project: Sequence[int] = (128, 64, 32),
        ins_ratio: float = 0.5,
        pointrend: bool = False,
        aspp_dropout: float = 0.1,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = Encoder(encoder, output_stride=16)
        w = self.encoder.widths
        stages = (3, 2, 1)
        low = [w[s - 1] for s in stages]
        self.semantic_decoder = PanopticDeepLabDecoder(
            w[-1], decoder_channels, low, low_level_project, stages, aspp_dropout
        )
        self.instance_decoder = PanopticDeepLabDecoder(
            w[-1], decoder_channels, low, [int(p * ins_ratio) for p in low_level_project], stages, aspp_dropout
        )
        n_sem = semantic_channels(num_classes)
        self.semantic_head = PanopticHead(decoder_channels, n_sem)
        self.ins_center = PanopticHead(decoder_channels, 1)
        self.ins_xy = PanopticHead(decoder_channels, 2)
        self.semantic_pr = PointRendSemSegHead(decoder_channels, n_sem) if pointrend else None

    def decoder_modules(self) -> list[nn.Module]:
        return [m for n, m in self.named_children() if n != "encoder" and m is not None]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        sem_x = self.semantic_decoder(feats)
        ins_x = self.instance_decoder(feats)
        return _heads(self, sem_x, ins_x)


def _heads(model: nn.Module, sem_x: torch.Tensor, ins_x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Apply the three heads; decoder features are at 1/4 resolution."""
    sem = model.semantic_head(sem_x)
    out = {"ctr_hmp": upsample(model.ins_center(ins_x)), "offsets": upsample(model.ins_xy(ins_x))}
    if model.semantic_pr is None:
        out["sem_logits"] = upsample(sem)
    elif model.training:
        pr = model.semantic_pr(sem, sem_x)
        out["sem_logits"] = upsample(sem)
        out["sem_points"], out["point_coords"] = pr["point_logits"], pr["point_coords"]
    else:
        out["sem_logits"] = model.semantic_pr(sem, sem_x)["sem_seg_logits"]
    return out
