"""Saving and loading models: weights plus a YAML model card.

A saved model is ``NAME.pth`` (a torch file holding ``format``, ``card`` and ``state_dict``)
with a human-readable copy of the card beside it as ``NAME.yaml``. Both are written atomically.

Names: ``save_model(model, "m")`` with a bare name (no folder, no file extension) saves into the
persistent registry (:mod:`empanada_nb.registry`) and ``load_model("m")`` finds it there, in any
kernel; anything with a folder or an extension (``"m.pth"``, ``"runs/m"``) is a file path.
``load_model`` resolves, in order: an existing file/folder/archive, a URL, a registered name, a
published empanada model name (downloaded once), then ``NAME.pth`` in the working folder.
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

from ._atomic import atomic_path, claim
from ._device import resolve_device
from .models import build_model

FORMAT = "empanada_nb-model/1"


@dataclasses.dataclass
class ModelCard:
    """Everything needed to rebuild a model and interpret its outputs.

    Saved inside each model file and beside it as YAML by ``save_model``; ``load_model`` rebuilds
    the model from it and sets ``model.card``. Every field is a constructor keyword.

    Parameters
    ----------
    architecture : str
        ``"PanopticDeepLab"`` or ``"PanopticBiFPN"``.
    encoder : str
        torchvision encoder name (``ENCODERS``).
    num_classes : int
        Foreground classes.
    class_names : dict of int to str
        Name of each class id (1-based).
    thing_list : list of int
        Classes split into instances; the others are stuff (``stuff_list``).
    label_divisor : int
        Panoptic ids are ``class_id * label_divisor + instance_id``.
    norms : dict
        ``{"mean", "std"}`` input normalization (see ``normalize_image``).
    padding_factor : int
        Image sides must be multiples of this (16 or 128).
    pointrend : bool
        Whether the model has a PointRend head.
    finetunable_layers : str
        Encoder stages that were trained (``FINETUNABLE_LAYERS``).
    arch_kwargs : dict
        Constructor options beyond the defaults, e.g. empanada's layouts (``low_level_stages``,
        ``bifpn="empanada"``) for models loaded from empanada's files.
    config : dict
        The ``TrainConfig`` it was trained with, as a dict.
    history_summary : dict
        Final training and validation figures.
    created : str
        ISO timestamp written by ``save_model``.
    description : str
        What the model is for (shown by ``model_info``).
    lineage : dict
        Where the model comes from: training data, pretrained weights, parent model (set by training).
    calibration : dict
        The foreground threshold fitted at the end of training and folded into the semantic head's
        bias (``threshold``, ``iou_at_0.5``, ``iou``, ``images``, ``source``); empty when none was fitted.
    min_area : int, optional
        The 2D minimum object area (pixels) that inference uses when ``min_area`` is not given: the
        5th percentile of the training objects' areas (``training/object_size.py``); None before any
        training on 20 objects or more (inference then uses ``MIN_AREA``).
    fixed_bn : list of str
        BatchNorm layers that stand for the bias of a fused conv (empanada's quantizable models fuse
        conv + BatchNorm; loading splits them back): training keeps them in eval mode, so the loaded
        function is what gets finetuned, as empanada-napari finetunes the fused model.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> card = enb.ModelCard(num_classes=2, thing_list=[1], class_names={1: "mito", 2: "er"})
    >>> card.stuff_list
    [2]
    >>> enb.ModelCard.from_dict(card.to_dict()) == card
    True
    """

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
    # constructor options beyond the defaults (e.g. empanada's layouts: low_level_stages, bifpn="empanada")
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    history_summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = ""
    description: str = ""
    #: where the model came from: training data, settings, parent model, pretrained weights
    lineage: dict[str, Any] = dataclasses.field(default_factory=dict)
    fixed_bn: list[str] = dataclasses.field(default_factory=list)
    #: the foreground threshold fitted at the end of training and folded into the model (training/calibrate.py)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the 2D minimum object area learned from the training objects (training/object_size.py)
    min_area: int | None = None

    def to_dict(self) -> dict:
        """The card as a plain dict (what is written to the ``.pth`` and ``.yaml`` files).

        Returns
        -------
        dict
            One key per field.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.ModelCard().to_dict()["architecture"]
        'PanopticDeepLab'
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        """A card from a dict such as ``to_dict`` or a YAML card wrote; unknown keys are ignored.

        Parameters
        ----------
        d : dict
            Field values; ``class_names`` keys may be strings (as YAML or JSON give them).

        Returns
        -------
        ModelCard
            The card, with defaults for missing fields.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> card = enb.ModelCard.from_dict({"encoder": "resnet18", "class_names": {"1": "mito"}, "extra": 0})
        >>> card.encoder, card.class_names
        ('resnet18', {1: 'mito'})
        """
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "class_names" in d:
            d["class_names"] = {int(k): v for k, v in d["class_names"].items()}
        return cls(**d)

    @property
    def stuff_list(self) -> list[int]:
        """The classes that are not in ``thing_list`` (semantic-only, never split into instances).

        Returns
        -------
        list of int
            Class ids in ``1..num_classes`` not in ``thing_list``.

        Examples
        --------
        >>> import empanada_nb as enb
        >>> enb.ModelCard(num_classes=3, thing_list=[2]).stuff_list
        [1, 3]
        """
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
            arch_kwargs=dict(getattr(model, "arch_kwargs", {})),
        )
        model.card = card
    for k, v in overrides.items():
        setattr(card, k, v)
    return card


def save_model(
    model: nn.Module, path: str | os.PathLike, card: ModelCard | None = None, overwrite: bool = False
) -> Path:
    """Save weights and model card: to a file, or into the model registry under a bare name.

    ``path`` with a folder or an extension is a file: ``NAME.pth`` (a suffix other than
    ``.pth``/``.pt`` is replaced) with the card beside it as ``NAME.yaml``, both written atomically.
    A bare name (no folder, no extension, e.g. ``"mito-v2"``) saves into the persistent registry
    (``registry_dir()``), replacing an entry of that name, so ``load_model("mito-v2")`` finds it in
    any later kernel.

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``train`` or ``load_model``.
    path : str or os.PathLike
        Target file, or a registry name.
    card : ModelCard, optional
        The card to store; default the model's own (``model.card``, created from its attributes
        when missing). Its ``norms``, ``finetunable_layers`` and ``created`` are updated.
    overwrite : bool
        Replace an existing model (or card) written by empanada_nb; other files are always refused.

    Returns
    -------
    pathlib.Path
        The written ``.pth`` path (inside the registry for a name).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = enb.save_model(model, Path(tmp) / "mito")
    ...     path.name, path.with_suffix(".yaml").is_file()
    ('mito.pth', True)
    >>> enb.save_model(model, "mito-v2")  # into the registry  # doctest: +SKIP
    """
    from . import registry

    if registry.is_registry_name(path):
        return registry.save_to_registry(model, str(path), card)
    path = Path(path)
    if path.suffix not in (".pth", ".pt"):
        path = path.with_suffix(".pth")
    claim(path, overwrite)
    claim(path.with_suffix(".yaml"), overwrite)
    card = card or card_for(model)
    card.norms = dict(getattr(model, "norms", card.norms))
    card.finetunable_layers = getattr(model, "finetunable_layers", card.finetunable_layers)
    card.arch_kwargs = dict(getattr(model, "arch_kwargs", card.arch_kwargs))
    card.created = datetime.datetime.now().isoformat(timespec="seconds")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"format": FORMAT, "card": card.to_dict(), "state_dict": state}, tmp)
    with atomic_path(path.with_suffix(".yaml"), suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False))
    return path


def register_model(
    name: str,
    path_or_url: str | os.PathLike,
    *,
    sha256: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Register a model under ``name`` in the persistent registry, so ``load_model(name)`` finds it in any kernel.

    The model is copied into the registry (``registry_dir()``); a URL is downloaded there once.
    Bad input (a missing, truncated or random file, a YAML missing keys, a checksum mismatch)
    raises a one-line error and leaves the registry unchanged.

    Parameters
    ----------
    name : str
        Letters, digits and ``_ . + -``; not a published empanada model name.
    path_or_url : str or os.PathLike
        An empanada_nb ``.pth``, an empanada ``.yaml`` (with the TorchScript files it names), a
        folder holding one, a ``.empanada`` archive, or an ``http(s)://`` URL of any of these.
    sha256 : str, optional
        Expected SHA-256 of the file or download.
    description : str, optional
        Shown by ``model_info`` instead of the model's own.
    overwrite : bool
        Replace an entry of the same name (default: refuse with FileExistsError).

    Returns
    -------
    dict
        The registry entry (``kind``, ``source``, ``sha256``, ``summary``, ...).

    Raises
    ------
    FileExistsError
        When ``name`` is taken and ``overwrite`` is False.
    ValueError
        When the source is not a model, or ``name`` is not usable.
    ConnectionError
        When a URL cannot be downloaded (the message names the cache folder).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> enb.register_model("my-mito", "runs/mito.pth")  # doctest: +SKIP
    >>> model = enb.load_model("my-mito")  # doctest: +SKIP
    """
    from . import registry

    return registry.register(name, path_or_url, sha256=sha256, description=description, overwrite=overwrite)


def list_models() -> dict[str, str]:
    """Every model known by name: registered ones and the published empanada models.

    Returns
    -------
    dict of str to str
        ``{name: location}``: the registry file of a registered or downloaded model, the download
        URL of a published model not downloaded yet.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> "MitoNet_v1_mini" in enb.list_models()
    True
    """
    from . import registry

    return {
        n: (e["source"] if e["published"] and not e["cached"] else e["path"])
        for n, e in registry.list_registered().items()
    }


def read_model_file(path: str | os.PathLike) -> dict:
    """The ``{"format", "card", "state_dict"}`` dict of an empanada_nb model file (or training checkpoint)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(unreadable(path, "a model file saved by empanada_nb", e)) from None
    if isinstance(ckpt, dict) and "model" in ckpt and "card" in ckpt.get("model", {}):
        ckpt = ckpt["model"]  # a training checkpoint: take the model inside it
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "card" not in ckpt:
        raise ValueError(
            f"{path}: not an empanada_nb model (expected format {FORMAT}); for empanada's TorchScript files "
            "give the model's .yaml config or .empanada archive"
        )
    return ckpt


def _resolve(path_or_name: str | os.PathLike) -> tuple[str, Path | str]:
    """``("empanada_nb" | "empanada", local path or URL)`` for what load_model was given."""
    from . import registry
    from ._download import is_url
    from ._sources import YAML_SUFFIXES, check_empanada_config, find_in_folder, read_yaml, sniff_model_file

    s = str(path_or_name)
    if is_url(s):
        return registry.fetch_model_url(s)
    p = Path(s).expanduser()
    if p.is_dir():
        p = find_in_folder(p)
    if p.is_file():
        if p.suffix.lower() in YAML_SUFFIXES:
            cfg = read_yaml(p)
            if isinstance(cfg, dict) and "architecture" in cfg:
                if not p.with_suffix(".pth").is_file():
                    raise FileNotFoundError(
                        f"{p} is a model card; its model {p.with_suffix('.pth').name} is not beside it"
                    )
                return "empanada_nb", p.with_suffix(".pth")  # our card: the model is beside it
            check_empanada_config(cfg, str(p))
            return "empanada", p
        return ("empanada" if sniff_model_file(p) in ("torchscript", "archive") else "empanada_nb"), p
    found = registry.locate(s)
    if found is not None:
        return found
    if registry.is_registry_name(s) and Path(s + ".pth").is_file():
        return "empanada_nb", Path(s + ".pth")  # saved by an older empanada_nb as NAME.pth
    if p.suffix or os.sep in s or "/" in s:
        raise FileNotFoundError(f"model {p} is neither a file nor a registered name; check the path")
    raise registry.unknown_name(s)


def _load_empanada(source: Path | str) -> nn.Module:
    try:
        from .empanada_format import load_empanada_model
    except ImportError:
        raise ValueError(
            f"{source}: an empanada (TorchScript + YAML) model, and this empanada_nb has no empanada_format "
            "module to read it; update empanada_nb"
        ) from None
    return load_empanada_model(str(source))


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model, in eval mode: a file, folder, archive, URL, registered name or published empanada name.

    Resolved in this order: an existing file or folder (empanada_nb ``.pth`` or training
    checkpoint; empanada ``.yaml`` or ``.empanada`` archive); an ``http(s)://`` URL (downloaded
    once into the registry's cache); a registered name (see ``register_model``); a published
    empanada model (``"MitoNet_v1"``, ``"MitoNet_v1_mini"``, ...; downloaded once); ``NAME.pth`` in
    the working folder. empanada's format is read by ``empanada_format.load_empanada_model``.

    Parameters
    ----------
    path_or_name : str or os.PathLike
        What to load (see above).
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    torch.nn.Module
        The model in eval mode, with ``model.card``, ``model.norms`` and ``model.source`` set.

    Raises
    ------
    FileNotFoundError
        When nothing matches; the closest known names are suggested.
    ValueError
        When the file is not a model (truncated, random, a YAML missing keys).
    ConnectionError
        When a download fails (the message names the cache folder).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = enb.save_model(enb.build_model("PanopticDeepLab", "resnet18"), Path(tmp) / "mito.pth")
    ...     model = enb.load_model(path)
    >>> model.card.encoder, model.training
    ('resnet18', False)
    >>> model = enb.load_model("MitoNet_v1_mini")  # doctest: +SKIP
    """
    kind, path = _resolve(path_or_name)
    if kind == "empanada":
        model = _load_empanada(path)
        model.source = str(path_or_name)  # finetune() records it as the parent in the card's lineage
        return model.to(resolve_device(device) or "cpu").eval()
    ckpt = read_model_file(path)
    card = ModelCard.from_dict(ckpt["card"])
    model = build_model(
        card.architecture, card.encoder, num_classes=card.num_classes, pointrend=card.pointrend, **card.arch_kwargs
    )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise ValueError(
            f"{path}: its weights do not fit its model card ({card.architecture}, {card.encoder}, "
            f"{card.num_classes} class(es)); the file holds {describe_weights(ckpt['state_dict'])}"
        ) from None
    model.norms = dict(card.norms)
    model.card = card
    model.finetunable_layers = card.finetunable_layers
    model.source = str(path_or_name)
    return model.to(resolve_device(device) or "cpu").eval()


def unreadable(path: str | os.PathLike, what: str, error: BaseException) -> str:
    """One line for a file torch cannot load: damaged (a torch zip cut short) or not ``what`` at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = os.path.getsize(path)
    except OSError:
        return f"{path}: cannot be read ({error})"
    if head == b"PK\x03\x04":  # a torch zip file whose end (central directory) is missing or broken
        return (
            f"{path}: damaged (truncated or incomplete, {size} bytes; {error.__class__.__name__}); "
            "use a complete copy or save it again"
        )
    return f"{path}: not {what} (truncated or not a model: {error.__class__.__name__}); save or download it again"


def describe_weights(state_dict: dict) -> str:
    """What model a state dict belongs to, from its keys and head shapes (for one-line mismatch errors)."""
    keys = list(state_dict)
    arch = "PanopticBiFPN" if any("fpn." in k for k in keys) else "PanopticDeepLab"
    sem = [k for k in keys if k.startswith("semantic_head.") and k.endswith("weight") and state_dict[k].ndim == 4]
    n = int(state_dict[sem[-1]].shape[0]) if sem else None
    classes = "" if n is None else f", {1 if n == 1 else n - 1} class(es) ({n} semantic output channel(s))"
    enc = [k for k in keys if k.startswith("encoder.")]
    depth = {v.shape[0] for k, v in state_dict.items() if k.startswith("encoder.") and k.endswith("conv3.weight")}
    encoder = "a bottleneck (resnet50-like) encoder" if depth else "a basic-block (resnet18/34-like) encoder"
    return f"the weights of a {arch} with {encoder if enc else 'an unknown encoder'}{classes}"
