"""empanada's BiFPN, reproduced module for module so MitoNet_v1_mini's weights load unchanged.

Follows empanada-dl 0.1.7 ``empanada/models/decoders/bifpn.py`` (a simplification of
rwightman/efficientdet-pytorch). It differs from empanada_nb's own ``BiFPN`` (``panoptic_bifpn.py``):

- each direction (top-down, bottom-up) of a layer holds ONE fusion convolution that its ``ModuleList``
  lists once per node, so all nodes of a direction share (tie) their weights;
- the bottom-up pass resamples the layer inputs again with its own 1x1 convs instead of reusing
  the top-down ones;
- the fusion weights are one vector per direction, normalized once over the whole vector and then
  again over each adjacent pair (or triple).

Parameter names equal empanada's (``p6_resample``, ``bifpns.N.top_down_fpn.after_combines.M...``),
apart from ``sepconv`` (see ``empanada_format.KEY_RULES``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import Resample2d, separable_conv_bn_act


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=2, padding=1)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class TopDownFPN(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int):
        super().__init__()
        self.resamplings = nn.ModuleList(Resample2d(c, dim) for c in nins)
        conv = separable_conv_bn_act(dim, dim, 3, act=nn.SiLU(inplace=True))
        self.after_combines = nn.ModuleList(conv for _ in nins)  # the same module: tied, as in empanada
        self.weights = nn.Parameter(torch.ones(len(nins) + 1))
        self.eps = 1e-4

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:  # coarse -> fine
        w = F.relu(self.weights)
        w = w / (w.sum() + self.eps)
        out = [feats[0]]
        for i, (res, conv) in enumerate(zip(self.resamplings, self.after_combines)):
            w1, w2 = w[i], w[i + 1]
            fused = (w1 * _up(out[-1]) + w2 * res(feats[i + 1])) / (w1 + w2 + self.eps)
            out.append(conv(fused))
        return out


class BottomUpFPN(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int):
        super().__init__()
        self.resamplings = nn.ModuleList(Resample2d(c, dim) for c in nins)
        conv = separable_conv_bn_act(dim, dim, 3, act=nn.SiLU(inplace=True))
        self.after_combines = nn.ModuleList(conv for _ in nins)
        self.weights = nn.Parameter(torch.ones(len(nins) + 1))
        self.eps = 1e-4
        self.n = len(nins)

    def forward(self, feats: list[torch.Tensor], td: list[torch.Tensor]) -> list[torch.Tensor]:  # fine -> coarse
        w = F.relu(self.weights)
        w = w / (w.sum() + self.eps)
        out = [td[0]]
        for i, (res, conv) in enumerate(zip(self.resamplings, self.after_combines)):
            if i < self.n - 1:
                w1, w2, w3 = w[i], w[i + 1], w[i + 2]
                num = w1 * _down(out[-1]) + w2 * res(feats[i]) + w3 * td[i + 1]
                fused = num / (w1 + w2 + w3 + self.eps)
            else:
                w1, w2 = w[i], w[i + 1]
                fused = (w1 * _down(out[-1]) + w2 * res(feats[i])) / (w1 + w2 + self.eps)
            out.append(conv(fused))
        return out


class BiFPNLayer(nn.Module):
    def __init__(self, nins: Sequence[int], dim: int):
        super().__init__()
        nins = list(nins)
        self.top_down_fpn = TopDownFPN(nins[::-1][1:], dim)
        self.bottom_up_fpn = BottomUpFPN(nins[1:], dim)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        td = self.top_down_fpn(feats[::-1])
        return self.bottom_up_fpn(feats[1:], td[::-1])


class EmpanadaBiFPN(nn.Module):
    """Drop-in for ``BiFPN`` (``panoptic_bifpn.py``) (same inputs and outputs, empanada's layout)."""

    def __init__(self, nins: Sequence[int], dim: int, layers: int = 3):
        super().__init__()
        self.p6_resample = Resample2d(nins[-1], dim)
        nins = list(nins) + [dim, dim]
        self.bifpns = nn.ModuleList(BiFPNLayer(nins if i == 0 else [dim] * len(nins), dim) for i in range(layers))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p6 = _down(self.p6_resample(feats[-1]))
        feats = feats + [p6, _down(p6)]
        for layer in self.bifpns:
            feats = layer(feats)
        return feats
