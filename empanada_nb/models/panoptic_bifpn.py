"""PanopticBiFPN: Panoptic-DeepLab heads on a BiFPN neck (Tan et al. 2020, arXiv:1911.09070),
the architecture of empanada's MitoNet_v1_mini.

Encoder stages 2-4 (1/8..1/32) plus two extra levels give P3-P7; a transposed-conv decoder
brings the fused pyramid back to 1/4 with the stage-1 features (P2). Inputs must be divisible
by 128 (P7). Unlike empanada, each fusion node owns its convolution (empanada reuses one
module per FPN direction, silently tying their weights). ``bifpn="empanada"`` builds empanada's
layout instead (``bifpn_empanada.py``), which MitoNet_v1_mini's weights need.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bifpn_empanada import EmpanadaBiFPN
from .blocks import PanopticHead, Resample2d, conv_transpose_bn_act, semantic_channels, separable_conv_bn_act
from .encoders import Encoder
from .panoptic_deeplab import PanopticBase
from .pointrend import PointRendSemSegHead

BIFPN_VARIANTS = ("empanada_nb", "empanada")


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
        acc = w[0] * xs[0]
        for i in range(1, len(xs)):
            acc = acc + w[i] * xs[i]
        return self.conv(acc)


class BiFPNLayer(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int):
        super().__init__()
        n = len(nins)
        self.resample = nn.ModuleList(Resample2d(c, dim) for c in nins)
        self.td = nn.ModuleList(_WeightedFuse(2, dim) for _ in range(n - 1))
        self.bu = nn.ModuleList(_WeightedFuse(3 if i < n - 2 else 2, dim) for i in range(n - 1))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p: list[torch.Tensor] = []
        for i, r in enumerate(self.resample):  # fine -> coarse
            p.append(r(feats[i]))
        n = len(p)
        # top-down from the coarsest level: node i (n-2 .. 0) is self.td[i]; TorchScript cannot index a
        # ModuleList with a variable, so the nodes are visited in order and each result is kept
        # until all have run (node i needs node i+1, so run n-1 passes over the list).
        td: list[torch.Tensor] = [p[i] for i in range(n)]
        for k in range(n - 1):
            i_target = n - 2 - k
            for i, fuse in enumerate(self.td):
                if i == i_target:
                    td[i] = fuse([p[i], _up(td[i + 1])])
        out = [td[0]]
        for i, fuse in enumerate(self.bu):  # bottom-up: node i+1
            j = i + 1
            if j < n - 1:
                out.append(fuse([_down(out[-1]), p[j], td[j]]))
            else:
                out.append(fuse([_down(out[-1]), p[j]]))
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
        feats = feats + [p6, _down(p6)]
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
        for i, up in enumerate(self.ups):
            x = torch.cat([up(x), feats[i + 1]], 1)
        return self.fusion(x)


class PanopticBiFPN(PanopticBase):
    """Same outputs as ``PanopticDeepLab``; needs inputs divisible by 128.

    ``bifpn``: ``"empanada_nb"`` (default: one convolution per fusion node) or ``"empanada"``
    (empanada's tied layout, needed for MitoNet_v1_mini). ``ins_decoder=False`` shares the semantic
    BiFPN and decoder with the instance heads (empanada's default).
    """

    architecture = "PanopticBiFPN"
    padding_factor = 128

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 1,
        fpn_dim: int = 128,
        fpn_layers: int = 3,
        pointrend: bool = False,
        bifpn: str = "empanada_nb",
        ins_decoder: bool = True,
    ):
        super().__init__()
        if bifpn not in BIFPN_VARIANTS:
            raise ValueError(f"bifpn must be one of {', '.join(BIFPN_VARIANTS)}, got {bifpn!r}")
        self.num_classes = num_classes
        self.encoder = Encoder(encoder, output_stride=32)
        w = self.encoder.widths
        fpn = EmpanadaBiFPN if bifpn == "empanada" else BiFPN
        self.p2_resample = Resample2d(w[0], fpn_dim)
        self.semantic_fpn = fpn(w[1:], fpn_dim, fpn_layers)
        self.semantic_decoder = BiFPNDecoder(fpn_dim)
        self.instance_fpn = fpn(w[1:], fpn_dim, fpn_layers) if ins_decoder else None
        self.instance_decoder = BiFPNDecoder(fpn_dim) if ins_decoder else None
        n_sem = semantic_channels(num_classes)
        self.semantic_head = PanopticHead(fpn_dim, n_sem)
        self.ins_center = PanopticHead(fpn_dim, 1)
        self.ins_xy = PanopticHead(fpn_dim, 2)
        self.semantic_pr = PointRendSemSegHead(fpn_dim, n_sem) if pointrend else None
        self.arch_kwargs = {"fpn_dim": fpn_dim, "fpn_layers": fpn_layers, "bifpn": bifpn, "ins_decoder": ins_decoder}

    def forward(self, x: torch.Tensor, render_steps: int = 2, interpolate_ins: bool = True) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        p2 = self.p2_resample(feats[1])
        top = feats[2:]
        sem_x = self.semantic_decoder(([p2] + self.semantic_fpn(top))[::-1])
        ins_x = sem_x
        if self.instance_fpn is not None and self.instance_decoder is not None:
            ins_x = self.instance_decoder(([p2] + self.instance_fpn(top))[::-1])
        return self._apply_heads(sem_x, ins_x, render_steps, interpolate_ins)
