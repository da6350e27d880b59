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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res: list[torch.Tensor] = []
        for b in self.branches:
            res.append(b(x))
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
        for i, (proj, fuse) in enumerate(zip(self.project, self.fuse)):
            low = proj(feats[self.low_level_stages[i]])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
            x = fuse(torch.cat([x, low], 1))
        return x


class PanopticBase(nn.Module):
    """Heads shared by both architectures, and the forward signature empanada's engines call.

    ``forward(x, render_steps=2, interpolate_ins=True)`` is the signature of empanada's exported
    (TorchScript) models (empanada ``models/quantization/panoptic_deeplab.py``), so a scripted
    empanada_nb model runs in ``PanopticDeepLabRenderEngine`` unchanged.
    """

    def _apply_heads(
        self, sem_x: torch.Tensor, ins_x: torch.Tensor, render_steps: int, interpolate_ins: bool
    ) -> dict[str, torch.Tensor]:
        """Apply the three heads; decoder features are at 1/4 resolution."""
        sem = self.semantic_head(sem_x)
        ctr = self.ins_center(ins_x)
        off = self.ins_xy(ins_x)
        out: dict[str, torch.Tensor] = {}
        if self.semantic_pr is None:
            out["sem_logits"] = upsample(sem)
        elif self.training:
            pr_out = self.semantic_pr(sem, sem_x, -1)
            out["sem_logits"] = upsample(sem)
            out["sem_points"] = pr_out["point_logits"]
            out["point_coords"] = pr_out["point_coords"]
        else:
            out["sem_logits"] = self.semantic_pr(sem, sem_x, render_steps)["sem_seg_logits"]
        up = interpolate_ins or self.training
        out["ctr_hmp"] = upsample(ctr) if up else ctr
        out["offsets"] = upsample(off) if up else off
        return out


class PanopticDeepLab(PanopticBase):
    """Outputs (full resolution): ``sem_logits`` (N,S,H,W), ``ctr_hmp`` (N,1,H,W), ``offsets`` (N,2,H,W).

    S is 1 for one class (sigmoid) and ``num_classes + 1`` otherwise (softmax, channel 0 = background).
    ``low_level_stages``/``low_level_project`` choose the encoder stages fused on the way up (empanada's
    ``low_level_stages``/``low_level_channels_project``; MitoNet_v1 uses ``(1,)``/``(32,)``), and
    ``ins_decoder=False`` shares the semantic decoder with the instance heads as empanada's default does.
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
        low_level_stages: Sequence[int] = (3, 2, 1),
        ins_decoder: bool = True,
    ):
        super().__init__()
        if len(low_level_stages) != len(low_level_project) or not all(1 <= s <= 3 for s in low_level_stages):
            raise ValueError("low_level_stages must be encoder stages 1..3, one per low_level_project entry")
        self.num_classes = num_classes
        self.encoder = Encoder(encoder, output_stride=16)
        w = self.encoder.widths
        stages = tuple(int(s) for s in low_level_stages)
        low = [w[s - 1] for s in stages]
        self.semantic_decoder = PanopticDeepLabDecoder(
            w[-1], decoder_channels, low, low_level_project, stages, aspp_dropout
        )
        self.instance_decoder = (
            PanopticDeepLabDecoder(
                w[-1], decoder_channels, low, [int(p * ins_ratio) for p in low_level_project], stages, aspp_dropout
            )
            if ins_decoder
            else None
        )
        n_sem = semantic_channels(num_classes)
        self.semantic_head = PanopticHead(decoder_channels, n_sem)
        self.ins_center = PanopticHead(decoder_channels, 1)
        self.ins_xy = PanopticHead(decoder_channels, 2)
        self.semantic_pr = PointRendSemSegHead(decoder_channels, n_sem) if pointrend else None
        self.arch_kwargs = {
            "decoder_channels": decoder_channels,
            "low_level_project": [int(p) for p in low_level_project],
            "low_level_stages": list(stages),
            "ins_ratio": ins_ratio,
            "ins_decoder": ins_decoder,
        }

    def decoder_modules(self) -> list[nn.Module]:
        return [m for n, m in self.named_children() if n != "encoder" and m is not None]

    def forward(self, x: torch.Tensor, render_steps: int = 2, interpolate_ins: bool = True) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        sem_x = self.semantic_decoder(feats)
        ins_x = sem_x
        if self.instance_decoder is not None:
            ins_x = self.instance_decoder(feats)
        return self._apply_heads(sem_x, ins_x, render_steps, interpolate_ins)
