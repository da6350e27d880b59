"""Model builders, finetunable-layer control and patch-size validation."""

from __future__ import annotations

import torch.nn as nn

from .cem import load_encoder_weights, resolve_pretrained
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

    The model follows the contract in ``docs/dev/architecture.md``: ``model(x)`` with ``x`` float32
    ``(N, 1, H, W)`` returns ``sem_logits``, ``ctr_hmp`` and ``offsets`` at full resolution.

    Parameters
    ----------
    architecture : {"PanopticDeepLab", "PanopticBiFPN"}
        The architecture (``ARCHITECTURES``).
    encoder : str
        A torchvision encoder name from ``ENCODERS`` (resnet18/34/50/101, regnet_y_*).
    num_classes : int
        Foreground classes (background excluded).
    pointrend : bool
        Add a PointRend semantic refinement head.
    pretrained : str, optional
        URL, path or ``CEM_URLS`` key of CEM-format encoder weights (a dict with ``state_dict`` in
        torchvision keys and ``norms``), or ``"auto"`` (CEM1.5M for ResNet-50, none for other
        encoders); the norms are stored on ``model.norms``.
    **kwargs
        Passed to the architecture's constructor.

    Returns
    -------
    torch.nn.Module
        The model, with ``architecture``, ``padding_factor``, ``num_classes`` and ``norms``.

    Raises
    ------
    ValueError
        When ``architecture`` is unknown or ``num_classes < 1``.

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18").eval()
    >>> model.padding_factor, model.norms
    (16, {'mean': 0.5, 'std': 0.5})
    >>> with torch.no_grad():
    ...     out = model(torch.zeros(1, 1, 64, 64))
    >>> {k: tuple(v.shape) for k, v in sorted(out.items())}
    {'ctr_hmp': (1, 1, 64, 64), 'offsets': (1, 2, 64, 64), 'sem_logits': (1, 1, 64, 64)}
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1 (foreground classes, background excluded)")
    model = ARCHITECTURES[architecture](encoder=encoder, num_classes=num_classes, pointrend=pointrend, **kwargs)
    model.encoder_name = encoder
    model.pointrend = pointrend
    model.norms = {"mean": 0.5, "std": 0.5}
    source = resolve_pretrained(pretrained, encoder)
    if source:
        model.norms = load_encoder_weights(model.encoder, source)
    return model


def _stages_to_train(layers: str) -> list[int]:
    if layers == "none":
        return []
    if layers == "all":
        return [1, 2, 3, 4]
    return list(range(int(layers[-1]), 5))


def set_finetunable(model: nn.Module, layers: str) -> int:
    """Freeze the encoder except the named stages; returns the number of trainable parameters.

    Decoders and heads always train. Frozen BatchNorm layers are also put in eval mode by the
    training loop (``training.loop.set_train_mode``).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model`` (or ``load_model``).
    layers : {"none", "stage1", "stage2", "stage3", "stage4", "all"}
        ``"none"``: encoder frozen; ``"stageN"``: stages N..4 train; ``"all"``: the stem too.

    Returns
    -------
    int
        Number of trainable parameters after the change.

    Raises
    ------
    ValueError
        When ``layers`` is not one of ``FINETUNABLE_LAYERS``.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> frozen = enb.set_finetunable(model, "none")
    >>> frozen < enb.set_finetunable(model, "stage4") < enb.count_parameters(model)
    True
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
    """Number of parameters of ``model`` (only those that train with ``trainable=True``).

    Parameters
    ----------
    model : torch.nn.Module
        Any torch module.
    trainable : bool
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        Number of scalar parameters.

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> layer = torch.nn.Linear(3, 2)
    >>> enb.count_parameters(layer)
    8
    >>> _ = layer.bias.requires_grad_(False)
    >>> enb.count_parameters(layer, trainable=True)
    6
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def valid_patch_sizes(size: int, factor: int) -> tuple:
    lo = max(factor, (size // factor) * factor)
    hi = lo + factor if lo < size or size < factor else lo
    return lo, hi


def check_patch_size(patch_size: int, model_or_arch: nn.Module | str) -> None:
    """Raise a ValueError naming the nearest valid sizes if ``patch_size`` cannot go through the model.

    Parameters
    ----------
    patch_size : int
        Training patch (or image) side in pixels.
    model_or_arch : torch.nn.Module or str
        A model, or an architecture name from ``ARCHITECTURES``.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When ``patch_size`` is not a positive multiple of the model's ``padding_factor``
        (16 for PanopticDeepLab, 128 for PanopticBiFPN).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> enb.check_patch_size(256, "PanopticBiFPN")
    >>> enb.check_patch_size(100, "PanopticDeepLab")
    Traceback (most recent call last):
    ...
    ValueError: patch size 100 is not divisible by 16, which PanopticDeepLab needs; use 96 or 112
    """
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
