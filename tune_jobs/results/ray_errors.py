"""The message of a trial's last failure, read from Ray's text error log."""

from __future__ import annotations


def last_error_message(error_log: str | None) -> str | None:
    """The message of the last failure in Ray's text error log of a trial (``error.txt``), or None.

    Each failure there is a ``Failure # N`` header and a traceback whose last line is the exception and its
    message. The text log is read, never Ray's pickled copy of the exception (unpickling would run code).
    """
    if not error_log:
        return None
    last_failure = error_log.rpartition("Failure # ")[2]
    lines = [line.strip() for line in last_failure.splitlines()[1:] if line.strip()]
    return lines[-1] if lines else None
