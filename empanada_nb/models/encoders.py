"""torchvision encoders adapted to one input channel and exposing a feature pyramid.

Each encoder keeps the torchvision model itself as ``self.body`` so that state dicts in
torchvision keys (such as the CEM pretrained weights) load without renaming, and names its
stem and four stages explicitly so that finetunable layers map onto real modules.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
REGNETS = ("regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf")
ENCODERS = RESNETS + REGNETS


def _dilate_stage(stage: nn.Module, dilation: int = 2) -> None:
    """Turn a stride-2 stage into a stride-1 dilated one (output stride 32 -> 16).

    Works for BasicBlock, Bottleneck and RegNet blocks alike, unlike torchvision's
    ``replace_stride_with_dilation`` which refuses BasicBlock.
    """
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            if m.stride == (2, 2):
                m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = (dilation, dilation)
                m.padding = (dilation, dilation)


class Encoder(nn.Module):
    """Wraps a torchvision classification net. ``forward`` returns [stem, stage1..stage4]."""

    def __init__(self, name: str, output_stride: int = 32):
        super().__init__()
        if name not in ENCODERS:
            raise ValueError(f"Unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
        if output_stride not in (16, 32):
            raise ValueError("output_stride must be 16 or 32")
        self.name = name
        body = getattr(torchvision.models, name)(weights=None)
        if name in RESNETS:
            old = body.conv1
            body.conv1 = nn.Conv2d(1, old.out_channels, 7, 2, 3, bias=False)
            body.fc, body.avgpool = nn.Identity(), nn.Identity()  # no weights; keeps body scriptable
            self.stem_names = ("conv1", "bn1")
            self.stage_names = ("layer1", "layer2", "layer3", "layer4")
        else:
            old = body.stem[0]
            body.stem[0] = nn.Conv2d(1, old.out_channels, 3, 2, 1, bias=False)
            body.fc, body.avgpool = nn.Identity(), nn.Identity()  # no weights; keeps body scriptable
            self.stem_names = ("stem",)
            self.stage_names = tuple(f"trunk_output.block{i}" for i in range(1, 5))
        self.body = body
        if output_stride == 16:
            _dilate_stage(self.stage(4))
        self.output_stride = output_stride
        self.widths = [self._width(self.stage(i)) for i in range(1, 5)]
        # TorchScript compiles ``forward`` for the class, so each family gets a subclass with its
        # own forward (the parameters, and so the state dict, stay exactly the same).
        self.__class__ = _ResNetEncoder if name in RESNETS else _RegNetEncoder

    @staticmethod
    def _width(stage: nn.Module) -> int:
        return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

    def stage(self, i: int) -> nn.Module:
        """Stage ``i`` (1..4) of the encoder: ``layer{i}`` on ResNets, ``block{i}`` on RegNets."""
        return self.body.get_submodule(self.stage_names[i - 1])

    def stem(self) -> list[nn.Module]:
        return [self.body.get_submodule(n) for n in self.stem_names]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError  # replaced by the family subclass in __init__


class _ResNetEncoder(Encoder):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.body
        x = b.relu(b.bn1(b.conv1(x)))
        feats = [x]
        x = b.layer1(b.maxpool(x))
        feats.append(x)
        x = b.layer2(x)
        feats.append(x)
        x = b.layer3(x)
        feats.append(x)
        x = b.layer4(x)
        feats.append(x)
        return feats


class _RegNetEncoder(Encoder):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.body
        x = b.stem(x)
        feats = [x]
        t = b.trunk_output
        x = t.block1(x)
        feats.append(x)
        x = t.block2(x)
        feats.append(x)
        x = t.block3(x)
        feats.append(x)
        x = t.block4(x)
        feats.append(x)
        return feats
