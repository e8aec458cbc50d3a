"""Local paths as every command reads them, and undoing the directories a failed command created.

One rule for every path argument and option: ``~`` is expanded (also where the shell leaves it, as in
``--out=~/x``), a relative path is taken from the working directory, spaces are kept, symlinks are not resolved.
"""

from __future__ import annotations

import os
from pathlib import Path


def expand_path(text: str | os.PathLike[str]) -> Path:
    """``text`` as an absolute local path by the rule above."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(text))))


def outermost_missing(path: Path) -> Path | None:
    """The outermost directory that creating ``path`` (with its parents) makes; None when ``path`` exists.

    Removing it after a failure leaves the file system as the command found it.
    """
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def writable(path: Path) -> bool:
    """Whether ``path``, or the nearest parent that exists, can be written by this process (False on a read-only
    mount even for root)."""
    existing = next(candidate for candidate in (path, *path.parents) if candidate.exists())
    return os.access(existing, os.W_OK)
