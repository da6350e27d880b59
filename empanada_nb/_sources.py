"""What a model file, folder, archive or URL holds: the detection shared by the registry and load_model.

Two formats exist: empanada_nb's own (``NAME.pth`` holding ``format``/``card``/``state_dict``, see
model_io) and empanada's (a YAML config naming a TorchScript ``.pth``, or a ``.empanada`` zip of both,
as empanada-napari 1.2.4's ``utils.add_new_model`` and ``_export_import_models.py`` read and write them).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
import warnings
import zipfile
from pathlib import Path
from typing import Any

import yaml

from ._download import fetch, is_url, url_filename

#: keys an empanada model YAML must have (empanada-napari's configs/*.yaml; ``labels`` and ``FINETUNE`` optional)
EMPANADA_KEYS = ("class_names", "thing_list", "model", "padding_factor", "norms")
MODEL_SUFFIXES = (".pth", ".pt", ".tar")
ARCHIVE_SUFFIXES = (".empanada", ".zip")
YAML_SUFFIXES = (".yaml", ".yml")


def url_cache_folder(root: Path, url: str) -> Path:
    """One cache folder per URL, so two URLs with the same file name never collide."""
    return root / "downloads" / hashlib.sha1(url.encode()).hexdigest()[:16]


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable YAML file ({e.__class__.__name__}); check the file") from None


def is_empanada_config(cfg: Any) -> bool:
    """An empanada model config (not an empanada_nb model card, which has ``architecture`` instead)."""
    return isinstance(cfg, dict) and "architecture" not in cfg and ("model" in cfg or "norms" in cfg)


def check_empanada_config(cfg: Any, where: str) -> None:
    """Raise a one-line ValueError naming the missing keys of an empanada model YAML."""
    if not isinstance(cfg, dict):
        raise ValueError(
            f"{where}: not an empanada model config (expected a YAML mapping with {', '.join(EMPANADA_KEYS)})"
        )
    missing = [k for k in EMPANADA_KEYS if k not in cfg]
    if missing:
        raise ValueError(
            f"{where}: empanada model config lacks {', '.join(missing)}; a model YAML needs "
            f"{', '.join(EMPANADA_KEYS)} (see empanada-napari's configs/MitoNet_v1.yaml)"
        )


def torchscript_class(path: Path) -> str | None:
    """The top-level class of a TorchScript archive (e.g. ``PanopticBiFPNPR``), read from its data.pkl header.

    Returns None for anything that is not a TorchScript zip (TorchScript archives hold ``code/`` and
    ``constants.pkl``; plain ``torch.save`` zips do not).
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                return None
            pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            head = z.read(pkl[0])[:400] if pkl else b""
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    m = re.search(rb"c__torch__[\w.]*\n(\w+)\n", head)
    return m.group(1).decode() if m else "TorchScript"


def check_torchscript(path: Path, where: str) -> str:
    """Raise unless ``path`` is a complete TorchScript archive; return its class name."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: model file {path} not found; put it beside the YAML or fix `model:`")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a TorchScript model file (truncated or not a model); download or export it again"
        )
    cls = torchscript_class(path)
    if cls is None:
        raise ValueError(f"{path}: a zip but not a TorchScript model; empanada's `model:` must name a TorchScript .pth")
    return cls


def sniff_model_file(path: Path) -> str:
    """``"torchscript"``, ``"archive"`` or ``"torch"`` (a torch.save file: load it to know more)."""
    if path.suffix.lower() in ARCHIVE_SUFFIXES:
        return "archive"
    if torchscript_class(path) is not None:
        return "torchscript"
    return "torch"


def localize_empanada_yaml(cfg: dict, base: str | Path, cache_root: Path, out_dir: Path) -> dict[str, Any]:
    """Resolve the weight files an empanada config names: download URLs, resolve relative paths.

    ``base`` is the YAML's folder or URL (relative ``model:`` paths are taken relative to it, as
    empanada-napari's ``abspath`` does). Returns ``{"config", "files": {entry name: local path}}``
    where ``config`` names the files by bare entry name; a URL ``model_quantized`` stays a URL
    (downloaded only if asked for).
    """
    out = dict(cfg)
    files: dict[str, Path] = {}
    for key in ("model", "model_quantized"):
        ref = cfg.get(key)
        if not ref:
            continue
        ref = str(ref).strip()
        if not is_url(ref) and is_url(str(base)):
            ref = urllib.parse.urljoin(str(base), ref)
        if is_url(ref):
            if key == "model_quantized":
                out[key] = ref
                continue
            local = fetch(ref, url_cache_folder(cache_root, ref))
        else:
            local = Path(ref).expanduser()
            if not local.is_absolute():
                local = Path(base) / local
        if key == "model_quantized" and not local.is_file():
            warnings.warn(f"quantized model {local} not found; keeping the fp32 model only", stacklevel=3)
            out.pop(key)
            continue
        check_torchscript(local, f"`{key}:` of the model YAML")
        name = url_filename(str(local)) if key == "model" else f"{Path(local).stem}.pth"
        if key == "model_quantized" and name == files.get("model", Path()).name:
            name = "quantized_" + name
        files[name] = local
        out[key] = name
    return {"config": out, "files": files}


def find_in_folder(folder: Path) -> Path:
    """The one model a folder holds: an empanada YAML, else one empanada_nb ``.pth`` (checkpoints aside)."""
    yamls = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in YAML_SUFFIXES and p.is_file():
            cfg = read_yaml(p)
            if is_empanada_config(cfg):
                yamls.append(p)
    if len(yamls) == 1:
        return yamls[0]
    if len(yamls) > 1:
        raise ValueError(f"{folder} holds several model YAMLs ({', '.join(p.name for p in yamls)}); name one file")
    pths = [
        p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in (".pth", ".pt") and not p.name.endswith(".checkpoint.pth") and p.is_file()
    ]
    if len(pths) == 1:
        return pths[0]
    if not pths:
        raise FileNotFoundError(f"{folder} holds no model (.pth or empanada .yaml); give the model file itself")
    raise ValueError(f"{folder} holds several models ({', '.join(p.name for p in pths)}); name one file")


def safe_extract(archive: Path, dst: Path) -> list[Path]:
    """Extract a flat model archive; refuses members with folders or '..' (zip-slip)."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            for m in members:
                if "/" in m.filename.strip("/") or "\\" in m.filename or m.filename.startswith(".."):
                    raise ValueError(f"{archive}: member {m.filename!r} is not a plain file name; not a model archive")
            z.extractall(dst, members=members)
            return [dst / m.filename for m in members]
    except zipfile.BadZipFile:
        raise ValueError(f"{archive}: not a zip archive (truncated or not a model archive); export it again") from None


def os_path(p: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(p)))
