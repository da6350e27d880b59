"""Model builders, finetunable-layer control and patch-size validation."""

from __future__ import annotations

import torch.nn as nn

from .cem import load_encoder_weights
from .panoptic_bifpn import PanopticBiFPN
from .panoptic_deeplab import PanopticDeepLab

ARCHITECTURES = {"PanopticDeepLab": PanopticDeepLab, "PanopticBiFPN": PanopticBiFPN}
FINETUNABLE_LAYERS = ("none", "stage1", "stage2", "stage3", "stage4", "all")


def build_model(
    architecture: str,
    encoder: str = "resnet50",
    num_classes: int = 1,
    pointrend: bool = False,
    pretrained: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a PanopticDeepLab or PanopticBiFPN with a one-channel torchvision encoder.

    ``pretrained`` is a URL or path of CEM-format encoder weights (a dict with ``state_dict`` in
    torchvision keys and ``norms``); the norms are stored on ``model.norms``.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1 (foreground classes, background excluded)")
    model = ARCHITECTURES[architecture](encoder=encoder, num_classes=num_classes, pointrend=pointrend, **kwargs)
    model.encoder_name = encoder
    model.pointrend = pointrend
    model.norms = {"mean": 0.5, "std": 0.5}
    if pretrained:
        model.norms = load_encoder_weights(model.encoder, pretrained)
    return model


def _stages_to_train(layers: str) -> list[int]:
    if layers == "none":
        return []
    if layers == "all":
        return [1, 2, 3, 4]
    return list(range(int(layers[-1]), 5))


def set_finetunable(model: nn.Module, layers: str) -> int:
    """Freeze the encoder except the named stages; returns the number of trainable parameters.

    ``"none"``: encoder frozen; ``"stageN"``: stages N..4 train; ``"all"``: stem too.
    Decoders and heads always train. Frozen BatchNorm layers are also put in eval mode by the
    training loop (see :func:`freeze_batchnorm`).
    """
    if layers not in FINETUNABLE_LAYERS:
        raise ValueError(f"finetunable layers must be one of {', '.join(FINETUNABLE_LAYERS)}, got {layers!r}")
    for p in model.parameters():
        p.requires_grad_(True)
    enc = model.encoder
    for p in enc.parameters():
        p.requires_grad_(False)
    train = _stages_to_train(layers)
    for i in train:
        for p in enc.stage(i).parameters():
            p.requires_grad_(True)
    if layers == "all":
        for m in enc.stem():
            for p in m.parameters():
                p.requires_grad_(True)
    model.finetunable_layers = layers
    return count_parameters(model, trainable=True)


def count_parameters(model: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def valid_patch_sizes(size: int, factor: int) -> tuple:
    lo = max(factor, (size // factor) * factor)
    hi = lo + factor if lo < size or size < factor else lo
    return lo, hi


def check_patch_size(patch_size: int, model_or_arch: nn.Module | str) -> None:
    """Raise a ValueError naming the nearest valid sizes if ``patch_size`` cannot go through the model."""
    factor = (
        model_or_arch.padding_factor
        if isinstance(model_or_arch, nn.Module)
        else ARCHITECTURES[model_or_arch].padding_factor
    )
    name = model_or_arch.architecture if isinstance(model_or_arch, nn.Module) else model_or_arch
    if patch_size <= 0 or patch_size % factor:
        lo, hi = valid_patch_sizes(patch_size, factor)
        near = f"{lo} or {hi}" if lo != hi else f"{lo}"
        raise ValueError(f"patch size {patch_size} is not divisible by {factor}, which {name} needs; use {near}")
