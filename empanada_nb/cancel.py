"""Cancelling long runs: the exception and the check shared by stack inference and consensus."""

from __future__ import annotations

import threading


class Cancelled(RuntimeError):
    """Raised when the ``cancel`` event is set; no complete-looking output is left behind."""


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise ``Cancelled`` when ``cancel`` is set (a no-op for None).

    Parameters
    ----------
    cancel : threading.Event or None
        The event a caller sets to stop a run.

    Returns
    -------
    None

    Examples
    --------
    >>> import threading
    >>> check_cancel(threading.Event())
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
