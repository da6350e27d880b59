"""Small building blocks shared by the architectures (after empanada's ``models/blocks.py``)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


def semantic_channels(num_classes: int) -> int:
    """Channels of ``sem_logits`` for ``num_classes`` classes: 1 (sigmoid) or ``num_classes + 1`` (softmax).

    Parameters
    ----------
    num_classes : int
        Classes without the background.

    Returns
    -------
    int
        1 for one class, else ``num_classes + 1`` (channel 0 is the background).

    Examples
    --------
    >>> semantic_channels(1), semantic_channels(3)
    (1, 4)
    """
    return 1 if int(num_classes) == 1 else int(num_classes) + 1


class SeparableConv2d(nn.Sequential):
    """Depthwise then pointwise convolution."""

    def __init__(self, nin: int, nout: int, kernel_size: int = 3, stride: int = 1, bias: bool = False):
        pad = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(nin, nin, kernel_size, stride=stride, padding=pad, groups=nin, bias=bias),
            nn.Conv2d(nin, nout, 1, bias=bias),
        )


def conv_bn_act(nin: int, nout: int, kernel_size: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [
        nn.Conv2d(nin, nout, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
        nn.BatchNorm2d(nout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def separable_conv_bn_act(nin: int, nout: int, kernel_size: int, act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(
        SeparableConv2d(nin, nout, kernel_size), nn.BatchNorm2d(nout), act if act is not None else nn.ReLU(inplace=True)
    )


def conv_transpose_bn_act(nin: int, nout: int, scale: int = 2) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(nin, nout, scale, stride=scale, bias=False), nn.BatchNorm2d(nout), nn.ReLU(inplace=True)
    )


class Resample2d(nn.Module):
    """1x1 conv + BN to change channels (identity when they already match)."""

    def __init__(self, nin: int, nout: int):
        super().__init__()
        self.conv = nn.Identity() if nin == nout else conv_bn_act(nin, nout, 1, act=False)

    def forward(self, x):
        return self.conv(x)


class PanopticHead(nn.Module):
    """5x5 separable conv then a 1x1 predictor (Panoptic-DeepLab head)."""

    def __init__(self, nin: int, nout: int):
        super().__init__()
        self.head = nn.Sequential(separable_conv_bn_act(nin, nin, 5), nn.Conv2d(nin, nout, 1))
        nn.init.normal_(self.head[1].weight, std=0.001)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, x):
        return self.head(x)


def upsample(x, scale: int = 4):
    return F.interpolate(x, scale_factor=float(scale), mode="bilinear", align_corners=True)
