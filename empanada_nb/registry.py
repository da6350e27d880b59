"""A model registry that lasts across kernels: named models in one folder, shared by every process.

Where: ``$EMPANADA_NB_MODELS``, else ``$EMPANADA_NB_HOME/models``, else the user's cache folder
(``~/.cache/empanada_nb/models`` on Linux, ``~/Library/Caches/empanada_nb/models`` on macOS,
``%LOCALAPPDATA%\\empanada_nb\\Cache\\models`` on Windows).

Layout::

    index.json              name -> entry (kind, files, source, sha256, summary); replaced atomically
    .lock                   file lock held while the index changes, so two kernels can register at once
    entries/NAME.TOKEN/     the entry's own copy of its files (a new folder per registration)
    published/NAME/         downloads of empanada's published models (see published.py)
    downloads/HASH/         other downloads, one folder per URL

Each change stages its files first and swaps the index last, so bad input or a crash leaves the
registry as it was. Published empanada models (MitoNet_v1, MitoNet_v1_mini, ...) are known by name
without registering; they are downloaded on first use.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import yaml

from . import published as _pub
from ._atomic import atomic_dir, atomic_path
from ._download import fetch, file_sha256, is_url, url_filename
from ._sources import (
    ARCHIVE_SUFFIXES,
    YAML_SUFFIXES,
    check_empanada_config,
    find_in_folder,
    localize_empanada_yaml,
    os_path,
    read_yaml,
    safe_extract,
    sniff_model_file,
    url_cache_folder,
)

ENV_MODELS = "EMPANADA_NB_MODELS"
ENV_HOME = "EMPANADA_NB_HOME"
INDEX_FORMAT = "empanada_nb-registry/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def registry_dir() -> Path:
    """The registry folder (see the module docstring for how it is chosen).

    Returns
    -------
    Path
        The folder; it is created on first write.

    Examples
    --------
    >>> registry_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/empanada_nb/models')
    >>> isinstance(registry_dir(), Path)
    True
    """
    if os.environ.get(ENV_MODELS):
        return os_path(os.environ[ENV_MODELS])
    if os.environ.get(ENV_HOME):
        return os_path(os.environ[ENV_HOME]) / "models"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("empanada_nb", appauthor=False)) / "models"


# ---------------------------------------------------------------- index


def _lock(root: Path):
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / ".lock"), timeout=300)


def _read_index(root: Path) -> dict[str, dict]:
    path = root / "index.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return dict(data["models"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"registry index {path} is damaged; move it aside to start a new registry") from None


def _write_index(root: Path, models: dict[str, dict]) -> None:
    with atomic_path(root / "index.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps({"format": INDEX_FORMAT, "models": models}, indent=1, sort_keys=True))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"model name {name!r} is not usable: use letters, digits and _ . + - (no spaces or folders, <= 100 chars)"
        )


def all_names() -> list[str]:
    """Registered names and published empanada model names.

    Returns
    -------
    list of str
        Sorted registered names, then the published ones.

    Examples
    --------
    >>> "MitoNet_v1" in all_names()
    True
    """
    reg = sorted(_read_index(registry_dir()))
    return reg + [n for n in _pub.published_names() if n not in reg]


def unknown_name(name: str) -> FileNotFoundError:
    """A one-line error for an unknown model name, suggesting the closest known names."""
    names = all_names()
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    close += [n for n in names if n.lower() == str(name).lower() and n not in close]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return FileNotFoundError(
        f"no model {str(name)!r}: not a file, a registered name or a published empanada model; {hint}"
        "`empanada-nb models list` (or list_models()) shows the names"
    )


# ---------------------------------------------------------------- what a source holds


def _card_summary(card) -> dict[str, Any]:
    cfg = card.config or {}
    settings = {k: cfg[k] for k in ("iterations", "patch_size", "batch_size", "lr", "finetunable_layers") if k in cfg}
    lineage = dict(getattr(card, "lineage", {}) or {})
    ds = lineage.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("files"), list):  # the card keeps the list; the index a count
        lineage["dataset"] = {"sha256": ds.get("sha256"), "files": len(ds["files"])}
    if settings:
        lineage.setdefault("settings", settings)
    return {
        "format": "empanada_nb",
        "architecture": f"{card.architecture} ({card.encoder}{', PointRend' if card.pointrend else ''})",
        "description": getattr(card, "description", "") or "",
        "classes": {
            int(c): {"name": n, "kind": "thing" if c in card.thing_list else "stuff"}
            for c, n in card.class_names.items()
        },
        "padding_factor": card.padding_factor,
        "norms": dict(card.norms),
        "history": dict(card.history_summary or {}),
        "lineage": lineage,
        "created": card.created,
        "min_area": getattr(card, "min_area", None),
        "calibration": dict(getattr(card, "calibration", None) or {}),
    }


def _empanada_summary(cfg: dict, model_file: Path | None, arch: str | None = None) -> dict[str, Any]:
    from ._sources import torchscript_class

    thing = [int(t) for t in cfg.get("thing_list", [])]
    names = cfg.get("class_names", {})
    if isinstance(names, list):  # old empanada configs list the names in label order
        names = {int(lab): n for lab, n in zip(cfg.get("labels", range(1, len(names) + 1)), names)}
    cls = arch or (torchscript_class(model_file) if model_file else None) or "TorchScript"
    ft = cfg.get("FINETUNE") or {}
    return {
        "format": "empanada (TorchScript + YAML)",
        "architecture": cls,
        "description": " ".join(str(cfg.get("description", "")).split()),
        "classes": {int(c): {"name": n, "kind": "thing" if int(c) in thing else "stuff"} for c, n in names.items()},
        "padding_factor": cfg.get("padding_factor"),
        "norms": dict(cfg.get("norms") or {}),
        "history": {},
        "lineage": {"finetune": {k: ft[k] for k in ("criterion_params", "dataset_params", "engine_params") if k in ft}}
        if ft
        else {},
        "quantized": bool(cfg.get("model_quantized")),
    }


def _stage(source: str | os.PathLike, work: Path, root: Path, sha256: str | None) -> dict[str, Any]:
    """Validate ``source`` and gather what an entry needs: kind, files, main file name, summary."""
    from .model_io import ModelCard, read_model_file

    src = str(source)
    if is_url(src):
        fname = url_filename(src)
        if fname.lower().endswith(YAML_SUFFIXES):
            path = fetch(src, url_cache_folder(root, src), sha256=sha256)
            return _stage_empanada_yaml(read_yaml(path), src, src, root, work)
        path = fetch(src, url_cache_folder(root, src), sha256=sha256)
    else:
        path = os_path(src)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder; give a model file, folder, archive or URL")
        if sha256 and path.is_file() and file_sha256(path) != sha256.lower():
            raise ValueError(f"{path}: checksum mismatch (sha256 is not {sha256[:12]}...); check the file")
    if path.is_dir():
        path = find_in_folder(path)
    low = path.name.lower()
    if low.endswith(YAML_SUFFIXES):
        cfg = read_yaml(path)
        if isinstance(cfg, dict) and "architecture" in cfg and path.with_suffix(".pth").is_file():
            path = path.with_suffix(".pth")  # an empanada_nb model card: register the model beside it
        else:
            return _stage_empanada_yaml(cfg, str(path), path.parent, root, work)
    kind = sniff_model_file(path)
    if kind == "archive":
        out = work / "archive"
        out.mkdir()
        files = safe_extract(path, out)
        yamls = [f for f in files if f.suffix.lower() in YAML_SUFFIXES]
        pick = [f for f in yamls if f.stem == path.stem] or yamls
        if len(pick) != 1:
            raise ValueError(
                f"{path}: a model archive holds one NAME.yaml beside its .pth files; found {len(yamls)} YAMLs"
            )
        return _stage(pick[0], work, root, None)
    if kind == "torchscript":
        raise ValueError(
            f"{path}: an empanada TorchScript model; register its .yaml config (which names this file) "
            "or its .empanada archive"
        )
    card = ModelCard.from_dict(read_model_file(path)["card"])
    card_file = work / "card.yaml"  # the human-readable card travels with the entry (and its exports)
    card_file.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False))
    files = {"model.pth": path, "model.yaml": card_file}
    return {"kind": "empanada_nb", "files": files, "main": "model.pth", "summary": _card_summary(card)}


def _stage_empanada_yaml(cfg: Any, where: str, base, root: Path, work: Path) -> dict[str, Any]:
    check_empanada_config(cfg, where)
    loc = localize_empanada_yaml(cfg, base, root, work)
    model_name = loc["config"]["model"]
    cfg_file = work / "model.yaml"
    cfg_file.write_text(yaml.safe_dump(loc["config"], sort_keys=False))
    files = dict(loc["files"])
    files["model.yaml"] = cfg_file
    return {
        "kind": "empanada",
        "files": files,
        "main": "model.yaml",
        "summary": _empanada_summary(loc["config"], files[model_name]),
    }


# ---------------------------------------------------------------- writing entries


def _commit(name: str, staged: dict, source: str, *, overwrite: bool, description: str | None) -> dict[str, Any]:
    root = registry_dir()
    with _lock(root):
        models = _read_index(root)
        if name in models and not overwrite:
            raise FileExistsError(
                f"model {name!r} is already registered (from {models[name].get('source')}); "
                "pass overwrite=True (--overwrite) or remove it first"
            )
        rel = f"entries/{name}.{uuid.uuid4().hex[:8]}"
        with atomic_dir(root / rel) as tmp:
            for fname, src in staged["files"].items():
                shutil.copyfile(src, tmp / fname)
        summary = dict(staged["summary"])
        if description:
            summary["description"] = description
        entry = {
            "kind": staged["kind"],
            "dir": rel,
            "main": staged["main"],
            "files": sorted(staged["files"]),
            "source": source,
            "sha256": file_sha256(root / rel / staged["main"]),
            "added": datetime.datetime.now().isoformat(timespec="seconds"),
            "summary": summary,
        }
        old = models.get(name)
        models[name] = entry
        try:
            _write_index(root, models)
        except BaseException:
            shutil.rmtree(root / rel, ignore_errors=True)
            raise
        if old and (root / old["dir"]).is_dir():
            shutil.rmtree(root / old["dir"], ignore_errors=True)
    return {"name": name, **entry}


def register(
    name: str,
    source: str | os.PathLike,
    *,
    sha256: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Copy a model into the registry under ``name``.

    Parameters
    ----------
    name : str
        Letters, digits and ``_ . + -``; not one of the published empanada names.
    source : str or path
        A model file (empanada_nb ``.pth``; empanada ``.yaml``), a folder holding one, a
        ``.empanada`` archive, or an http(s) URL of any of these (downloaded into the cache once).
    sha256 : str, optional
        Expected checksum of the file or download.
    description : str, optional
        Replaces the model's own description in ``info``.
    overwrite : bool
        Replace an entry of the same name (default: refuse).

    Returns
    -------
    dict
        The new entry (``kind``, ``dir``, ``source``, ``summary``...).

    Examples
    --------
    >>> register("my-mito", "runs/mito.pth")  # doctest: +SKIP
    """
    _check_name(name)
    if name in _pub.PUBLISHED:
        raise ValueError(f"{name!r} is a published empanada model name; register under another name")
    root = registry_dir()
    if name in _read_index(root) and not overwrite:  # fail before any download; checked again under the lock
        raise FileExistsError(
            f"model {name!r} is already registered; pass overwrite=True (--overwrite) or remove it first"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage.", dir=root) as work:
        staged = _stage(source, Path(work), root, sha256)
        src = str(source) if is_url(str(source)) else str(os_path(source).resolve())
        return _commit(name, staged, src, overwrite=overwrite, description=description)


def save_to_registry(model, name: str, card=None) -> Path:
    """Save ``model`` straight into the registry under ``name`` (replacing it); returns the entry's .pth."""
    from .model_io import save_model

    _check_name(name)
    if name in _pub.PUBLISHED:
        raise ValueError(f"{name!r} is a published empanada model name; save under another name")
    root = registry_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage.", dir=root) as work:
        path = save_model(model, Path(work) / "model.pth", card)
        staged = _stage(path, Path(work), root, None)
        entry = _commit(name, staged, "save_model", overwrite=True, description=None)
    return root / entry["dir"] / entry["main"]


# ---------------------------------------------------------------- reading entries


def _published_yaml(name: str) -> Path:
    """empanada's config for a published model, with its weights downloaded beside it (once)."""
    root = registry_dir()
    folder = root / "published" / name
    cfg = _pub.published_config(name)
    fetch(cfg["model"], folder, sha256=_pub.PUBLISHED[name]["sha256"], filename=f"{name}.pth")
    cfg["model"] = f"{name}.pth"
    path = folder / f"{name}.yaml"
    if not path.exists():
        with atomic_path(path, suffix=".yaml") as tmp:
            tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def locate(name: str) -> tuple[str, Path] | None:
    """``(kind, local main file)`` of a registered or published name, downloading if needed; None if unknown."""
    root = registry_dir()
    entry = _read_index(root).get(name)
    if entry is not None:
        path = root / entry["dir"] / entry["main"]
        if not path.is_file():
            raise FileNotFoundError(f"registry entry {name!r} lost its files ({path}); remove it and register it again")
        return entry["kind"], path
    if name in _pub.PUBLISHED:
        return "empanada", _published_yaml(name)
    return None


def fetch_model_url(url: str) -> tuple[str, Path]:
    """Download the model at ``url`` into the cache (once) for load_model: ``(kind, local main file)``.

    An empanada YAML URL also brings the weights it names (relative names are resolved against the
    URL); the local copy of the YAML names them by absolute path.
    """
    root = registry_dir()
    path = fetch(url, url_cache_folder(root, url))
    if not url_filename(url).lower().endswith(YAML_SUFFIXES):
        return ("empanada" if sniff_model_file(path) in ("torchscript", "archive") else "empanada_nb"), path
    cfg = read_yaml(path)
    check_empanada_config(cfg, url)
    loc = localize_empanada_yaml(cfg, url, root, path.parent)
    cfg = dict(loc["config"])
    for key in ("model", "model_quantized"):
        if key in cfg and cfg[key] in loc["files"]:
            cfg[key] = str(Path(loc["files"][cfg[key]]).resolve())  # the weights sit in their own cache folder
    local = path.with_name(path.stem + ".local.yaml")
    with atomic_path(local, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return "empanada", local


def list_registered() -> dict[str, dict[str, Any]]:
    """Every model known by name: registered entries and the published empanada models.

    Returns
    -------
    dict
        name -> ``{"kind", "source", "path", "published", "cached", "description"}``.

    Examples
    --------
    >>> sorted(list_registered())[:1]  # doctest: +SKIP
    ['DropNet_base_v1']
    """
    root = registry_dir()
    out: dict[str, dict[str, Any]] = {}
    for name, e in sorted(_read_index(root).items()):
        out[name] = {
            "kind": e["kind"],
            "source": e["source"],
            "path": str(root / e["dir"] / e["main"]),
            "published": False,
            "cached": True,
            "description": e["summary"].get("description", ""),
        }
    for name in _pub.published_names():
        if name in out:
            continue
        cfg = _pub.published_config(name)
        out[name] = {
            "kind": "empanada",
            "source": cfg["model"],
            "path": str(root / "published" / name / f"{name}.yaml"),
            "published": True,
            "cached": (root / "published" / name / f"{name}.pth").is_file(),
            "description": cfg["description"],
        }
    return out


def info(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Description, architecture, classes (thing/stuff), padding factor, norms, history and lineage.

    Parameters
    ----------
    name_or_path : str or path
        A registered or published name, or a model file/folder/archive (not registered).

    Returns
    -------
    dict
        ``name, format, architecture, description, classes, padding_factor, norms, history, lineage``
        plus ``source``/``path`` where known.

    Examples
    --------
    >>> info("MitoNet_v1_mini")["padding_factor"]
    128
    """
    s = str(name_or_path)
    root = registry_dir()
    entry = _read_index(root).get(s)
    if entry is not None:
        summary = dict(entry["summary"])
        summary["classes"] = {int(c): v for c, v in summary.get("classes", {}).items()}  # JSON keys are strings
        return {
            "name": s,
            **summary,
            "source": entry["source"],
            "path": str(root / entry["dir"] / entry["main"]),
            "added": entry["added"],
        }
    if s in _pub.PUBLISHED:
        cfg = _pub.published_config(s)
        summary = _empanada_summary(cfg, None, _pub.PUBLISHED[s]["architecture"])
        cached = root / "published" / s / f"{s}.pth"
        return {"name": s, **summary, "source": cfg["model"], "published": True, "cached": cached.is_file()}
    if is_url(s) or os_path(s).exists():
        with tempfile.TemporaryDirectory() as work:
            staged = _stage(s, Path(work), root, None)
        return {"name": Path(s).stem, **staged["summary"], "source": s}
    raise unknown_name(s)


def export(name: str, path: str | os.PathLike) -> Path:
    """Write a registered or published model to one archive file.

    An empanada model becomes a ``.empanada`` zip laid out as empanada-napari 1.2.4's Export Model
    widget writes it (``STEM.yaml`` + the ``.pth`` files it names), which its Import Model widget
    reads; an empanada_nb model becomes a zip of ``STEM.pth`` + ``STEM.yaml`` (its card), which
    :func:`import_archive` reads (use ``export_model(model, path, format="empanada")`` to hand an
    empanada_nb model to empanada-napari).

    Parameters
    ----------
    name : str
        Registered or published name.
    path : str or path
        Archive file to write (``.empanada`` added if it has no suffix); a folder puts ``NAME.empanada`` in it.

    Returns
    -------
    Path
        The archive.

    Examples
    --------
    >>> export("my-mito", "my-mito.empanada")  # doctest: +SKIP
    """
    found = locate(name)
    if found is None:
        raise unknown_name(name)
    kind, main = found
    out = os_path(path)
    if out.is_dir():
        out = out / f"{name}.empanada"
    elif not out.suffix:
        out = out.with_suffix(".empanada")
    stem = out.stem
    with atomic_path(out, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        if kind == "empanada":
            cfg = read_yaml(main)
            z.write(main.parent / cfg["model"], f"{stem}.pth")
            cfg["model"] = f"{stem}.pth"
            q = cfg.get("model_quantized")
            if q and not is_url(str(q)) and (main.parent / q).is_file():
                z.write(main.parent / q, f"{stem}_quantized.pth")
                cfg["model_quantized"] = f"{stem}_quantized.pth"
            else:
                cfg.pop("model_quantized", None)  # empanada-napari's import cannot follow a URL here
            z.writestr(f"{stem}.yaml", yaml.safe_dump(cfg, sort_keys=False))
        else:
            z.write(main, f"{stem}.pth")
            card = main.with_suffix(".yaml")
            if card.is_file():
                z.write(card, f"{stem}.yaml")
    return out


def import_archive(path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False) -> str:
    """Register the model in an archive written by :func:`export` or by empanada-napari's Export Model.

    Parameters
    ----------
    path : str or path
        ``.empanada`` (or ``.zip``) archive, or its URL.
    name : str, optional
        Registry name (default: the archive's stem).
    overwrite : bool
        Replace an entry of the same name.

    Returns
    -------
    str
        The name it was registered under.

    Examples
    --------
    >>> import_archive("MitoNet_finetuned.empanada")  # doctest: +SKIP
    'MitoNet_finetuned'
    """
    p = str(path)
    if not url_filename(p).lower().endswith(ARCHIVE_SUFFIXES):
        raise ValueError(f"{p}: not a model archive (.empanada or .zip); use register for other sources")
    name = name or Path(url_filename(p)).stem
    register(name, path, overwrite=overwrite)
    return name


def remove(name: str) -> None:
    """Remove a registered model (its registry copy only), or the cached download of a published one.

    Parameters
    ----------
    name : str
        Registered or published name.

    Returns
    -------
    None

    Raises
    ------
    FileNotFoundError
        When ``name`` is neither registered nor published (the closest names are suggested).

    Examples
    --------
    >>> remove("my-mito")  # doctest: +SKIP
    """
    root = registry_dir()
    with _lock(root):
        models = _read_index(root)
        if name in models:
            entry = models.pop(name)
            _write_index(root, models)
            shutil.rmtree(root / entry["dir"], ignore_errors=True)
            return
    if name in _pub.PUBLISHED:
        shutil.rmtree(root / "published" / name, ignore_errors=True)
        return
    raise unknown_name(name)


def is_registry_name(path: str | os.PathLike) -> bool:
    """The ``save_model`` rule: a bare name (no folder, no file extension) means the registry."""
    s = str(path)
    return bool(_NAME.match(s)) and not Path(s).suffix and "/" not in s and os.sep not in s


__all__ = [
    "ENV_HOME",
    "ENV_MODELS",
    "all_names",
    "export",
    "import_archive",
    "info",
    "is_registry_name",
    "list_registered",
    "locate",
    "register",
    "registry_dir",
    "remove",
    "save_to_registry",
]
