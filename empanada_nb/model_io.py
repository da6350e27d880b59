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
    config : dict
        The ``TrainConfig`` it was trained with, as a dict.
    history_summary : dict
        Final training and validation figures.
    created : str
        ISO timestamp written by ``save_model``.

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
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    history_summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = ""

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
        )
        model.card = card
    for k, v in overrides.items():
        setattr(card, k, v)
    return card


def save_model(model: nn.Module, path: str | os.PathLike, card: ModelCard | None = None) -> Path:
    """Save weights and model card to ``path`` (.pth) and the card to ``path`` with .yaml.

    Both files are written atomically (temporary file + rename).

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``train`` or ``load_model``.
    path : str or os.PathLike
        Target file; a suffix other than ``.pth``/``.pt`` is replaced by ``.pth``.
    card : ModelCard, optional
        The card to store; default the model's own (``model.card``, created from its attributes
        when missing). Its ``norms``, ``finetunable_layers`` and ``created`` are updated.

    Returns
    -------
    pathlib.Path
        The written ``.pth`` path.

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
    """
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
    """Make ``load_model(name)`` resolve to a file path or a URL (downloaded once into torch.hub's cache).

    Parameters
    ----------
    name : str
        The name to register (replaces an earlier registration of the same name).
    path_or_url : str
        A local ``.pth`` file or an ``http(s)://`` URL of one.

    Returns
    -------
    None

    Examples
    --------
    >>> import empanada_nb as enb
    >>> enb.register_model("my-mito", "https://example.org/models/my_mito.pth")
    >>> enb.list_models()["my-mito"]
    'https://example.org/models/my_mito.pth'
    >>> model = enb.load_model("my-mito")  # doctest: +SKIP
    """
    _REGISTRY[name] = str(path_or_url)


def list_models() -> dict[str, str]:
    """The registered model names and what they point to.

    Returns
    -------
    dict of str to str
        ``{name: path_or_url}`` (a copy: editing it does not register anything).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> enb.register_model("local-mito", "/data/models/mito.pth")
    >>> "local-mito" in enb.list_models()
    True
    """
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
    """Load a model saved by ``save_model`` (path, URL or registered name), in eval mode.

    A training checkpoint (``checkpoint.pth`` of a run) also loads: the model inside it is taken.

    Parameters
    ----------
    path_or_name : str or os.PathLike
        A ``.pth`` file, an ``http(s)://`` URL (cached in torch.hub's folder) or a name given to
        ``register_model``.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    torch.nn.Module
        The model in eval mode, with ``model.card`` and ``model.norms`` set.

    Raises
    ------
    FileNotFoundError
        When ``path_or_name`` is neither a file nor a registered name.
    ValueError
        When the file is not an empanada_nb model.

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
    """
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
