"""Progress of long runs: a tqdm bar, a callback that receives progress events, or nothing.

Stack inference, ortho-plane consensus and the widgets share one event shape:
``{"type": "progress", "stage": "xy: infer", "done": 3, "total": 16}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Union

#: ``True`` (a tqdm bar), ``False`` (silent) or a callable that receives progress events
Progress = Union[bool, Callable[[dict], None]]


class ProgressBar:
    """Counts work done in one stage and reports it to a tqdm bar or a callback.

    Parameters
    ----------
    total : int
        Units of work in the stage.
    stage : str
        The stage's name, e.g. ``"xy: infer"``.
    progress : bool or callable
        True: a tqdm bar; a callable: called with a progress event at the start and after each update.

    Examples
    --------
    >>> seen = []
    >>> with ProgressBar(2, "demo", seen.append) as bar:
    ...     bar.update(2)
    >>> seen[-1]
    {'type': 'progress', 'stage': 'demo', 'done': 2, 'total': 2}
    """

    def __init__(self, total: int, stage: str, progress: Progress = False, unit: str = "slice"):
        self.total, self.stage, self.done = int(total), str(stage), 0
        self._callback = progress if callable(progress) else None
        self._tqdm = None
        if progress is True:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=self.total, desc=self.stage, unit=unit)
        self._emit()

    def _emit(self) -> None:
        if self._callback is not None:
            self._callback({"type": "progress", "stage": self.stage, "done": self.done, "total": self.total})

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self._tqdm is not None:
            self._tqdm.update(n)
        self._emit()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_iter(items: Iterable, total: int, stage: str, progress: Progress = False) -> Iterator:
    """Yield ``items``, reporting one unit of ``total`` after each (see ``ProgressBar``).

    Parameters
    ----------
    items : iterable
        The work items.
    total : int
        Their number.
    stage : str
        The stage's name.
    progress : bool or callable
        As for ``ProgressBar``.

    Returns
    -------
    iterator
        The items.

    Examples
    --------
    >>> list(progress_iter(range(3), 3, "demo"))
    [0, 1, 2]
    """
    with ProgressBar(total, stage, progress) as bar:
        for item in items:
            yield item
            bar.update(1)
