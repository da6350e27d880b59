"""The handle returned by train()/finetune(): stop, wait, history, model, plot."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import torch.nn as nn


class TrainingHandle:
    """A training run, finished (foreground) or running in a background thread.

    ``history`` holds every event emitted so far (step, validation, checkpoint, end).
    """

    def __init__(self, model: nn.Module, out: Path):
        self.model = model
        self.out = Path(out)
        self.history: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[dict], None]] = []
        self.thread: threading.Thread | None = None

    # -- control
    def stop(self) -> None:
        """Ask the run to end after the current step; the model is saved as at any end."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> TrainingHandle:
        """Block until the run ends; re-raises an error the run died of."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"training still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self

    # -- events
    def add_callback(self, fn: Callable[[dict], None]) -> None:
        self._callbacks.append(fn)

    def emit(self, event: dict) -> None:
        with self._lock:
            self.history.append(event)
        for fn in list(self._callbacks):
            fn(event)

    def events(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.history if e["type"] == kind]

    @property
    def iteration(self) -> int:
        steps = self.events("step")
        return steps[-1]["iteration"] if steps else 0

    @property
    def final_metrics(self) -> dict:
        vals = self.events("validation")
        return vals[-1] if vals else {}

    def summary(self) -> dict:
        """Loss at the start and the end (mean of the first/last 10 % of steps) and the last validation."""
        steps = self.events("step")
        if not steps:
            return {"iterations": 0}
        k = max(1, len(steps) // 10)
        first = sum(s["loss"] for s in steps[:k]) / k
        last = sum(s["loss"] for s in steps[-k:]) / k
        out = {"iterations": steps[-1]["iteration"], "loss_start": round(first, 5), "loss_end": round(last, 5)}
        out.update({k2: round(v, 4) for k2, v in self.final_metrics.items() if k2 in ("iou", "pq", "f1", "sq", "rq")})
        return out

    def plot(self, smooth: int = 20, log: bool = True):
        """A matplotlib figure of the loss terms and validation metrics (for papers and reports)."""
        from .plot import plot_history

        return plot_history(self.history, smooth=smooth, log=log)

    def __repr__(self) -> str:
        state = "done" if self.done else ("stopping" if self.stopping else "running")
        return f"<TrainingHandle {state} iteration={self.iteration} out={self.out}>"
