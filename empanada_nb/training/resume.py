"""Finding and resuming training runs from their checkpoints, e.g. after the kernel died.

A run writes ``<out stem>.checkpoint.pth`` beside its model (``checkpoint.py``); the checkpoint holds
the model, optimizer, scheduler, RNG states, the config, the card (with the training folders in its
lineage) and the history of events. ``find_checkpoints`` lists those of a folder; ``resume_training``
continues one without the caller having to rebuild the model or remember the dataset: the history
up to the checkpoint is emitted again first, so a live plot shows the whole run.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import PathLike
from ..model_io import ModelCard
from ..models import build_model
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .handle import TrainingHandle

SUFFIX = ".checkpoint.pth"


def model_path_of(checkpoint: PathLike) -> Path:
    """The model file a checkpoint belongs to (``m.checkpoint.pth`` -> ``m.pth``).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        The checkpoint.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> model_path_of("runs/mito.checkpoint.pth").as_posix()
    'runs/mito.pth'
    """
    p = Path(checkpoint)
    name = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
    return p.with_name(name + ".pth")


def _summary(path: Path) -> dict[str, Any]:
    # mmap: the weights are not read, only the small entries listed here
    st = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(st, dict) or "iteration" not in st or "config" not in st:
        raise ValueError("not a training checkpoint")
    cfg = st["config"]
    lineage = (st.get("model") or {}).get("card", {}).get("lineage", {}) or {}
    dirs = [lineage["train_dir"]] if lineage.get("train_dir") else []
    dirs += list(lineage.get("additional_train_dirs") or [])
    history = st.get("history") or []
    steps = [e for e in history if e.get("type") == "step"]
    out = model_path_of(path)
    return {
        "path": str(path),
        "out": str(out),
        "name": out.name,
        "iteration": int(st["iteration"]),
        "iterations": int(cfg.get("iterations", 0)),
        "finished": int(st["iteration"]) >= int(cfg.get("iterations", 0)),
        "mode": "finetune" if "finetuned_from" in lineage else "train",
        "train_dirs": dirs,
        "loss": float(steps[-1]["loss"]) if steps else None,
        "events": len(history),
        "modified": datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds"),
        "model_saved": out.is_file(),
    }


def find_checkpoints(folder: PathLike) -> list[dict[str, Any]]:
    """The training checkpoints in ``folder`` (``*.checkpoint.pth``), newest first.

    Parameters
    ----------
    folder : str or os.PathLike
        Where the runs' models were saved (the folder of ``out``); a model path means its folder.

    Returns
    -------
    list of dict
        ``path``, ``out`` (the model it belongs to), ``name``, ``iteration``, ``iterations``,
        ``finished``, ``mode`` (``"train"`` or ``"finetune"``), ``train_dirs``, ``loss`` (the last
        step's), ``events`` (history length), ``modified`` and ``model_saved``. Unreadable files
        are listed with an ``error`` instead.

    Examples
    --------
    >>> import tempfile
    >>> find_checkpoints(tempfile.mkdtemp())
    []
    """
    folder = Path(folder).expanduser()
    if folder.suffix in (".pth", ".pt") and not folder.is_dir():
        folder = folder.parent
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*" + SUFFIX), key=lambda q: q.stat().st_mtime, reverse=True):
        try:
            out.append(_summary(p))
        except Exception as e:  # a broken file is listed, not hidden: the user may want to delete it
            out.append({"path": str(p), "name": model_path_of(p).name, "error": f"{e.__class__.__name__}: {e}"})
    return out


def resume_training(
    checkpoint: PathLike,
    train_dir: PathLike | Sequence[PathLike] | None = None,
    *,
    out: PathLike | None = None,
    val_dir: PathLike | None = None,
    callbacks: Sequence[Callable[[dict], None]] | None = None,
    background: bool = False,
    **overrides,
) -> TrainingHandle:
    """Continue a training run from its checkpoint (after a crash, a dead kernel or a stop).

    The model is rebuilt from the checkpoint's card, the run is ``train`` or ``finetune`` as it was,
    the training folders are the checkpoint's unless given, and the history up to the checkpoint is
    emitted again before the first new step (so callbacks and live plots see the whole run).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A ``<name>.checkpoint.pth`` (see ``find_checkpoints``).
    train_dir : str or os.PathLike or sequence of them, optional
        The training folders (default: those recorded in the checkpoint).
    out : str or os.PathLike, optional
        The model file (default: the one the checkpoint belongs to).
    val_dir : str or os.PathLike, optional
        Validation folder (default: the checkpoint's).
    callbacks : sequence of callable, optional
        Each gets every event dict, the replayed history first.
    background : bool
        Run in a background thread and return at once.
    **overrides
        Settings a resumed run may change (``iterations``, ``device``, ...; see ``train``'s ``resume``).

    Returns
    -------
    TrainingHandle
        The continued run.

    Raises
    ------
    ValueError
        When the checkpoint names no training folder and none is given, or a setting may not change.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> tmp = tempfile.TemporaryDirectory()
    >>> data = enb.make_synthetic_dataset(Path(tmp.name) / "data", n_images=2, size=64)
    >>> run = enb.train(
    ...     data, out=Path(tmp.name) / "mito.pth", encoder="resnet18", pretrained=None,
    ...     iterations=1, patch_size=64, batch_size=2, min_bn_batch=2,
    ... )  # doctest: +SKIP
    >>> ckpt = find_checkpoints(tmp.name)[0]["path"]  # doctest: +SKIP
    >>> more = resume_training(ckpt, iterations=2)  # doctest: +SKIP
    >>> [e["iteration"] for e in more.events("step")]  # doctest: +SKIP
    [1, 2]
    """
    from .loop import _launch

    path = Path(checkpoint)
    st = load_checkpoint(path)
    card = ModelCard.from_dict(st["model"]["card"])
    lineage = dict(card.lineage or {})
    if train_dir is None:
        dirs = [lineage["train_dir"]] if lineage.get("train_dir") else []
        dirs += list(lineage.get("additional_train_dirs") or [])
        if not dirs:
            raise ValueError(f"{path} names no training folder; pass train_dir= to resume it")
        train_dir = dirs if len(dirs) > 1 else dirs[0]
    if val_dir is None and lineage.get("val_dir"):
        val_dir = lineage["val_dir"]
    model = build_model(
        card.architecture, card.encoder, num_classes=card.num_classes, pointrend=card.pointrend, **card.arch_kwargs
    )
    model.norms, model.card = dict(card.norms), card
    is_finetune = "finetuned_from" in lineage
    return _launch(
        model,
        train_dir,
        TrainConfig.from_dict(st["config"]),
        out if out is not None else model_path_of(path),
        val_dir,
        callbacks,
        background,
        path,
        False,
        is_finetune,
        lineage=lineage,
        requested=dict(overrides),
    )
