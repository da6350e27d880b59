"""Run an iterator one step ahead in a background thread (stack inference's network/postprocessing overlap).

The producer (slice reading, normalization and the network, whose torch ops release the GIL) runs
in a thread while the caller postprocesses, links and writes the previous batch. A bounded queue
keeps at most ``depth`` items waiting, so memory stays flat however long the stack is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order, produced in a daemon thread at most ``depth`` items ahead.

    An exception in the producer is raised here, at the item where it happened. When the consumer
    stops early (an exception, ``close()``, garbage collection), the producer stops after its
    current item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put((None, e))
            return
        put((_DONE, None))

    t = threading.Thread(target=run, name="empanada_nb-prefetch", daemon=True)
    t.start()
    try:
        while True:
            x, err = q.get()
            if err is not None:
                raise err
            if x is _DONE:
                return
            yield x
    finally:
        stop.set()
        t.join()
