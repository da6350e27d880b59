"""Saving and loading models: weights plus a YAML model card.

A saved model is ``NAME.pth`` (a torch file holding ``format``, ``card`` and ``state_dict``)
with a human-readable copy of the card beside it as ``NAME.yaml``. Both are written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from ._atomic import atomic_path
from .models import build_model

FORMAT = "empanada_nb-model/1"
_REGISTRY: dict[str, str] = {}


@dataclasses.dataclass
class ModelCard:
    """Everything needed to rebuild a model and interpret its outputs."""

    architecture: str = "PanopticDeepLab"
    encoder: str = "resnet50"
    num_classes: int = 1
    class_names: dict[int, str] = dataclasses.field(default_factory=lambda: {1: "mito"})
    thing_list: list[int] = dataclasses.field(default_factory=lambda: [1])
    label_divisor: int = 1000
    norms: dict[str, float] = dataclasses.field(default_factory=lambda: {"mean": 0.5, "std": 0.5})
    padding_factor: int = 16
    pointrend: bool = False
    finetunable_layers: str = "all"
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    history_summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "class_names" in d:
            d["class_names"] = {int(k): v for k, v in d["class_names"].items()}
        return cls(**d)

    @property
    def stuff_list(self) -> list[int]:
        return [c for c in range(1, self.num_classes + 1) if c not in self.thing_list]


def card_for(model: nn.Module, **overrides) -> ModelCard:
    """The model's card, creating a default one from its attributes if it has none."""
    card = getattr(model, "card", None)
    if card is None:
        n = model.num_classes
        card = ModelCard(
            architecture=model.architecture,
            encoder=getattr(model, "encoder_name", "resnet50"),
            num_classes=n,
            class_names={c: f"class{c}" if n > 1 else "mito" for c in range(1, n + 1)},
            thing_list=list(range(1, n + 1)),
            norms=dict(getattr(model, "norms", {"mean": 0.5, "std": 0.5})),
            padding_factor=model.padding_factor,
            pointrend=bool(getattr(model, "pointrend", False)),
        )
        model.card = card
    for k, v in overrides.items():
        setattr(card, k, v)
    return card


def save_model(model: nn.Module, path: str | os.PathLike, card: ModelCard | None = None) -> Path:
    """Save weights and model card to ``path`` (.pth) and the card to ``path`` with .yaml."""
    path = Path(path)
    if path.suffix not in (".pth", ".pt"):
        path = path.with_suffix(".pth")
    card = card or card_for(model)
    card.norms = dict(getattr(model, "norms", card.norms))
    card.finetunable_layers = getattr(model, "finetunable_layers", card.finetunable_layers)
    card.created = datetime.datetime.now().isoformat(timespec="seconds")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"format": FORMAT, "card": card.to_dict(), "state_dict": state}, tmp)
    with atomic_path(path.with_suffix(".yaml"), suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False))
    return path


def register_model(name: str, path_or_url: str) -> None:
    """Make ``load_model(name)`` resolve to a file path or a URL (downloaded once into torch.hub's cache)."""
    _REGISTRY[name] = str(path_or_url)


def list_models() -> dict[str, str]:
    return dict(_REGISTRY)


def _resolve(path_or_name: str | os.PathLike) -> Path:
    s = str(path_or_name)
    if s in _REGISTRY:
        s = _REGISTRY[s]
    if s.startswith(("http://", "https://")):
        cache = Path(torch.hub.get_dir()) / "empanada_nb"
        cache.mkdir(parents=True, exist_ok=True)
        dst = cache / os.path.basename(s.split("?")[0])
        if not dst.exists():
            with atomic_path(dst) as tmp:
                torch.hub.download_url_to_file(s, str(tmp), progress=True)
        return dst
    p = Path(s)
    if not p.exists():
        known = ", ".join(_REGISTRY) or "none registered"
        raise FileNotFoundError(f"model {s!r} is neither a file nor a registered name (registered: {known})")
    return p


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_model` (path, URL or registered name), in eval mode."""
    path = _resolve(path_or_name)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a model file saved by empanada_nb ({e.__class__.__name__})") from None
    if isinstance(ckpt, dict) and "model" in ckpt and "card" in ckpt.get("model", {}):
        ckpt = ckpt["model"]  # a training checkpoint: take the model inside it
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not an empanada_nb model (expected format {FORMAT}); "
            "empanada/MitoNet TorchScript files are not supported yet"
        )
    card = ModelCard.from_dict(ckpt["card"])
    model = build_model(card.architecture, card.encoder, num_classes=card.num_classes, pointrend=card.pointrend)
    model.load_state_dict(ckpt["state_dict"])
    model.norms = dict(card.norms)
    model.card = card
    model.finetunable_layers = card.finetunable_layers
    return model.to(device).eval()
