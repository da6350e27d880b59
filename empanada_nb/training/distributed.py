"""Training on several GPUs (or CPU processes): the glue between the one training loop and torch.distributed.

``torchrun`` starts one process per GPU and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus
``MASTER_ADDR``/``MASTER_PORT``); ``train()``/``finetune()`` see them and run the same loop under
``DistributedDataParallel`` (PyTorch's "Getting started with DDP" recipe, launched by torchrun):

- ``batch_size`` is the *global* batch of one iteration; each process draws ``batch_size / world_size``
  patches (so a config means the same training on 1 or 8 GPUs: the same lr, iterations and BatchNorm
  batch). It must divide by the number of processes.
- each process draws its own share: process ``r`` of ``W`` takes dataset item ``i * W + r`` at iteration
  ``i`` (items are seeded by their index, ``PanopticDataset``), so shares never repeat each other and a
  resumed run draws what it would have drawn.
- BatchNorm becomes ``SyncBatchNorm`` on CUDA (statistics over the global batch); on CPU (gloo) torch
  has no SyncBatchNorm, so each process normalizes with its own share and rank 0's statistics are kept.
- rank 0 alone emits events (callbacks), validates, and writes checkpoints and the model; every rank
  loads the same checkpoint on resume. Under torchrun rank 0 also appends the events to
  ``<out stem>.events.jsonl`` (``events_path``), which ``TrainingDashboard.follow`` shows live.

Outside torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything here is a no-op.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

#: a rank that waits longer than this for the others fails (rank 0 validating a large set makes the others wait)
TIMEOUT = datetime.timedelta(minutes=60)
EVENTS_FORMAT = "empanada_nb-events/1"


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process.

    Returns
    -------
    bool
        True when ``WORLD_SIZE`` > 1 and ``RANK`` are set in the environment.

    Examples
    --------
    >>> launched()  # a plain Python process
    False
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def env_rank() -> int:
    """This process's rank from the environment torchrun sets (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


class Distributed:
    """The process group of a training run: rank, world size, device, and the few collectives the loop needs.

    Built by ``setup``; with ``world_size == 1`` every method is the single-process identity.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """This process's share of the global ``batch_size``."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size={batch_size} does not divide among {self.world_size} processes: batch_size is the "
                f"global batch of one iteration; choose a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def indices(self, start: int, stop: int) -> range:
        """The dataset items this process draws for iterations ``start..stop-1`` (one item a batch)."""
        w = self.world_size
        return range(start * w + self.rank, stop * w, w)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DistributedDataParallel (SyncBatchNorm on CUDA); ``model`` itself when alone.

        The returned module shares its parameters with ``model``: train through it, save ``model``.
        """
        if not self.active:
            return model
        if device.type == "cuda":
            # converted in place: SyncBatchNorm keeps the names, parameters and buffers of each BatchNorm
            for name, child in list(model.named_children()):
                setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def average(self, loss: torch.Tensor, terms: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The loss and its terms averaged over the processes (identical on every rank)."""
        if not self.active:
            return float(loss.detach()), terms
        t = torch.tensor([float(loss.detach()), *terms.values()], dtype=torch.float64, device=self._device)
        dist.all_reduce(t)
        t = (t / self.world_size).tolist()
        return t[0], dict(zip(terms, t[1:]))

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (so that all stop at the same iteration)."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        """Wait for every process (rank 0's files are written before any rank goes on)."""
        if self.active:
            dist.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics), so all hold the saved model."""
        if not self.active:
            return
        for b in model.buffers():
            if b.device.type == self._device.type:
                dist.broadcast(b.data, 0)

    def broadcast(self, tensor: torch.Tensor) -> None:
        """Give every rank rank 0's values of ``tensor`` (in place); nothing outside torchrun."""
        if not self.active:
            return
        if tensor.device.type == self._device.type:
            dist.broadcast(tensor, 0)
        else:  # a CPU tensor under NCCL: through the collective's device
            buf = tensor.to(self._device)
            dist.broadcast(buf, 0)
            tensor.copy_(buf.to(tensor.device))

    @property
    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def setup(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes (nccl for CUDA, gloo for CPU) and pick this rank's device.

    Parameters
    ----------
    device : torch.device
        The device the run asked for; ``cuda`` becomes ``cuda:LOCAL_RANK``.

    Returns
    -------
    tuple
        ``(Distributed, device)``; a single-process ``Distributed`` outside torchrun.

    Examples
    --------
    >>> ddp, device = setup(torch.device("cpu"))
    >>> ddp.world_size, ddp.is_main, device.type
    (1, True, 'cpu')
    """
    if not launched():
        return Distributed(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # a script that set up its own group keeps it
        backend = "nccl" if device.type == "cuda" else "gloo"
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=TIMEOUT, **kw)
        # kept for the process's life: a second run (a resume in the same script) joins it again, since
        # gloo cannot re-create a group over the store torchrun gave; left cleanly at exit
        atexit.register(_shutdown)
    return Distributed(dist.get_rank(), dist.get_world_size(), local), device


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ events file
def events_path(out: str | os.PathLike) -> Path:
    """The events log of a torchrun run beside its model: ``<out stem>.events.jsonl``.

    Parameters
    ----------
    out : str or os.PathLike
        The run's model file.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> events_path("runs/mito.pth").as_posix()
    'runs/mito.events.jsonl'
    """
    out = Path(out)
    return out.with_name(out.stem + ".events.jsonl")


class EventsLog:
    """A training callback appending each event as one JSON line (rank 0 of a torchrun run).

    Appends only: a reader skips a last line that is not complete yet. Every run starts the log
    afresh (its first line names the format, so ``_atomic.is_ours`` knows it as ours); a resumed
    run re-emits the checkpoint's history first, so the log always holds the run's whole history.
    """

    def __init__(self, path: Path):
        from .._atomic import atomic_path, claim

        self.path = Path(path)
        claim(self.path, True)  # never replaces a file that is not an events log of ours
        with atomic_path(self.path, suffix=".jsonl") as tmp:
            tmp.write_text(json.dumps({"type": "log", "format": EVENTS_FORMAT}) + "\n")
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed at the end event)
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        with self._lock:
            if self._f.closed:
                return
            self._f.write(json.dumps(event, default=_jsonable) + "\n")
            self._f.flush()
            if event.get("type") == "end":
                self._f.close()


def _jsonable(v):
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def follow_events(path: str | os.PathLike, stop: Callable[[], bool] | None = None, poll: float = 0.5) -> Iterator[dict]:
    """Yield the events of a run's log (``events_path``) as they are appended, until its ``end`` event.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.events.jsonl`` file (it may not exist yet: the run is starting).
    stop : callable, optional
        Polled while waiting; returning True ends the iteration.
    poll : float
        Seconds between looks at the file.

    Returns
    -------
    iterator of dict
        Training events (``"step"``, ``"validation"``, ``"checkpoint"``, ``"end"``).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> log = Path(tempfile.mkdtemp()) / "m.events.jsonl"
    >>> _ = log.write_text('{"type": "step", "iteration": 1}\\n{"type": "end", "iteration": 1}\\n')
    >>> [e["type"] for e in follow_events(log)]
    ['step', 'end']
    """
    import time

    path = Path(path)
    pos, buf = 0, ""
    while True:
        if path.exists():
            with open(path, encoding="utf-8") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("type") == "log":
                    continue
                yield e
                if e.get("type") == "end":
                    return
        if stop is not None and stop():
            return
        time.sleep(poll)
