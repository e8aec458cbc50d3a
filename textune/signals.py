"""Holding Ctrl-C (SIGINT) and SIGTERM back while a short step that must not stop half-way runs.

A command that swaps a set of files into place with several renames would, stopped between two of them, leave
a mix of old and new files. :func:`deferred_signals` records those signals during the step instead and acts on
them when it has ended, when everything is in place; :func:`ignore_signals_at_exit` keeps a command that has
finished and said so from being ended by one while Python shuts down.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals(deliver: bool = True) -> Iterator[list[int]]:
    """Record SIGINT and SIGTERM during the ``with`` block instead of acting on them.

    Yields the list of the signal numbers received, filled as they arrive. When the block ends the previous
    handlers come back and, with ``deliver``, the first signal received is raised again (Ctrl-C then raises
    KeyboardInterrupt after the block); without it the caller reads the list and decides. Signal handlers can
    only be set in the main thread: elsewhere the block runs unprotected (and the list stays empty).
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    # A handler set outside Python reads back as None and cannot be set again: such a signal is left alone.
    previous = {sig: signal.getsignal(sig) for sig in DEFERRED}
    held = {sig: handler for sig, handler in previous.items() if handler is not None}
    for sig in held:
        signal.signal(sig, record)
    try:
        yield received
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        if deliver and received:
            signal.raise_signal(received[0])


def ignore_signals_at_exit() -> None:
    """Ignore SIGINT and SIGTERM once the interpreter starts to exit (an ``atexit`` hook).

    For a command whose work is done and reported: tearing down its modules (torch, pandas) takes Python a few
    tenths of a second after the last line is printed, and a signal then would end the process with 130 after
    it said it succeeded. Called in-process (tests), it changes nothing until that process exits.
    """
    atexit.register(_ignore_deferred)


def _ignore_deferred() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in DEFERRED:
            signal.signal(sig, signal.SIG_IGN)
