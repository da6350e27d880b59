"""empanada's own training/finetuning config YAML, translated onto :class:`TrainConfig`.

The layout is empanada-napari's ``custom_configs/custom_training.yaml`` / ``custom_finetuning.yaml`` (and the
``*_pdl`` / ``*_bifpn`` variants): ``model_name``, ``description`` and the sections ``DATASET``, ``MODEL``,
``TRAIN``, ``EVAL`` and ``FINETUNE`` (the last as in the model description files empanada-napari writes after
training, e.g. ``configs/MitoNet_v1.yaml``). What maps onto a TrainConfig field is translated; every other
key with a value is named in the returned list instead of being rejected, so a user can see what this
library does not use. Keys whose value is null are the ones empanada's GUI fills in, and are skipped.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from .config import TrainConfig

#: empanada architecture names -> (architecture, pointrend); the "PR" suffix is PointRend
EMPANADA_ARCHS = {
    "PanopticDeepLab": ("PanopticDeepLab", False),
    "PanopticDeepLabPR": ("PanopticDeepLab", True),
    "PanopticBiFPN": ("PanopticBiFPN", False),
    "PanopticBiFPNPR": ("PanopticBiFPN", True),
}
#: empanada's metrics; validation here always reports IoU, PQ and F1
KNOWN_METRICS = {"IoU", "PQ", "F1"}
_LOSS_KEYS = ("ce_weight", "mse_weight", "l1_weight", "top_k_percent", "pr_weight")
# empanada-napari's first custom configs open with a Python-style """docstring""", which is not YAML
_DOCSTRING = re.compile(r'\A\s*"""(.*?)"""\s*\n', re.S)


def _read_text(path_or_text: str | os.PathLike | bytes) -> tuple[str, str]:
    if isinstance(path_or_text, bytes):
        return path_or_text.decode("utf-8"), "the uploaded config"
    s = str(path_or_text)
    if "\n" not in s and Path(s).expanduser().is_file():
        return Path(s).expanduser().read_text(), s
    if "\n" not in s and s.endswith((".yaml", ".yml")):
        raise FileNotFoundError(f"config file {s} does not exist")
    return s, "the config text"


def load_yaml_mapping(path_or_text: str | os.PathLike | bytes) -> tuple[dict, str]:
    """Parse a config YAML (a path, YAML text or bytes) into a mapping; returns it and a name for messages.

    Parameters
    ----------
    path_or_text : str, path or bytes
        A YAML file, or its text or bytes.

    Returns
    -------
    (dict, str)
        The mapping and where it came from.

    Examples
    --------
    >>> load_yaml_mapping("a: 1\\n")[0]
    {'a': 1}
    """
    text, name = _read_text(path_or_text)
    text = _DOCSTRING.sub("", text, count=1)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{name} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{name}: a config YAML must be a mapping of key: value")
    return data, name


def is_empanada_config(data: dict) -> bool:
    """True when a parsed YAML has empanada's layout (an upper-case section such as TRAIN or MODEL).

    Parameters
    ----------
    data : dict
        A parsed YAML mapping.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_empanada_config({"TRAIN": {"batch_size": 16}}), is_empanada_config({"batch_size": 16})
    (True, False)
    """
    return any(k in data for k in ("DATASET", "MODEL", "TRAIN", "EVAL", "FINETUNE"))


class _Translator:
    def __init__(self):
        self.changes: dict[str, Any] = {}
        self.unmapped: list[str] = []

    def skip(self, key: str, value: Any) -> None:
        if value is not None:
            self.unmapped.append(key)

    def set(self, field: str, value: Any) -> None:
        if value is not None:
            self.changes[field] = value

    def dataset(self, sec: dict, where: str) -> None:
        for k, v in sec.items():
            if k == "class_names" and v is not None:
                self.set("class_names", {int(c): str(n) for c, n in v.items()})
            elif k == "thing_list":
                self.set("thing_list", None if v is None else [int(c) for c in v])
            elif k == "labels" and v is not None:
                self.set("num_classes", len(v))
            else:
                self.skip(f"{where}.{k}", v)

    def model(self, sec: dict) -> None:
        for k, v in sec.items():
            if k == "arch" and v is not None:
                if v not in EMPANADA_ARCHS:
                    self.skip("MODEL.arch", v)
                    continue
                self.set("architecture", EMPANADA_ARCHS[v][0])
                self.set("pointrend", EMPANADA_ARCHS[v][1])
            elif k == "encoder":
                self.set("encoder", v)
            elif k == "num_classes" and v is not None:
                # empanada counts semantic channels: 1 for one class, else classes + background
                self.set("num_classes", max(1, int(v) - 1) if int(v) > 1 else 1)
            else:
                self.skip(f"MODEL.{k}", v)

    def augmentations(self, augs: list, where: str) -> None:
        names = {a.get("aug") for a in augs if isinstance(a, dict)}
        self.set("rotate", "Rotate" in names)
        self.set("flip", bool(names & {"HorizontalFlip", "VerticalFlip"}))
        if "RandomBrightnessContrast" not in names:
            self.set("brightness", 0.0)
            self.set("contrast", 0.0)
        for i, a in enumerate(augs):
            kind = a.get("aug") if isinstance(a, dict) else None
            key = f"{where}.augmentations[{i}]"
            if kind == "RandomScale" and a.get("scale_limit") is not None:
                lim = a["scale_limit"]
                lo, hi = (-lim, lim) if isinstance(lim, (int, float)) else lim
                self.set("scale", [round(1 + float(lo), 6), round(1 + float(hi), 6)])
            elif kind == "RandomCrop":
                if a.get("height") is not None:
                    self.set("patch_size", int(a["height"]))
                if a.get("width") is not None and a.get("width") != a.get("height"):
                    self.unmapped.append(f"{key}.width (square patches only)")
            elif kind == "RandomBrightnessContrast":
                self.set("brightness", a.get("brightness_limit"))
                self.set("contrast", a.get("contrast_limit"))
            elif kind in ("PadIfNeeded", "Rotate", "HorizontalFlip", "VerticalFlip"):
                pass  # padding is automatic; rotations are any angle, flips both ways
            else:
                self.unmapped.append(f"{key} ({kind})")

    def metrics(self, metrics: list, where: str) -> None:
        for m in metrics or []:
            if not isinstance(m, dict) or m.get("metric") not in KNOWN_METRICS:
                self.unmapped.append(f"{where}.metrics ({m.get('metric') if isinstance(m, dict) else m})")

    def criterion(self, name: Any, params: dict | None, where: str) -> None:
        if name is not None and name != "PanopticLoss":
            self.unmapped.append(f"{where}.criterion ({name})")
        for k, v in (params or {}).items():
            if k in _LOSS_KEYS:
                self.set(k, v)
            else:
                self.skip(f"{where}.criterion_params.{k}", v)

    def dataset_params(self, params: dict | None, where: str) -> None:
        for k, v in (params or {}).items():
            if k == "weight_gamma":
                self.set("group_gamma", v)
            elif k == "label_divisor":
                self.set("label_divisor", v)
            elif k == "thing_list":
                self.set("thing_list", None if v is None else [int(c) for c in v])
            elif k == "labels" and v is not None:
                self.set("num_classes", len(v))
            else:
                self.skip(f"{where}.dataset_params.{k}", v)

    def engine(self, name: Any, params: dict | None, where: str) -> None:
        if name is not None and name not in ("PanopticDeepLabEngine", "PanopticDeepLabRenderEngine"):
            self.unmapped.append(f"{where}.engine ({name})")
        for k, v in (params or {}).items():
            if k == "label_divisor":
                self.set("output_label_divisor", v)
            elif k == "confidence_thr":
                self.set("seg_thr", v)
            elif k == "nms_threshold":
                self.set("center_thr", v)
            elif k == "nms_kernel":
                self.set("min_distance", v)  # empanada's max-pool window, as postprocess's min_distance
            elif k == "thing_list":
                self.set("thing_list", None if v is None else [int(c) for c in v])
            elif k == "void_label" and v == 0:
                pass
            else:
                self.skip(f"{where}.engine_params.{k}", v)

    def train(self, sec: dict, where: str = "TRAIN") -> None:
        for k, v in sec.items():
            key = f"{where}.{k}"
            if k == "lr_schedule":
                if v not in (None, "OneCycleLR"):
                    self.unmapped.append(f"{key} ({v}; OneCycle is used)")
            elif k == "schedule_params":
                for sk, sv in (v or {}).items():
                    if sk == "max_lr":
                        self.set("lr", sv)
                    elif sk == "pct_start":
                        self.set("pct_start", sv)
                    elif sk == "steps_per_epoch" and sv == -1:
                        pass  # empanada's "one pass over the data"; iterations drive training here
                    else:
                        self.skip(f"{key}.{sk}", sv)
            elif k == "optimizer":
                if v not in (None, "AdamW"):
                    self.unmapped.append(f"{key} ({v}; AdamW is used)")
            elif k == "optimizer_params":
                for ok, ov in (v or {}).items():
                    if ok == "weight_decay":
                        self.set("weight_decay", ov)
                    else:
                        self.skip(f"{key}.{ok}", ov)
            elif k == "amp":
                self.set("amp", bool(v) if v is not None else None)
            elif k == "criterion":
                self.criterion(v, sec.get("criterion_params"), where)
            elif k == "criterion_params":
                if "criterion" not in sec:
                    self.criterion(None, v, where)
            elif k == "metrics":
                self.metrics(v, where)
            elif k == "batch_size":
                self.set("batch_size", v)
            elif k == "workers":
                self.set("num_workers", v)
            elif k == "dataset_class":
                if v not in (None, "SingleClassInstanceDataset", "PanopticDataset"):
                    self.unmapped.append(f"{key} ({v})")
            elif k == "dataset_params":
                self.dataset_params(v, where)
            elif k == "augmentations" and v is not None:
                self.augmentations(v, where)
            elif k == "additional_train_dirs":
                self.set("additional_train_dirs", None if v is None else [str(d) for d in v])
            elif k == "finetune_layer":
                self.set("finetunable_layers", v)
            elif k == "encoder_pretraining":
                self.set("pretrained", v)
            elif k == "engine":
                self.engine(v, sec.get("engine_params"), where)
            elif k == "engine_params":
                if "engine" not in sec:
                    self.engine(None, v, where)
            else:  # train_dir, model_dir, save_freq, print_freq, epochs, ...: given by the form / CLI / call
                self.skip(key, v)

    def eval(self, sec: dict) -> None:
        for k, v in sec.items():
            if k == "metrics":
                self.metrics(v, "EVAL")
            elif k == "engine":
                self.engine(v, sec.get("engine_params"), "EVAL")
            elif k == "engine_params":
                if "engine" not in sec:
                    self.engine(None, v, "EVAL")
            else:  # eval_dir, epochs_per_eval: the validation folder and interval come from the form / call
                self.skip(f"EVAL.{k}", v)


def config_from_empanada_yaml(
    path_or_text: str | os.PathLike | bytes, base: TrainConfig | None = None
) -> tuple[TrainConfig, list[str]]:
    """Translate an empanada training/finetuning config YAML onto a :class:`TrainConfig`.

    Parameters
    ----------
    path_or_text : str, path or bytes
        empanada's config (``custom_training.yaml`` layout: ``DATASET``, ``MODEL``, ``TRAIN``, ``EVAL``,
        ``FINETUNE`` sections), as a file, text or bytes.
    base : TrainConfig, optional
        The settings the YAML changes (default: ``TrainConfig()``).

    Returns
    -------
    (TrainConfig, list of str)
        The translated config and the keys that do not map onto it (dotted, e.g. ``MODEL.aspp_dropout``).

    Examples
    --------
    >>> cfg, unmapped = config_from_empanada_yaml("TRAIN:\\n  batch_size: 8\\n  print_freq: 50\\n")
    >>> cfg.batch_size, unmapped
    (8, ['TRAIN.print_freq'])
    """
    data, name = load_yaml_mapping(path_or_text)
    tr = _Translator()
    for k, v in data.items():
        if k == "description":
            tr.set("description", v)
        elif k == "DATASET" and isinstance(v, dict):
            tr.dataset(v, "DATASET")
        elif k in ("class_names", "thing_list", "labels"):  # a model description file (configs/MitoNet_v1.yaml)
            tr.dataset({k: v}, "")
        elif k == "MODEL" and isinstance(v, dict):
            tr.model(v)
        elif k == "TRAIN" and isinstance(v, dict):
            tr.train(v)
        elif k == "FINETUNE" and isinstance(v, dict):
            tr.train(v, "FINETUNE")
        elif k == "EVAL" and isinstance(v, dict):
            tr.eval(v)
        else:  # model_name and anything else at the top
            tr.skip(k, v)
    base = base or TrainConfig()
    changes = dict(tr.changes)
    if "class_names" in changes and "num_classes" not in changes:
        changes["num_classes"] = len(changes["class_names"])
    try:
        cfg = base.replace(**changes)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from None
    return cfg, tr.unmapped


def read_train_config(
    path_or_text: str | os.PathLike | bytes, warn: bool = True, base: TrainConfig | None = None
) -> tuple[TrainConfig, list[str]]:
    """Read a training config YAML in either layout: this library's (TrainConfig fields) or empanada's.

    Parameters
    ----------
    path_or_text : str, path or bytes
        The YAML file, text or bytes.
    warn : bool
        Warn (one UserWarning) listing the empanada keys that were not used.
    base : TrainConfig, optional
        The settings the file changes (default: ``TrainConfig()``); fields the file does not set keep them.

    Returns
    -------
    (TrainConfig, list of str)
        The config and the unmapped keys (always empty for this library's layout, whose unknown fields are
        an error).

    Examples
    --------
    >>> read_train_config("iterations: 5\\n")[0].iterations
    5
    """
    data, name = load_yaml_mapping(path_or_text)
    if not is_empanada_config(data):
        try:
            return (base or TrainConfig()).replace(**data), []
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: {e}") from None
    cfg, unmapped = config_from_empanada_yaml(path_or_text, base)
    if unmapped and warn:
        warnings.warn(unmapped_message(unmapped), stacklevel=2)
    return cfg, unmapped


def unmapped_message(unmapped: list[str]) -> str:
    """One line naming the empanada config keys that were not used.

    Parameters
    ----------
    unmapped : list of str
        Keys from :func:`config_from_empanada_yaml`.

    Returns
    -------
    str

    Examples
    --------
    >>> unmapped_message(["MODEL.aspp_dropout"])
    'empanada config: 1 key(s) not used by empanada_nb: MODEL.aspp_dropout'
    """
    return f"empanada config: {len(unmapped)} key(s) not used by empanada_nb: {', '.join(unmapped)}"
