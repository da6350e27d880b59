"""Batches for the training loop: prepared in DataLoader worker processes while the step runs.

A batch (patch sampling, augmentation and Panoptic-DeepLab targets, about 0.4 s for 16 patches of
256^2 on one core) costs a tenth of a CPU training step, so in the main thread it adds that tenth
to every step. A worker process prepares the next batches while the step runs, as empanada's
``scripts/train.py`` does with its DataLoader workers. Item ``i`` of ``PanopticDataset`` is the
whole batch of iteration ``i``, drawn from ``(seed, i)``, so the batches are the same whatever the
number of workers.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator, Sequence

import torch

#: seconds between a worker's checks that the training process is still there
WATCH_S = 1.0


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_workers(num_workers: int | str, device: torch.device) -> int:
    """The DataLoader worker processes of a run: ``num_workers``, or for ``"auto"`` what suits the machine.

    ``"auto"`` on CPU: one worker per core that torch's threads leave free (``torch.get_num_threads()``),
    at most 4, else none. A worker on a core the step's threads use only takes turns with them, and
    torch's threads wait for each other at every operation, so a descheduled one stalls them all: on
    2 cores with 2 torch threads the batch is better prepared between steps (it costs a tenth of a
    step). On CUDA the step waits for the GPU, so up to 4 workers, leaving a core to the main process.

    Parameters
    ----------
    num_workers : int or "auto"
        The setting (``TrainConfig.num_workers``).
    device : torch.device
        The training device.

    Returns
    -------
    int
        Worker processes (0: batches are prepared in the main thread).

    Examples
    --------
    >>> import torch
    >>> resolve_workers(3, torch.device("cpu"))
    3
    >>> resolve_workers("auto", torch.device("cpu")) <= 4
    True
    """
    if num_workers != "auto":
        return int(num_workers)
    cpus = usable_cpus()
    if device.type == "cuda":
        return max(0, min(4, cpus - 1))
    return max(0, min(4, cpus - torch.get_num_threads()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    return True


def _exit_with(trainer: int, worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: end this worker when the training process ``trainer`` is gone.

    Under the forkserver start method (Python 3.14's default on Linux, and inside any process that a
    forkserver started) a worker's parent is the forkserver, not the training process, so torch's own
    check (its parent pid changing) never fires: a training process killed by SIGKILL, an out-of-memory
    kill or a restarted Jupyter kernel left its workers and their batches (~750 MB each) running for
    good. Seen in the test suite's kill loop: three such workers alive after the run.
    """

    def watch() -> None:
        while _alive(trainer):
            time.sleep(WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, name="enb-trainer-watch", daemon=True).start()


def batch_loader(dataset, indices: Sequence[int], workers: int, pin_memory: bool = False) -> Iterator[dict]:
    """The batches ``dataset[i]`` for ``i`` in ``indices``, in order (item ``i`` is the batch of iteration ``i``).

    Parameters
    ----------
    dataset : PanopticDataset
        Its item ``i`` is the batch of iteration ``i``.
    indices : sequence of int
        The items, e.g. ``range(start, stop)`` or a process's share under torchrun
        (``Distributed.indices``); it may reach beyond the run's end (a time budget fixes the end
        later): nothing is prepared beyond what the workers prefetch.
    workers : int
        Worker processes (0: in the main thread, when asked for).
    pin_memory : bool
        Pinned memory for faster host-to-GPU copies.

    Returns
    -------
    iterator of dict
        The batches, in order.

    Examples
    --------
    >>> import torch
    >>> class Squares(torch.utils.data.Dataset):
    ...     def __getitem__(self, i):
    ...         return {"x": torch.tensor(i * i)}
    >>> [int(b["x"]) for b in batch_loader(Squares(), range(2, 5), workers=0)]
    [4, 9, 16]
    """
    kwargs = {}
    if workers > 0:
        # two batches ahead per worker is enough: a batch takes a tenth of a step
        kwargs = {
            "prefetch_factor": 2,
            "persistent_workers": False,
            "worker_init_fn": functools.partial(_exit_with, os.getpid()),
        }
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=indices, num_workers=workers, pin_memory=pin_memory, **kwargs
        )
    )
