"""File checksums, shared by checkpoints and replay tables."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    """The SHA-256 of the file at ``path`` as 64 hex digits, read in 1 MiB chunks.

    Raises OSError when the file cannot be read.
    """
    # Chunked by hand: hashlib.file_digest needs Python 3.11 and textune supports 3.10.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
