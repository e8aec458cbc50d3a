"""The ``shakespeare`` built-in: tinyshakespeare, downloaded once into the cache and verified by SHA-256.

``TEXTUNE_SHAKESPEARE_PATH`` names a local copy to use instead (verified all the same);
``TEXTUNE_SHAKESPEARE_URL`` overrides where it is downloaded from. The download goes to a temporary file
that is renamed into the cache only after its checksum matches, so a cached file is always the right one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from data_pipeline.cache import cache_root, ensure_writable_dir
from textune.errors import TextuneError

DEFAULT_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_DOWNLOAD_TIMEOUT_S = 60


def shakespeare_file() -> Path:
    """A verified local copy of tinyshakespeare (downloading it on first use)."""
    local = os.environ.get("TEXTUNE_SHAKESPEARE_PATH")
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise TextuneError(f"TEXTUNE_SHAKESPEARE_PATH={local} does not exist.",
                               "Point it at a copy of tinyshakespeare, or unset it to download.")
        _verify(hashlib.sha256(path.read_bytes()).hexdigest(), f"TEXTUNE_SHAKESPEARE_PATH={local}")
        return path
    cached = cache_root() / "downloads" / "tinyshakespeare.txt"
    if cached.is_file():
        return cached
    _download(os.environ.get("TEXTUNE_SHAKESPEARE_URL", DEFAULT_URL), cached)
    return cached


def _download(url: str, destination: Path) -> None:
    ensure_writable_dir(destination.parent, "download cache")
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".download-", delete=False) as handle:
        temp = Path(handle.name)
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    handle.write(chunk)
            handle.flush()
            _verify(digest.hexdigest(), url)
        except (urllib.error.URLError, OSError) as exc:
            temp.unlink(missing_ok=True)
            raise TextuneError(f"downloading tinyshakespeare from {url} failed: {exc}.",
                               "Check the network, or set TEXTUNE_SHAKESPEARE_PATH to a local copy.") from exc
        except TextuneError:
            temp.unlink(missing_ok=True)
            raise
    os.replace(temp, destination)


def _verify(got: str, origin: str) -> None:
    if got != SHA256:
        raise TextuneError(f"tinyshakespeare from {origin} failed its checksum: expected sha256 {SHA256}, "
                           f"got {got}; nothing was cached.",
                           "The file is corrupt or not tinyshakespeare; fix TEXTUNE_SHAKESPEARE_URL or "
                           "TEXTUNE_SHAKESPEARE_PATH, or retry the download.")
