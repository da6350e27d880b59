"""Training checkpoints: model, optimizer, scheduler, scaler, RNG states and history, written atomically."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path


def checkpoint_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.pth")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    state = dict(state)
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        from ..model_io import unreadable

        raise ValueError(unreadable(path, "a readable checkpoint", e)) from None
    if not isinstance(state, dict) or "optimizer" not in state or "iteration" not in state:
        raise ValueError(f"{path}: not an empanada_nb training checkpoint")
    return state


def restore_rng(state: dict[str, Any]) -> None:
    rng = state.get("rng")
    if not rng:
        return
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
