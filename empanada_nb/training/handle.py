"""The handle returned by train()/finetune(): stop, wait, history, model, plot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import torch.nn as nn


class TrainingHandle:
    """A training run, finished (foreground) or running in a background thread.

    Returned by ``train`` and ``finetune``. ``history`` holds every event emitted so far as a dict
    with a ``"type"``: ``step`` (``iteration``, ``loss``, ``terms``, ``lr``, ...), ``validation``
    (``iou``, ``pq``, ``f1``, ...; ``"calibrated": True`` on the one after the threshold fit),
    ``checkpoint``, ``calibration`` (the foreground threshold fitted at the end, see
    ``TrainConfig.calibrate``) and ``end``.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained (also the trained model once the run ends).
    out : pathlib.Path
        Where the model is saved.

    Attributes
    ----------
    model : torch.nn.Module
        The model.
    out : pathlib.Path
        The saved model's path.
    history : list of dict
        The events so far.
    error : BaseException or None
        What a background run died of (re-raised by ``wait``).

    Examples
    --------
    Training returns a handle (see ``train``); here one is fed events by hand:

    >>> from pathlib import Path
    >>> import empanada_nb as enb
    >>> run = enb.TrainingHandle(enb.build_model("PanopticDeepLab", "resnet18"), Path("mito.pth"))
    >>> run.emit({"type": "step", "iteration": 1, "loss": 0.9})
    >>> run.emit({"type": "end", "iteration": 1, "path": "mito.pth", "stopped": False})
    >>> [event["type"] for event in run.history], run.iteration
    (['step', 'end'], 1)
    """

    def __init__(self, model: nn.Module, out: Path):
        self.model = model
        self.out = Path(out)
        self.history: list[dict] = []
        self.error: BaseException | None = None
        #: True when the run ended on Ctrl-C (SIGINT) rather than finishing or being stopped
        self.interrupted = False
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[dict], None]] = []
        self.thread: threading.Thread | None = None

    # -- control
    def stop(self) -> None:
        """Ask the run to end after the current step; the model is saved as at any end.

        Returns
        -------
        None

        Examples
        --------
        >>> import empanada_nb as enb
        >>> run = enb.train("data", background=True)  # doctest: +SKIP
        >>> run.stop()  # doctest: +SKIP
        >>> run.wait().history[-1]["stopped"]  # doctest: +SKIP
        True
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called.

        Returns
        -------
        bool
        """
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        """Whether the run has ended (finished, stopped or failed).

        Returns
        -------
        bool
        """
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> TrainingHandle:
        """Block until the run ends; re-raises an error the run died of.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; None waits for the end.

        Returns
        -------
        TrainingHandle
            ``self``, for chaining (``train(..., background=True).wait().model``).

        Raises
        ------
        TimeoutError
            When the run is still going after ``timeout`` seconds.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import empanada_nb as enb
        >>> tmp = tempfile.TemporaryDirectory()
        >>> data = enb.make_synthetic_dataset(Path(tmp.name) / "data", n_images=2, size=64)
        >>> run = enb.train(
        ...     data, out=Path(tmp.name) / "mito.pth", encoder="resnet18",
        ...     iterations=2, patch_size=64, batch_size=2, min_bn_batch=2, background=True,
        ... )
        >>> run.wait(timeout=600).done
        True
        >>> tmp.cleanup()
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"training still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self

    # -- events
    def add_callback(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(event)`` for every event emitted from now on (in the training thread).

        Parameters
        ----------
        fn : callable
            Takes one event dict.

        Returns
        -------
        None

        Examples
        --------
        >>> from pathlib import Path
        >>> import empanada_nb as enb
        >>> run = enb.TrainingHandle(enb.build_model("PanopticDeepLab", "resnet18"), Path("mito.pth"))
        >>> seen = []
        >>> run.add_callback(seen.append)
        >>> run.emit({"type": "step", "iteration": 1, "loss": 0.5})
        >>> seen
        [{'type': 'step', 'iteration': 1, 'loss': 0.5}]
        """
        self._callbacks.append(fn)

    def emit(self, event: dict) -> None:
        """Record ``event`` in ``history`` and pass it to every callback (used by the training loop).

        Parameters
        ----------
        event : dict
            An event with a ``"type"`` key.

        Returns
        -------
        None

        Examples
        --------
        >>> from pathlib import Path
        >>> import empanada_nb as enb
        >>> run = enb.TrainingHandle(enb.build_model("PanopticDeepLab", "resnet18"), Path("mito.pth"))
        >>> run.emit({"type": "step", "iteration": 3, "loss": 0.5})
        >>> run.iteration
        3
        """
        with self._lock:
            self.history.append(event)
        for fn in list(self._callbacks):
            fn(event)

    def events(self, kind: str) -> list[dict]:
        """The events of one type so far.

        Parameters
        ----------
        kind : str
            ``"step"``, ``"validation"``, ``"checkpoint"`` or ``"end"``.

        Returns
        -------
        list of dict

        Examples
        --------
        >>> from pathlib import Path
        >>> import empanada_nb as enb
        >>> run = enb.TrainingHandle(enb.build_model("PanopticDeepLab", "resnet18"), Path("mito.pth"))
        >>> run.emit({"type": "validation", "iteration": 10, "iou": 0.8})
        >>> run.events("validation")
        [{'type': 'validation', 'iteration': 10, 'iou': 0.8}]
        """
        with self._lock:
            return [e for e in self.history if e["type"] == kind]

    @property
    def iteration(self) -> int:
        """The iteration of the last step event (0 before the first).

        Returns
        -------
        int
        """
        steps = self.events("step")
        return steps[-1]["iteration"] if steps else 0

    @property
    def final_metrics(self) -> dict:
        """The last validation event (empty when none ran).

        Returns
        -------
        dict
        """
        vals = self.events("validation")
        return vals[-1] if vals else {}

    def summary(self) -> dict:
        """Loss at the start and the end (mean of the first/last 10 % of steps) and the last validation.

        Returns
        -------
        dict
            ``iterations``, ``loss_start``, ``loss_end`` and, when validated, ``iou``, ``pq``, ``f1``,
            ``sq``, ``rq``; ``{"iterations": 0}`` before the first step.

        Examples
        --------
        >>> from pathlib import Path
        >>> import empanada_nb as enb
        >>> run = enb.TrainingHandle(enb.build_model("PanopticDeepLab", "resnet18"), Path("mito.pth"))
        >>> for i, loss in enumerate([4.0, 2.0, 1.0], start=1):
        ...     run.emit({"type": "step", "iteration": i, "loss": loss})
        >>> run.summary()
        {'iterations': 3, 'loss_start': 4.0, 'loss_end': 1.0}
        """
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
        """A matplotlib figure of the loss terms and validation metrics (for papers and reports).

        Parameters
        ----------
        smooth : int
            Moving-average window over steps.
        log : bool
            Log scale for the losses.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> run = enb.train("data", iterations=500)  # doctest: +SKIP
        >>> run.plot().savefig("training.png")  # doctest: +SKIP
        """
        from .plot import plot_history

        return plot_history(self.history, smooth=smooth, log=log)

    def __repr__(self) -> str:
        state = "done" if self.done else ("stopping" if self.stopping else "running")
        return f"<TrainingHandle {state} iteration={self.iteration} out={self.out}>"
