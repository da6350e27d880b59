"""The TrainingDashboard's form: its fields -> a :class:`~empanada_nb.TrainConfig`, checks, hints, config upload.

A mixin of :class:`~empanada_nb.widgets.TrainingDashboard` (whose traits it reads). TrainConfig is the one
source of settings: defaults come from it, values are checked by its ``validate``, and the guides' advice
(``training/rules.py``) becomes hints under the fields, which never block Start; errors do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..model_io import ModelCard, card_for, list_models
from ..models import ARCHITECTURES, check_patch_size
from ..training import TrainConfig
from ..training.config import classes_from_text, classes_to_text
from ..training.empanada_yaml import read_train_config, unmapped_message
from ..training.rules import (
    ARCHITECTURE_HINTS,
    LAYER_HINTS,
    batch_size_warning,
    check_finetune_classes,
    pairs_of,
    patch_size_warning,
    smallest_image_side,
)

DEFAULTS = TrainConfig()
#: form fields that are TrainConfig fields of the same name, checked one by one by TrainConfig.validate
CONFIG_FIELDS = ("iterations", "patch_size", "batch_size", "lr", "val_fraction", "description")
NO_CEM_HINT = "no CEM weights: the model starts from random weights (the guides strongly recommend CEM weights)"


def form_defaults(cfg: TrainConfig = DEFAULTS) -> dict[str, Any]:
    """The form's trait values for a config (the inverse of ``TrainingForm.train_config``)."""
    return {
        "architecture": cfg.architecture,
        "encoder": cfg.encoder,
        "pretrained": cfg.pretrained or "",
        "layers": cfg.finetunable_layers,
        "iterations": cfg.iterations,
        "max_minutes": cfg.max_minutes or 0.0,
        "patch_size": cfg.patch_size,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "classes": classes_to_text(cfg.class_names, cfg.thing_list),
        "label_divisor": cfg.label_divisor or 0,
        "connected_components": cfg.connected_components,
        "ignore_unlabelled": cfg.ignore_unlabelled,
        "description": cfg.description,
        "val_fraction": cfg.val_fraction,
        "extra_dirs": "\n".join(cfg.additional_train_dirs),
    }


def _card_of(source: str) -> ModelCard | None:
    """The card of a saved model (its .yaml beside the .pth), without loading weights; None if unknown."""
    s = list_models().get(source, source)
    if not s or s.startswith(("http://", "https://")):
        return None
    yml = Path(s).expanduser().with_suffix(".yaml")
    if not yml.is_file():
        return None
    import yaml

    try:
        return ModelCard.from_dict(yaml.safe_load(yml.read_text()) or {})
    except (TypeError, ValueError, yaml.YAMLError):
        return None


class TrainingForm:
    """Form logic of the dashboard: ``train_config()``, ``load_config()``, ``_check_form()``."""

    _base: TrainConfig = DEFAULTS
    _sides: dict = {}

    # -------------------------------------------------------------------------------- config
    def dataset_dirs(self) -> list[str]:
        """The training folders: the dataset folder and the extra folders (one per line).

        Returns
        -------
        list of str
            The folders Start trains on, in order.

        Examples
        --------
        >>> from empanada_nb.widgets import TrainingDashboard
        >>> TrainingDashboard(dataset_dir="/data/a", extra_dirs="/data/b").dataset_dirs()
        ['/data/a', '/data/b']
        """
        dirs = [self.dataset_dir.strip()] + [d.strip() for d in self.extra_dirs.splitlines()]
        return [str(Path(d).expanduser()) for d in dirs if d]

    def _form_changes(self) -> dict[str, Any]:
        changes = {name: getattr(self, name) for name in CONFIG_FIELDS}
        changes.update(classes_from_text(self.classes))
        changes.update(
            label_divisor=int(self.label_divisor) or None,
            connected_components=bool(self.connected_components),
            ignore_unlabelled=bool(self.ignore_unlabelled),
            finetunable_layers=self.layers,
            max_minutes=float(self.max_minutes) or None,  # 0: train for the iterations
            additional_train_dirs=[],  # the form's folders are all passed as train_dir
        )
        if self.mode == "train":
            changes.update(architecture=self.architecture, encoder=self.encoder, pretrained=self.pretrained or None)
        return changes

    def train_config(self) -> TrainConfig:
        """The :class:`~empanada_nb.TrainConfig` Start runs with: the uploaded config (if any) changed by the form.

        Returns
        -------
        TrainConfig
            Raises ValueError naming the first bad field.

        Examples
        --------
        >>> from empanada_nb.widgets import TrainingDashboard
        >>> TrainingDashboard(iterations=10).train_config().iterations
        10
        """
        return self._base.replace(**self._form_changes())

    def load_config(self, path_or_bytes: str | os.PathLike | bytes, name: str | None = None) -> list[str]:
        """Load a config YAML (this library's or empanada's ``custom_training.yaml``) into the form.

        Parameters
        ----------
        path_or_bytes : str, path or bytes
            The file, or its bytes (the browser's upload).
        name : str, optional
            The file name shown in the form.

        Returns
        -------
        list of str
            The empanada keys that do not map onto TrainConfig (also shown in the form).

        Examples
        --------
        >>> from empanada_nb.widgets import TrainingDashboard
        >>> d = TrainingDashboard()
        >>> d.load_config(b"TRAIN:\\n  batch_size: 8\\n  print_freq: 10\\n", "custom.yaml")
        ['TRAIN.print_freq']
        """
        try:  # what the file does not set keeps the form's value
            base = self.train_config()
        except (TypeError, ValueError):
            base = DEFAULTS
        cfg, unmapped = read_train_config(path_or_bytes, warn=False, base=base)
        self._base = cfg
        values = form_defaults(cfg)
        if self.mode == "finetune":  # the model's classes stay; finetuning cannot change them
            values.pop("classes")
        if not cfg.additional_train_dirs:
            values.pop("extra_dirs")
        with self.hold_trait_notifications():
            for k, v in values.items():
                setattr(self, k, v)
        label = name or (str(path_or_bytes) if not isinstance(path_or_bytes, bytes) else "uploaded config")
        self.config_name = label
        self.config_note = unmapped_message(unmapped) if unmapped else f"{label}: every key used"
        self._check_form()
        return unmapped

    # --------------------------------------------------------------------------------- model
    def model_card(self) -> ModelCard | None:
        """The card of the model to finetune (given in Python, or the saved model named in the form).

        Returns
        -------
        ModelCard or None
            None when no model is known (or only a URL is named, which is not downloaded for this).

        Examples
        --------
        >>> from empanada_nb.models import build_model
        >>> from empanada_nb.widgets import TrainingDashboard
        >>> TrainingDashboard(model=build_model("PanopticDeepLab", "resnet18")).model_card().class_names
        {1: 'mito'}
        """
        if self._given is not None:
            return card_for(self._given)
        if self.model_source.strip():
            return _card_of(self.model_source.strip())
        return None

    def _take_model_classes(self) -> None:
        card = self.model_card() if self.mode == "finetune" else None
        if card is not None:
            self.classes = classes_to_text(card.class_names, card.thing_list)

    # ---------------------------------------------------------------------------------- check
    def _smallest_side(self, dirs: list[str]) -> int | None:
        key = tuple(dirs)
        if key not in self._sides:  # TIFF headers of every image, read once per set of folders
            try:
                small = smallest_image_side(pairs_of(dirs))
            except (OSError, ValueError):
                small = None
            self._sides = {key: None if small is None else small[0]}
        return self._sides[key]

    def _check_form(self) -> dict[str, str]:
        errs: dict[str, str] = {}
        hints: dict[str, str] = {}
        for name in CONFIG_FIELDS:  # TrainConfig.validate says what a valid value is
            try:
                DEFAULTS.replace(**{name: getattr(self, name)})
            except (TypeError, ValueError) as e:
                errs[name] = str(e)
        try:
            classes = classes_from_text(self.classes)
        except ValueError as e:
            errs["classes"] = str(e)
            classes = None
        target: Any = self.architecture
        if self.mode == "finetune" and self._given is not None:
            target = self._given
        if isinstance(target, str) and target not in ARCHITECTURES:
            errs["architecture"] = f"unknown architecture {target!r}"
        elif "patch_size" not in errs:
            try:
                check_patch_size(int(self.patch_size), target)
            except ValueError as e:
                errs["patch_size"] = str(e)
        if not self.max_minutes >= 0:  # also NaN
            errs["max_minutes"] = "time budget must be 0 (train for the iterations) or a positive number of minutes"
        if self.preview_every < 1:
            errs["preview_every"] = "preview interval must be at least 1"
        if int(self.label_divisor) < 0:
            errs["label_divisor"] = "label divisor must be 0 (masks hold instance ids) or positive"
        if self.mode == "finetune" and self._given is None and not self.model_source.strip():
            errs["model_source"] = "give a model path or registered name to finetune"
        card = self.model_card() if self.mode == "finetune" else None
        if card is not None and classes is not None:
            try:
                check_finetune_classes(card, classes)
            except ValueError as e:
                errs["classes"] = str(e)
        if not self.dataset_dir.strip():
            errs["dataset_dir"] = "choose the dataset folder (<folder>/<name>/images, masks)"
        missing = [d for d in self.dataset_dirs() if not Path(d).is_dir()]
        if missing and "dataset_dir" not in errs:
            key = "dataset_dir" if missing[0] == self.dataset_dirs()[0] else "extra_dirs"
            errs[key] = f"{missing[0]}: no such folder"
        if not errs:
            try:  # what only the whole config can say (e.g. class ids outside 1..num_classes)
                self.train_config()
            except (TypeError, ValueError) as e:
                errs["classes"] = str(e)
        # the guides' advice: shown, never blocking
        if self.mode == "train":
            hints["architecture"] = ARCHITECTURE_HINTS.get(self.architecture, "")
            if not self.pretrained:
                hints["pretrained"] = NO_CEM_HINT
        elif card is not None:
            hints["classes"] = "the model's classes: finetuning keeps them (train a new model for other classes)"
        hints["layers"] = LAYER_HINTS.get(self.layers, "")
        bs = batch_size_warning(int(self.batch_size)) if "batch_size" not in errs else None
        if bs:
            hints["batch_size"] = bs
        if "dataset_dir" not in errs and "extra_dirs" not in errs and "patch_size" not in errs:
            side = self._smallest_side(self.dataset_dirs())
            advice = patch_size_warning(int(self.patch_size), side) if side is not None else None
            if advice:
                hints["patch_size"] = advice
        self.errors = errs
        self.hints = {k: v for k, v in hints.items() if v}
        return errs
