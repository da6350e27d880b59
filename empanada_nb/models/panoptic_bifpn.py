"""PanopticBiFPN: Panoptic-DeepLab heads on a BiFPN neck (Tan et al. 2020, arXiv:1911.09070),
the architecture of empanada's MitoNet_v1_mini.

Encoder stages 2-4 (1/8..1/32) plus two extra levels give P3-P7; a transposed-conv decoder
brings the fused pyramid back to 1/4 with the stage-1 features (P2). Inputs must be divisible
by 128 (P7). Unlike empanada, each fusion node owns its convolution (empanada reuses one
module per FPN direction, silently tying their weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import PanopticHead, Resample2d, conv_transpose_bn_act, semantic_channels, separable_conv_bn_act
from .encoders import Encoder
from .panoptic_deeplab import _heads
from .pointrend import PointRendSemSegHead


def _down(x):
    return F.max_pool2d(x, 3, stride=2, padding=1)


def _up(x):
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class _WeightedFuse(nn.Module):
    """Fast normalized fusion of n inputs followed by a separable conv."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))
        self.conv = separable_conv_bn_act(dim, dim, 3, act=nn.SiLU(inplace=True))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        w = F.relu(self.w)
        w = w / (w.sum() + 1e-4)
        return self.conv(sum(wi * xi for wi, xi in zip(w, xs)))


class BiFPNLayer(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int):
        super().__init__()
        n = len(nins)
        self.resample = nn.ModuleList(Resample2d(c, dim) for c in nins)
        self.td = nn.ModuleList(_WeightedFuse(2, dim) for _ in range(n - 1))
        self.bu = nn.ModuleList(_WeightedFuse(3 if i < n - 2 else 2, dim) for i in range(n - 1))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p = [r(f) for r, f in zip(self.resample, feats)]  # fine -> coarse
        n = len(p)
        td = [p[-1]]
        for i in range(n - 2, -1, -1):  # top-down
            td.insert(0, self.td[i]([p[i], _up(td[0])]))
        out = [td[0]]
        for i in range(1, n):  # bottom-up
            xs = [_down(out[-1]), p[i]] + ([td[i]] if i < n - 1 else [])
            out.append(self.bu[i - 1](xs))
        return out


class BiFPN(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int, layers: int = 3):
        super().__init__()
        self.p6 = Resample2d(nins[-1], dim)
        self.layers = nn.ModuleList(
            BiFPNLayer(list(nins) + [dim, dim] if i == 0 else [dim] * (len(nins) + 2), dim) for i in range(layers)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p6 = _down(self.p6(feats[-1]))
        feats = list(feats) + [p6, _down(p6)]
        for layer in self.layers:
            feats = layer(feats)
        return feats


class BiFPNDecoder(nn.Module):
    """Upsample P7 to P2 with transposed convs, concatenating each level on the way."""

    def __init__(self, dim: int, n_scales: int = 5):
        super().__init__()
        self.ups = nn.ModuleList(conv_transpose_bn_act(dim if i == 0 else 2 * dim, dim) for i in range(n_scales))
        self.fusion = separable_conv_bn_act(2 * dim, dim, 5)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:  # coarse -> fine
        x = feats[0]
        for up, skip in zip(self.ups, feats[1:]):
            x = torch.cat([up(x), skip], 1)
        return self.fusion(x)


class PanopticBiFPN(nn.Module):
    """Same outputs as ``PanopticDeepLab``; needs inputs divisible by 128."""

    architecture = "PanopticBiFPN"
    padding_factor = 128

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 1,
        fpn_dim: int = 128,
        fpn_layers: int = 3,
        pointrend: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = Encoder(encoder, output_stride=32)
        w = self.encoder.widths
        self.p2_resample = Resample2d(w[0], fpn_dim)
        self.semantic_fpn = BiFPN(w[1:], fpn_dim, fpn_layers)
        self.semantic_decoder = BiFPNDecoder(fpn_dim)
        self.instance_fpn = BiFPN(w[1:], fpn_dim, fpn_layers)
        self.instance_decoder = BiFPNDecoder(fpn_dim)
        n_sem = semantic_channels(num_classes)
        self.semantic_head = PanopticHead(fpn_dim, n_sem)
        self.ins_center = PanopticHead(fpn_dim, 1)
        self.ins_xy = PanopticHead(fpn_dim, 2)
        self.semantic_pr = PointRendSemSegHead(fpn_dim, n_sem) if pointrend else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        p2 = self.p2_resample(feats[1])
        sem_x = self.semantic_decoder(([p2] + self.semantic_fpn(feats[2:]))[::-1])
        ins_x = self.instance_decoder(([p2] + self.instance_fpn(feats[2:]))[::-1])
        return _heads(self, sem_x, ins_x)
