"""The training configuration: one dataclass holding every hyperparameter, saved as YAML."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from .._atomic import atomic_path
from ..precision import Precision, resolve_precision


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters for ``train`` and ``finetune``, the one source of training settings.

    Defaults follow empanada's MitoNet configs where the seeds give them. Every field is a keyword
    of the constructor, of ``train``/``finetune`` (as ``**overrides``) and a key of the YAML file.
    Invalid values raise ``ValueError`` at construction (see ``validate``).

    Parameters
    ----------
    architecture : str
        ``"PanopticDeepLab"`` or ``"PanopticBiFPN"`` (``train`` only; ``finetune`` takes the
        model's).
    encoder : str
        torchvision encoder name (``ENCODERS``).
    num_classes : int
        Foreground classes.
    pointrend : bool
        Add a PointRend head.
    pretrained : str, optional
        CEM encoder weights: a URL, a path or a key of ``CEM_URLS``.
    class_names : dict of int to str
        Name of each class id.
    thing_list : list of int
        Classes split into instances.
    finetunable_layers : str
        Encoder stages that train (``FINETUNABLE_LAYERS``).
    description : str
        What the model is for (its data, purpose, links); saved on the model card.
    label_divisor : int, optional
        None: masks hold instance ids (one class); else masks are ``class * divisor + instance``.
    connected_components : bool
        Binary masks: one instance per connected component.
    ignore_unlabelled : bool
        Sparse labels: mask pixels holding the ignore value (``IGNORE_LABEL``: all bits set, i.e. 255
        in uint8 masks, 65535 in uint16, 4294967295 in uint32, -1 in signed masks; the Viewer's
        "unlabelled" tool paints it) are unlabelled, and every loss term skips them. False: that value
        is an ordinary label (masks whose objects are 255).
    output_label_divisor : int
        ``label_divisor`` of the trained model's outputs.
    heatmap_sigma : float
        Sigma in pixels of the center heatmap targets.
    additional_train_dirs : list of str
        More dataset folders to train on, besides ``train``'s ``train_dir`` (empanada's
        ``additional_train_dirs``).
    iterations : int
        Training steps (one batch each; no epochs). With ``max_minutes`` the run fixes its own count.
    max_minutes : float, optional
        Train for this wall-clock budget instead of ``iterations``: the first steps measure the step
        time, then the iteration count and the OneCycle schedule are fitted to what fits the budget
        (validation, checkpoints and saving included); see ``training/budget.py``.
    batch_size : int
        Patches per step: the global batch. Under ``torchrun`` each of the N processes trains on
        ``batch_size / N`` of them (it must divide), so a config means the same run on any number of GPUs.
    patch_size : int
        Square patch side; a multiple of the model's padding factor (16 or 128).
    lr : float
        OneCycle maximum learning rate.
    weight_decay : float
        AdamW weight decay (not applied to biases and norm layers).
    pct_start : float
        Fraction of the iterations spent warming up the learning rate.
    min_bn_batch : int
        Below this batch size BatchNorm statistics are frozen when finetuning. Any batch size below
        16 (``BN_SAFE_BATCH``, empanada's guides) warns that BatchNorm becomes unstable.
    ce_weight : float
        Weight of the (bootstrapped) semantic cross-entropy loss term.
    mse_weight : float
        Weight of the center heatmap MSE loss term.
    l1_weight : float
        Weight of the offset L1 loss term.
    pr_weight : float
        Weight of the PointRend loss term.
    top_k_percent : float
        Fraction of the hardest pixels the bootstrapped cross-entropy keeps.
    scale : list of float
        Random rescaling range of patches.
    rotate : bool
        Random rotations by any angle.
    flip : bool
        Random flips.
    brightness : float
        Random brightness shift of up to ``brightness / 2`` (in the [0, 1] intensity scale).
    contrast : float
        Random contrast factor in ``[1 - contrast, 1 + contrast]``.
    group_gamma : float
        Per-subfolder sampling weight ``(1 / count) ** gamma``.
    val_interval : int, optional
        Iterations between validations; default ``iterations // 5`` (never 0).
    val_fraction : float
        Hold out this fraction of the training pairs when no ``val_dir`` is given.
    checkpoint_interval : int, optional
        Iterations between checkpoints; default ``iterations // 5`` (never 0).
    seed : int
        Seed of weights, sampling and augmentation.
    num_workers : int or "auto"
        DataLoader worker processes preparing batches (patches, augmentation, targets) while the
        step runs; 0 prepares them in the main thread. ``"auto"``: on CPU one per core that torch's
        threads leave free (none when torch uses every core), up to 4 on CUDA (``resolve_workers``).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default CUDA when available.
    amp : bool
        Mixed precision where the device computes it natively (``precision.resolve_precision("auto")``):
        float16 with loss scaling on CUDA, bfloat16 on CPUs with AVX512-BF16 or AMX, float32 elsewhere.
        Weights, optimizer and loss stay float32; the card's ``lineage["step_precision"]`` says what ran.
    channels_last : bool
        channels_last (NHWC) memory format for the model and its inputs, on every device: a training
        step of the default PanopticBiFPN-R18 (batch 16, 256^2) took 1.5x less time on a 2-core CPU
        (``benchmarks/train_step.py``) and cuDNN's tensor cores want it.
    calibrate : bool
        At the end of a run, fit the foreground threshold on the validation images (or
        ``CALIBRATION_IMAGES`` training images spread over the set) and fold it into the semantic
        head's bias, so 0.5 gives the best-scoring threshold everywhere the model is used
        (``training/calibrate.py``). The checkpoint keeps the trained bias; the card records the fit.
    seg_thr : float
        Foreground threshold for validation (see ``panoptic_postprocess``).
    center_thr : float
        Center heatmap threshold for validation.
    min_distance : int
        Center NMS window for validation.

    Raises
    ------
    ValueError
        When a value is out of range (checked by ``validate``).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> cfg = enb.TrainConfig(encoder="resnet18", iterations=500)
    >>> cfg.val_every, cfg.replace(patch_size=128).patch_size
    (100, 128)
    >>> enb.TrainConfig(iterations=0)
    Traceback (most recent call last):
    ...
    ValueError: iterations must be a positive integer, got 0
    """

    # model (used by train(); finetune() takes them from the model it is given)
    architecture: str = "PanopticDeepLab"
    encoder: str = "resnet50"
    num_classes: int = 1
    pointrend: bool = False
    #: encoder weights: "auto" (CEM1.5M for resnet50, as empanada's training guide advises; random init for
    #: encoders CEM has no weights for), None (random init), a name in models.CEM_URLS, a path or a URL
    pretrained: str | None = "auto"
    class_names: dict[int, str] = dataclasses.field(default_factory=lambda: {1: "mito"})
    thing_list: list[int] = dataclasses.field(default_factory=lambda: [1])
    finetunable_layers: str = "all"
    description: str = ""  #: what the model is for, its data, links; saved on the model card
    # masks
    label_divisor: int | None = None  #: None: masks hold instance ids; else class * divisor + instance
    connected_components: bool = False  #: binary masks -> one instance per connected component
    ignore_unlabelled: bool = True  #: the ignore value (255 in uint8 masks, ...) marks unlabelled pixels
    output_label_divisor: int = 1000
    heatmap_sigma: float = 8.0
    additional_train_dirs: list[str] = dataclasses.field(default_factory=list)  #: more dataset folders to train on
    # optimisation
    iterations: int = 1000
    max_minutes: float | None = None  #: wall-clock budget; fits iterations and the LR schedule to it
    batch_size: int = 16  #: the global batch: split among the processes under torchrun
    patch_size: int = 256
    lr: float = 3e-3  #: OneCycle maximum
    weight_decay: float = 0.1
    pct_start: float = 0.3
    min_bn_batch: int = 8  #: finetuning below this batch size freezes BatchNorm statistics (below 16: a warning)
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
    num_workers: int | str = "auto"  #: DataLoader worker processes, or "auto" (resolve_workers)
    device: str | None = None
    amp: bool = True  #: mixed precision where native: fp16 on CUDA, bf16 on AVX512-BF16/AMX CPUs
    channels_last: bool = True  #: NHWC model and inputs (CPU and CUDA)
    calibrate: bool = True  #: fit the foreground threshold at the end and fold it into the model
    # postprocessing for validation
    seg_thr: float = 0.5
    center_thr: float = 0.1
    min_distance: int = 3

    def __post_init__(self):
        self.class_names = {int(k): str(v) for k, v in self.class_names.items()}
        self.thing_list = [int(c) for c in self.thing_list]
        self.additional_train_dirs = [str(d) for d in self.additional_train_dirs or []]
        self.validate()

    def validate(self) -> None:
        """Check the values; called by the constructor (and so by ``replace`` and ``from_dict``).

        Returns
        -------
        None

        Raises
        ------
        ValueError
            When ``iterations``, ``batch_size`` or ``patch_size`` is below 1, an interval is below 1,
            ``val_fraction`` is outside [0, 1) or ``lr`` is not positive.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig().validate()
        """
        for name in ("iterations", "batch_size", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("val_interval", "checkpoint_interval"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be at least 1 (or None for automatic), got {v}")
        if self.label_divisor is not None and int(self.label_divisor) < 1:
            raise ValueError(
                f"label_divisor must be a positive integer (or None for instance masks), got {self.label_divisor}"
            )
        if int(self.output_label_divisor) < 1:
            raise ValueError(f"output_label_divisor must be a positive integer, got {self.output_label_divisor}")
        if self.max_minutes is not None and not float(self.max_minutes) > 0:
            raise ValueError(
                f"max_minutes must be a positive number of minutes (or None to train for iterations), "
                f"got {self.max_minutes}"
            )
        if self.num_workers != "auto" and (isinstance(self.num_workers, str) or int(self.num_workers) < 0):
            raise ValueError(
                f"num_workers must be 'auto' or a count >= 0 (0: in the main thread), got {self.num_workers!r}"
            )
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not self.lr > 0:  # also refuses NaN
            raise ValueError("lr must be positive")
        if int(self.num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        classes = range(1, int(self.num_classes) + 1)
        bad = [c for c in list(self.class_names) + list(self.thing_list) if c not in classes]
        if bad:
            raise ValueError(
                f"class id(s) {sorted(set(bad))} outside 1..{self.num_classes}: class ids run from 1 to num_classes"
            )
        if self.label_divisor is not None and int(self.label_divisor) < 1:
            raise ValueError(f"label_divisor must be >= 1 (None: masks hold instance ids), not {self.label_divisor}")

    @property
    def val_every(self) -> int:
        """Iterations between validations: ``val_interval``, or ``iterations // 5`` (at least 1).

        Returns
        -------
        int

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig(iterations=3).val_every
        1
        """
        return int(self.val_interval or max(1, self.iterations // 5))

    @property
    def checkpoint_every(self) -> int:
        """Iterations between checkpoints: ``checkpoint_interval``, or ``iterations // 5`` (at least 1).

        Returns
        -------
        int

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig(iterations=1000, checkpoint_interval=50).checkpoint_every
        50
        """
        return int(self.checkpoint_interval or max(1, self.iterations // 5))

    def step_precision(self, device: Any) -> Precision:
        """What a training step runs on ``device`` under ``amp``: the one rule for train() and the benchmarks.

        Parameters
        ----------
        device : torch.device or str
            Where the steps run.

        Returns
        -------
        Precision
            ``amp=True``: the fastest native precision (``resolve_precision("auto")``: fp16 on CUDA, bf16
            on CPUs with AVX512-BF16 or AMX, else fp32); ``amp=False``: fp32.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig(amp=False).step_precision("cpu").name
        'fp32'
        >>> enb.TrainConfig().step_precision("cpu").name in ("fp32", "bf16")
        True
        """
        return resolve_precision("auto" if self.amp else "fp32", torch.device(device))

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated like a new config).

        Parameters
        ----------
        **changes
            Field values.

        Returns
        -------
        TrainConfig
            The new config; ``self`` is unchanged.

        Raises
        ------
        TypeError
            When a name is not a field.
        ValueError
            When a value is out of range.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig().replace(lr=1e-3, batch_size=8).batch_size
        8
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict of field values.

        Returns
        -------
        dict

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig().to_dict()["architecture"]
        'PanopticDeepLab'
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from a dict of field values (missing fields keep their defaults).

        Parameters
        ----------
        d : dict
            Field values.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ValueError
            When a key is not a field, or a value is out of range.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig.from_dict({"iterations": 10}).iterations
        10
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The config as YAML text, also written (atomically) to ``path`` when given.

        Parameters
        ----------
        path : str or os.PathLike, optional
            File to write.

        Returns
        -------
        str
            The YAML text.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> print(enb.TrainConfig().to_yaml().splitlines()[0])
        architecture: PanopticDeepLab
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with atomic_path(path, suffix=".yaml") as tmp:
                Path(tmp).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike | bytes) -> TrainConfig:
        """A config from a YAML file, YAML text or bytes: this library's layout (as ``to_yaml`` writes; missing
        fields keep defaults) or empanada's (``custom_training.yaml``: ``TRAIN``, ``MODEL``, ... sections).

        empanada keys that do not map onto TrainConfig are named in one warning (``config_from_empanada_yaml``).

        Parameters
        ----------
        path_or_text : str, os.PathLike or bytes
            A path to a YAML file, or the YAML text itself.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ValueError
            When the YAML is not a mapping, a key is not a field, or a value is out of range.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.TrainConfig.from_yaml("{iterations: 200, encoder: resnet18}").encoder
        'resnet18'
        >>> enb.TrainConfig.from_yaml("TRAIN:\\n  batch_size: 8\\n").batch_size
        8
        """
        from .empanada_yaml import read_train_config

        return read_train_config(path_or_text)[0]


#: the class kinds a classes table accepts: empanada-napari's "instance"/"semantic" and panoptic "thing"/"stuff"
THING_KINDS, STUFF_KINDS = ("thing", "instance"), ("stuff", "semantic")


def classes_to_text(class_names: dict[int, str], thing_list: list[int]) -> str:
    """The classes as a table, one ``id,name,thing|stuff`` line per class (the form's classes field).

    Parameters
    ----------
    class_names : dict of int to str
        Class id -> name.
    thing_list : list of int
        The ids of the classes with instances (things); the others are stuff.

    Returns
    -------
    str

    Examples
    --------
    >>> classes_to_text({1: "mito", 2: "er"}, [1])
    '1,mito,thing\\n2,er,stuff'
    """
    return "\n".join(f"{c},{n},{'thing' if c in thing_list else 'stuff'}" for c, n in sorted(class_names.items()))


def classes_from_text(text: str) -> dict[str, Any]:
    """Parse a classes table (``id,name,thing|stuff`` per line, as empanada-napari's "Dataset labels").

    Parameters
    ----------
    text : str
        One class per line: its id (1, 2, ...), its name and its kind (``thing``/``instance`` or
        ``stuff``/``semantic``).

    Returns
    -------
    dict
        ``num_classes``, ``class_names`` and ``thing_list``, the TrainConfig fields.

    Examples
    --------
    >>> classes_from_text("1,mito,thing\\n2,er,stuff")
    {'num_classes': 2, 'class_names': {1: 'mito', 2: 'er'}, 'thing_list': [1]}
    """
    names: dict[int, str] = {}
    things: list[int] = []
    for i, line in enumerate(text.strip().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1]:
            raise ValueError(f"classes line {i} {line.strip()!r}: write id,name,thing (or id,name,stuff)")
        c, name, kind = int(parts[0]), parts[1], parts[2].lower()
        if kind not in THING_KINDS + STUFF_KINDS:
            raise ValueError(f"classes line {i}: kind {parts[2]!r} is neither thing (instance) nor stuff (semantic)")
        if c in names:
            raise ValueError(f"classes line {i}: class id {c} is given twice")
        names[c] = name
        if kind in THING_KINDS:
            things.append(c)
    if not names:
        raise ValueError("give at least one class: id,name,thing (e.g. 1,mito,thing)")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"class ids must be 1..{len(names)} without gaps, got {sorted(names)}")
    return {"num_classes": len(names), "class_names": names, "thing_list": things}
