"""empanada's model format: read MitoNet-style YAML + TorchScript files and ``.empanada`` archives, write them back.

Formats followed (empanada-dl 0.1.7 / empanada-napari 1.2.4):

- model YAML: ``empanada_napari/configs/MitoNet_v1_mini.yaml`` (keys ``class_names``, ``labels``,
  ``thing_list``, ``model``, ``model_quantized``, ``padding_factor``, ``norms``, ``description``, ``FINETUNE``),
  written by empanada's ``scripts/export_model.py``;
- weights: a TorchScript module (``torch.jit.script`` + ``torch.jit.save``) of empanada's
  ``Quantizable*PR`` models with conv+BN(+ReLU) fused by ``fuse_model()``;
- ``.empanada``: a zip of ``NAME.yaml`` and the ``.pth`` files it names (``_export_import_models.py``).

Loading takes the TorchScript state dict, renames empanada's keys to ours (``KEY_RULES``), splits
fused conv+BN pairs back into a conv and an identity BatchNorm, infers the architecture from the
tensor shapes and loads the weights strictly into empanada_nb's own eager modules, so loaded models
segment, finetune and save like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import urllib.parse
import warnings
import zipfile
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn as nn
import yaml

from ._atomic import atomic_path
from .model_io import ModelCard, card_for
from .model_io import _resolve as _resolve_kind
from .models import build_model

REQUIRED_KEYS = ("class_names", "thing_list", "model", "norms", "padding_factor")
CARD_FILE = "empanada_nb_card.json"  # extra file inside TorchScript files written by export_model

# empanada state-dict names -> empanada_nb names (applied in order; fused-module nesting is handled after)
KEY_RULES = [
    (re.compile(r"^encoder\."), "encoder.body."),
    (re.compile(r"\.sepconv\."), "."),
    (re.compile(r"\.aspp\.convs\.4\.aspp_pooling\."), ".aspp.pool."),
    (re.compile(r"\.aspp\.convs\.(\d+)\."), r".aspp.branches.\1."),
    (re.compile(r"\.aspp\.project\.(\d+)\."), r".aspp.project.0.\1."),
    (re.compile(r"^semantic_pr\.point_head\.fc_layers\.(\d+)\.0\."), r"semantic_pr.fc.\1."),
    (re.compile(r"^semantic_pr\.point_head\.predictor\."), "semantic_pr.predictor."),
    (re.compile(r"_decoder\.upsamplings\."), "_decoder.ups."),
]
_RESNETS = {  # (bottleneck, blocks in layer3) -> name
    (False, 2): "resnet18",
    (False, 6): "resnet34",
    (True, 6): "resnet50",
    (True, 23): "resnet101",
}
_WARNED: set[str] = set()


def _resolve(src: str | os.PathLike) -> Path:
    """Local path of a file or URL (downloaded once into the registry's cache by ``model_io``)."""
    return Path(_resolve_kind(src)[1])


@contextlib.contextmanager
def _quiet_jit():
    """torch 2.x flags torch.jit as deprecated; empanada's format is TorchScript, so say nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit")
        yield


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(msg, stacklevel=3)


# ----------------------------------------------------------------------------------------- sources
def is_empanada_source(src: Any) -> bool:
    """True for a path or URL naming an empanada model YAML or ``.empanada`` archive."""
    s = str(src).split("?")[0].lower()
    return s.endswith((".yaml", ".yml", ".empanada"))


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a TorchScript archive (a zip holding ``constants.pkl`` or ``code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_empanada_config(path_or_url: str | os.PathLike) -> dict:
    """Read and check an empanada model YAML (path or URL).

    Parameters
    ----------
    path_or_url : str or PathLike
        The ``.yaml`` file, e.g. empanada-napari's ``MitoNet_v1_mini.yaml``.

    Returns
    -------
    dict
        The YAML's keys, with ``class_names`` keyed by int and ``_source`` set to where it was read.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import yaml
    >>> cfg = {"class_names": {1: "mito"}, "thing_list": [1], "model": "MitoNet_mini.pth",
    ...        "norms": {"mean": 0.57571, "std": 0.12765}, "padding_factor": 128}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "MitoNet_v1_mini.yaml").write_text(yaml.safe_dump(cfg))
    ...     read = read_empanada_config(Path(tmp) / "MitoNet_v1_mini.yaml")
    >>> read["class_names"], read["padding_factor"]
    ({1: 'mito'}, 128)
    """
    path = _resolve(path_or_url)
    cfg = _check_config(Path(path).read_bytes(), str(path))
    cfg["_source"] = str(path_or_url)
    return cfg


def _check_config(text: bytes, label: str) -> dict:
    try:
        cfg = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{label}: not a readable YAML file ({e.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        keys = ", ".join(REQUIRED_KEYS)
        raise ValueError(f"{label}: not an empanada model YAML (expected a mapping with keys {keys})")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ValueError(
            f"{label}: empanada model YAML lacks {', '.join(missing)}; add them (see MitoNet_v1_mini.yaml)"
        )
    cfg["class_names"] = {int(k): str(v) for k, v in cfg["class_names"].items()}
    return cfg


def _weights_path(ref: str, cfg_source: str, cfg_dir: Path) -> Path:
    """Resolve the ``model`` entry of a YAML: URL, absolute path, or a path relative to the YAML."""
    if ref.startswith(("http://", "https://")):
        return _resolve(ref)
    if cfg_source.startswith(("http://", "https://")) and not os.path.isabs(ref):
        return _resolve(urllib.parse.urljoin(cfg_source, ref))
    p = Path(ref).expanduser()
    for cand in (p, cfg_dir / p, cfg_dir / p.name):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"model weights {ref!r} named by {cfg_source} not found (looked beside the YAML too)")


# ------------------------------------------------------------------------------------- state dicts
def _conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """Conv path -> path of the BatchNorm that directly follows it (the pairs empanada fuses)."""
    pairs = {}
    for prefix, mod in model.named_modules():
        kids = list(mod.named_children())
        for (na, a), (nb, b) in zip(kids, kids[1:]):
            if isinstance(a, (nn.Conv2d, nn.Conv1d)) and isinstance(b, nn.BatchNorm2d):
                pre = f"{prefix}." if prefix else ""
                pairs[pre + na] = pre + nb
    return pairs


def rename_empanada_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an empanada state dict's keys to empanada_nb's (``KEY_RULES``); our own keys pass through.

    Parameters
    ----------
    state : dict
        State dict of an empanada model (e.g. ``torch.jit.load(MitoNet.pth).state_dict()``).

    Returns
    -------
    dict
        Same tensors under empanada_nb names (fused conv nesting not yet resolved).

    Examples
    --------
    >>> rename_empanada_keys({"encoder.conv1.weight": torch.zeros(1)})
    {'encoder.body.conv1.weight': tensor([0.])}
    """
    if any(k.startswith("encoder.body.") for k in state):
        return dict(state)
    out = {}
    for k, v in state.items():
        for pat, rep in KEY_RULES:
            k = pat.sub(rep, k)
        out[k] = v
    return out


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map renamed weights onto ``model``'s keys, unfusing empanada's fused conv+BN(+ReLU) modules.

    A fused conv (empanada's ``fuse_model()``) has a bias and no BatchNorm; here the conv keeps the
    weight and the BatchNorm that follows it becomes the identity plus that bias (mean 0, variance 1,
    scale sqrt(1 + eps)), which computes the same function up to float rounding.
    """
    expected = model.state_dict()
    fixed: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k not in expected:
            m = re.match(r"^(.*)\.0\.(weight|bias)$", k)
            if m and (f"{m[1]}.{m[2]}" in expected or f"{m[1]}.weight" in expected):
                k = f"{m[1]}.{m[2]}"
        fixed[k] = v
    pairs = _conv_bn_pairs(model)
    unfused = []
    for conv, bn in pairs.items():
        if f"{conv}.bias" in fixed and f"{conv}.bias" not in expected and f"{bn}.weight" not in fixed:
            unfused.append(bn)
            bias = fixed.pop(f"{conv}.bias")
            eps = model.get_submodule(bn).eps
            fixed[f"{bn}.weight"] = torch.full_like(bias, (1.0 + eps) ** 0.5)
            fixed[f"{bn}.bias"] = bias
            fixed[f"{bn}.running_mean"] = torch.zeros_like(bias)
            fixed[f"{bn}.running_var"] = torch.ones_like(bias)
            fixed[f"{bn}.num_batches_tracked"] = torch.tensor(0)
    # Training must not renormalise these by batch statistics (that would change the loaded function);
    # the card carries the names through save/load, and training.loop.set_train_mode keeps them in eval.
    model.fixed_bn = sorted(unfused)
    return fixed


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """Architecture name and ``build_model`` keyword arguments from renamed weights' names and shapes."""
    k = set(state)
    if "encoder.body.conv1.weight" not in k and "encoder.body.conv1.0.weight" not in k:
        raise ValueError("weights use an encoder other than a ResNet (empanada's RegNets are not supported)")
    bottleneck = any(n.startswith("encoder.body.layer1.0.conv3.") for n in k)
    blocks = len({n.split(".")[3] for n in k if n.startswith("encoder.body.layer3.")})
    if (bottleneck, blocks) not in _RESNETS:
        raise ValueError(f"unknown ResNet depth (bottleneck={bottleneck}, {blocks} blocks in stage 3)")
    encoder = _RESNETS[(bottleneck, blocks)]
    n_sem = state["semantic_head.head.1.weight"].shape[0]
    kw: dict[str, Any] = {
        "encoder": encoder,
        "num_classes": 1 if n_sem == 1 else n_sem - 1,
        "pointrend": any(n.startswith("semantic_pr.") for n in k),
    }
    if any(n.startswith("semantic_fpn.") for n in k):
        empanada_fpn = any(n.startswith("semantic_fpn.bifpns.") for n in k)
        layer_key = "bifpns" if empanada_fpn else "layers"
        kw.update(
            fpn_dim=int(state["semantic_head.head.1.weight"].shape[1]),
            fpn_layers=len({n.split(".")[2] for n in k if n.startswith(f"semantic_fpn.{layer_key}.")}),
            bifpn="empanada" if empanada_fpn else "empanada_nb",
            ins_decoder=any(n.startswith("instance_fpn.") for n in k),
        )
        return "PanopticBiFPN", kw
    widths = [256, 512, 1024, 2048] if bottleneck else [64, 128, 256, 512]

    def projections(dec: str) -> list[tuple[int, int]]:
        idx = sorted({int(n.split(".")[2]) for n in k if n.startswith(f"{dec}.project.")})
        out = []
        for i in idx:
            w = state.get(f"{dec}.project.{i}.0.weight", state.get(f"{dec}.project.{i}.0.0.weight"))
            out.append((widths.index(int(w.shape[1])) + 1, int(w.shape[0])))
        return out

    sem = projections("semantic_decoder")
    ins = projections("instance_decoder")
    kw.update(
        decoder_channels=int(state["semantic_head.head.1.weight"].shape[1]),
        low_level_stages=[s for s, _ in sem],
        low_level_project=[p for _, p in sem],
        ins_decoder=bool(ins),
        ins_ratio=ins[0][1] / sem[0][1] if ins else 0.5,
    )
    return "PanopticDeepLab", kw


def model_from_state_dict(state: dict[str, torch.Tensor], card: dict | None = None) -> nn.Module:
    """Build the empanada_nb module that ``state`` (empanada or empanada_nb names) fits, and load it strictly."""
    state = rename_empanada_keys(state)
    if card:
        c = ModelCard.from_dict(card)
        arch, kw = c.architecture, dict(c.arch_kwargs, encoder=c.encoder, num_classes=c.num_classes)
        kw["pointrend"] = c.pointrend
    else:
        arch, kw = infer_architecture(state)
    model = build_model(arch, **kw)
    try:
        model.load_state_dict(fit_state_dict(model, state), strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise ValueError(f"weights do not fit the inferred {arch} ({first})") from None
    return model


# ------------------------------------------------------------------------------------------ loading
Weights = Union[Path, io.BytesIO]


def _load_torchscript(src: Weights, label: str) -> tuple[torch.jit.ScriptModule, dict | None]:
    extra = {CARD_FILE: ""}
    try:
        with _quiet_jit():
            ts = torch.jit.load(
                src if isinstance(src, io.BytesIO) else str(src), map_location="cpu", _extra_files=extra
            )
    except Exception as e:
        raise ValueError(
            f"{label}: not a TorchScript model file ({e.__class__.__name__}); re-download or re-export it"
        ) from None
    card = json.loads(extra[CARD_FILE]) if extra[CARD_FILE] else None
    return ts, card


def _read_archive(path: Path) -> tuple[dict, zipfile.ZipFile]:
    """The YAML config of an ``.empanada`` archive and the open archive (members are read from it in memory)."""
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not an .empanada archive (not a zip); export it again") from None
    yamls = [n for n in z.namelist() if n.endswith((".yaml", ".yml")) and "/" not in n]
    if not yamls:
        z.close()
        raise ValueError(f"{path}: .empanada archive holds no NAME.yaml; export it again")
    name = f"{path.stem}.yaml" if f"{path.stem}.yaml" in yamls else yamls[0]
    return _check_config(z.read(name), f"{path}:{name}"), z


def _archive_member(z: zipfile.ZipFile, ref: str) -> tuple[io.BytesIO, str]:
    """A weights file named by an archive's YAML (by base name, as empanada-napari's export writes it)."""
    name = os.path.basename(ref)
    if name not in z.namelist():
        pths = [n for n in z.namelist() if n.endswith((".pth", ".pt"))]
        if ref != name or len(pths) != 1:  # empanada-napari's import falls back to the one *.p* file
            raise ValueError(f"{z.filename}: archive lacks {name!r} named by its YAML; export it again")
        name = pths[0]
    return io.BytesIO(z.read(name)), f"{z.filename}:{name}"


def card_from_config(cfg: dict, model: nn.Module) -> ModelCard:
    """An empanada_nb ``ModelCard`` for ``model`` from an empanada YAML config."""
    card = card_for(model)
    engine = (cfg.get("FINETUNE") or {}).get("engine_params") or {}
    card.class_names = dict(cfg["class_names"])
    card.thing_list = [int(t) for t in cfg["thing_list"]]
    card.norms = {"mean": float(cfg["norms"]["mean"]), "std": float(cfg["norms"]["std"])}
    card.padding_factor = int(cfg["padding_factor"])
    card.label_divisor = int(engine.get("label_divisor", card.label_divisor))
    card.description = str(cfg.get("description") or "").strip()
    card.config = {"empanada": {k: v for k, v in cfg.items() if not k.startswith("_")}}
    card.fixed_bn = list(getattr(model, "fixed_bn", []))
    return card


def load_empanada_model(
    path_or_url: str | os.PathLike, device: str | torch.device = "cpu", quantized: bool = False
) -> nn.Module:
    """Load an empanada model (YAML, ``.empanada`` archive or TorchScript ``.pth``; path or URL) as an eager module.

    Parameters
    ----------
    path_or_url : str or PathLike
        ``MitoNet_v1.yaml`` (its ``model`` entry may be a URL, downloaded once into torch.hub's
        cache), ``MitoNet_v1.empanada``, or a TorchScript ``.pth``.
    device : str or torch.device
        Where the model goes.
    quantized : bool
        Use the YAML's ``model_quantized`` file (CPU only, inference only) when this platform can run
        it; otherwise warn once and load the fp32 ``model``.

    Returns
    -------
    torch.nn.Module
        An empanada_nb model in eval mode with ``card``, ``norms`` and ``padding_factor`` from the YAML.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> mitonet_like = enb.build_model("PanopticDeepLab", "resnet18", low_level_stages=(1,), low_level_project=(32,))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = enb.export_model(mitonet_like, Path(tmp) / "MyMitoNet.empanada")
    ...     model = load_empanada_model(path)
    >>> model.arch_kwargs["low_level_stages"], model.card.class_names, model.training
    ([1], {1: 'mito'}, False)
    """
    src = str(path_or_url)
    low = src.split("?")[0].lower()
    archive = None
    if low.endswith(".empanada"):
        cfg, archive = _read_archive(_resolve(src))
    elif low.endswith((".yaml", ".yml")):
        cfg = read_empanada_config(src)
    else:
        cfg = None
    try:

        def weights(ref: str) -> tuple[Weights, str]:
            if archive is not None:
                return _archive_member(archive, ref)
            p = _weights_path(ref, src, Path(_resolve(src)).parent)
            return p, str(p)

        if cfg is None:
            w, label = _resolve(src), src
        else:
            w, label = weights(str(cfg["model"]))
        if quantized and cfg is not None and cfg.get("model_quantized"):
            qmodel = _try_quantized(*weights(str(cfg["model_quantized"])), cfg)
            if qmodel is not None:
                return qmodel
        ts, card = _load_torchscript(w, label)
    finally:
        if archive is not None:
            archive.close()
    model = model_from_state_dict(ts.state_dict(), card)
    if card:
        model.card = ModelCard.from_dict(card)
    if cfg is not None:
        card_from_config(cfg, model)
    c = card_for(model)
    model.norms = dict(c.norms)
    model.padding_factor = c.padding_factor
    model.source = src
    return model.to(device).eval()


class QuantizedModel(nn.Module):
    """Inference-only wrapper of an empanada quantized TorchScript model (CPU), with the usual attributes."""

    def __init__(self, ts: torch.jit.ScriptModule, card: ModelCard, architecture: str):
        super().__init__()
        self.ts = ts
        self.card, self.norms = card, dict(card.norms)
        self.architecture, self.num_classes = architecture, card.num_classes
        self.padding_factor = card.padding_factor

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.ts(x.cpu())
        return {k: out[k].to(x.device) for k in ("sem_logits", "ctr_hmp", "offsets")}


def _try_quantized(src: Weights, label: str, cfg: dict) -> nn.Module | None:
    """Load and smoke-test a quantized file; None (after one warning) where this platform cannot run it."""
    try:
        with _quiet_jit():
            ts = torch.jit.load(src if isinstance(src, io.BytesIO) else str(src), map_location="cpu").eval()
        pf = int(cfg["padding_factor"])
        with torch.no_grad():
            ts(torch.zeros(1, 1, pf, pf))
    except Exception as e:  # no quantized engine (e.g. Apple Silicon without qnnpack), bad file, ...
        name = os.path.basename(label)
        _warn_once(f"quantized model {name} cannot run here ({e.__class__.__name__}); using the fp32 model")
        return None
    arch = "PanopticBiFPN" if int(cfg["padding_factor"]) >= 128 else "PanopticDeepLab"
    card = ModelCard(architecture=arch, num_classes=len(cfg["class_names"]), padding_factor=int(cfg["padding_factor"]))
    model = QuantizedModel(ts, card, arch)
    card_from_config(cfg, model)
    model.norms = dict(card.norms)
    return model.eval()


# ------------------------------------------------------------------------------------------ export
def _empanada_yaml(model: nn.Module, weights_ref: str) -> dict:
    card = card_for(model)
    n = card.num_classes
    return {
        "class_names": {int(k): v for k, v in card.class_names.items()},
        "labels": list(range(1, n + 1)),
        "thing_list": [int(t) for t in card.thing_list],
        "model": weights_ref,
        "model_quantized": None,
        "padding_factor": int(getattr(model, "padding_factor", card.padding_factor)),
        "norms": {k: float(v) for k, v in getattr(model, "norms", card.norms).items()},
        "description": card.description or f"{card.architecture} ({card.encoder}) exported by empanada_nb",
        "FINETUNE": {
            "criterion": "PanopticLoss",
            "criterion_params": {  # MitoNet's training loss weights (empanada-napari configs)
                "ce_weight": 1,
                "l1_weight": 0.01,
                "mse_weight": 200,
                "pr_weight": 1,
                "top_k_percent": 0.2,
            },
            "dataset_class": "SingleClassInstanceDataset" if n == 1 else "PanopticDataset",
            "dataset_params": {"weight_gamma": 0.7},
            "engine": "PanopticDeepLabEngine",
            "engine_params": {
                "confidence_thr": 0.5,
                "label_divisor": int(card.label_divisor),
                "nms_kernel": 7,
                "nms_threshold": 0.1,
                "stuff_area": 64,
                "thing_list": [int(t) for t in card.thing_list],
                "void_label": 0,
            },
        },
    }


def _script(model: nn.Module) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` (a CPU eval copy with only its modules; Python-only attributes dropped)."""
    import copy

    m = copy.deepcopy(model).cpu().eval()
    for attr in ("card", "arch_kwargs", "norms", "source"):
        m.__dict__.pop(attr, None)
    with _quiet_jit():
        return torch.jit.script(m)


def export_model(model: nn.Module, path: str | os.PathLike, format: str = "empanada") -> Path:
    """Write ``model`` in empanada's format: TorchScript ``.pth`` + model YAML, or one ``.empanada`` archive.

    Parameters
    ----------
    model : torch.nn.Module
        An empanada_nb model (any architecture and encoder).
    path : str or PathLike
        ``NAME.yaml`` (writes ``NAME.yaml`` and ``NAME.pth`` beside it; the YAML names the absolute
        ``.pth`` path, as empanada-napari's registered models do) or ``NAME.empanada`` (a zip of
        ``NAME.yaml`` and ``NAME.pth``, the YAML naming the ``.pth`` by file name, as empanada-napari's
        Export Model widget writes it). Any other suffix is treated as ``.yaml``.
    format : str
        Only ``"empanada"``.

    Returns
    -------
    pathlib.Path
        The YAML or archive written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = export_model(enb.build_model("PanopticDeepLab", "resnet18"), Path(tmp) / "mito.yaml")
    ...     sorted(p.name for p in Path(tmp).iterdir())
    ['mito.pth', 'mito.yaml']
    """
    if format != "empanada":
        raise ValueError(f"unknown export format {format!r}; only 'empanada' is supported here")
    path = Path(path)
    ts = _script(model)
    card = card_for(model)
    card.arch_kwargs = dict(getattr(model, "arch_kwargs", card.arch_kwargs))
    buf = io.BytesIO()
    with _quiet_jit():
        torch.jit.save(ts, buf, _extra_files={CARD_FILE: json.dumps(card.to_dict(), default=str)})
    if path.suffix == ".empanada":
        name = path.stem
        with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as td:
            y = Path(td) / f"{name}.yaml"
            y.write_text(yaml.safe_dump(_empanada_yaml(model, f"{name}.pth"), sort_keys=False))
            with atomic_path(path, suffix=".empanada") as tmp:
                with zipfile.ZipFile(tmp, "w") as z:
                    z.write(y, y.name)
                    z.writestr(f"{name}.pth", buf.getvalue())
        return path
    path = path.with_suffix(".yaml")
    pth = path.with_suffix(".pth")
    with atomic_path(pth, suffix=".pth") as tmp:
        tmp.write_bytes(buf.getvalue())
    with atomic_path(path, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(_empanada_yaml(model, str(pth.resolve())), sort_keys=False))
    return path
