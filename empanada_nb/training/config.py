"""The training configuration: one dataclass holding every hyperparameter, saved as YAML."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from .._atomic import atomic_path


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters for :func:`empanada_nb.train` and :func:`empanada_nb.finetune`.

    Defaults follow empanada's MitoNet configs where the seeds give them.
    """

    # model (used by train(); finetune() takes them from the model it is given)
    architecture: str = "PanopticDeepLab"
    encoder: str = "resnet50"
    num_classes: int = 1
    pointrend: bool = False
    pretrained: str | None = None  #: CEM weights: a URL, a path or a name in models.CEM_URLS
    class_names: dict[int, str] = dataclasses.field(default_factory=lambda: {1: "mito"})
    thing_list: list[int] = dataclasses.field(default_factory=lambda: [1])
    finetunable_layers: str = "all"
    # masks
    label_divisor: int | None = None  #: None: masks hold instance ids; else class * divisor + instance
    connected_components: bool = False  #: binary masks -> one instance per connected component
    output_label_divisor: int = 1000
    heatmap_sigma: float = 8.0
    # optimisation
    iterations: int = 1000
    batch_size: int = 16
    patch_size: int = 256
    lr: float = 3e-3  #: OneCycle maximum
    weight_decay: float = 0.1
    pct_start: float = 0.3
    min_bn_batch: int = 8  #: below this batch size BatchNorm statistics are frozen when finetuning
    # loss
    ce_weight: float = 1.0
    mse_weight: float = 200.0
    l1_weight: float = 0.01
    pr_weight: float = 1.0
    top_k_percent: float = 0.2
    # augmentation and sampling
    scale: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.25])
    rotate: bool = True
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    group_gamma: float = 0.3  #: per-subfolder sampling weight (1/count)^gamma
    # validation, checkpoints, runtime
    val_interval: int | None = None  #: default: iterations // 5, never 0
    val_fraction: float = 0.0  #: hold out this fraction of the training pairs when no val_dir is given
    checkpoint_interval: int | None = None  #: default: iterations // 5, never 0
    seed: int = 0
    num_workers: int = 0
    device: str | None = None
    amp: bool = True  #: mixed precision on CUDA
    channels_last: bool = True  #: on CUDA
    # postprocessing for validation
    seg_thr: float = 0.5
    center_thr: float = 0.1
    min_distance: int = 3

    def __post_init__(self):
        self.class_names = {int(k): v for k, v in self.class_names.items()}
        self.validate()

    def validate(self) -> None:
        for name in ("iterations", "batch_size", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("val_interval", "checkpoint_interval"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be at least 1 (or None for automatic), got {v}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not self.lr > 0:  # also refuses NaN
            raise ValueError("lr must be positive")

    @property
    def val_every(self) -> int:
        return int(self.val_interval or max(1, self.iterations // 5))

    @property
    def checkpoint_every(self) -> int:
        return int(self.checkpoint_interval or max(1, self.iterations // 5))

    def replace(self, **changes) -> TrainConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with atomic_path(path, suffix=".yaml") as tmp:
                Path(tmp).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike) -> TrainConfig:
        p = Path(str(path_or_text))
        text = p.read_text() if "\n" not in str(path_or_text) and p.exists() else str(path_or_text)
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path_or_text}: a TrainConfig YAML must be a mapping of field: value")
        return cls.from_dict(data)
