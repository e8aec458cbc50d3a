"""The ``shakespeare`` built-in: tinyshakespeare, downloaded once into the cache and verified by SHA-256.

``TEXTUNE_SHAKESPEARE_PATH`` names a local copy to use instead (verified all the same);
``TEXTUNE_SHAKESPEARE_URL`` overrides where it is downloaded from. The download goes to a temporary file
that is renamed into the cache only after its checksum matches, so a cached file is always the right one.
:class:`PinnedFile` does this for any file known by its checksum; tinyshakespeare is the one textune ships.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.cache import cache_root, ensure_writable_dir
from textune.errors import TextuneError
from textune.paths import outermost_missing

DEFAULT_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class PinnedFile:
    """A file known by its SHA-256: found at ``$path_var``, else in the cache's ``downloads/``, else downloaded
    from ``$url_var`` (default ``default_url``). ``name`` is the cached file's name and the name in messages."""

    name: str
    sha256: str
    default_url: str
    url_var: str
    path_var: str

    def local_copy(self) -> Path:
        """A verified local copy, downloaded on first use; a TextuneError naming the URL or variable otherwise."""
        local = os.environ.get(self.path_var)
        if local:
            path = Path(local).expanduser()
            if not path.is_file():
                raise TextuneError(
                    f"{self.path_var}={local} does not exist.",
                    f"Point it at a copy of {self.name}, or unset it to download.",
                )
            self._verify(hashlib.sha256(path.read_bytes()).hexdigest(), f"{self.path_var}={local}")
            return path
        cached = cache_root() / "downloads" / self.name
        if not cached.is_file():
            self._download(os.environ.get(self.url_var, self.default_url), cached)
        return cached

    def _download(self, url: str, destination: Path) -> None:
        """Download ``url`` to ``destination`` once its checksum holds; a failed download leaves nothing behind,
        not even the (empty) directories it created."""
        created = outermost_missing(destination.parent)
        try:
            self._download_into(url, destination)
        except BaseException:
            _remove_empty_up_to(destination.parent, created)
            raise

    def _download_into(self, url: str, destination: Path) -> None:
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
                self._verify(digest.hexdigest(), url)
            except (urllib.error.URLError, OSError) as exc:
                temp.unlink(missing_ok=True)
                raise TextuneError(
                    f"downloading {self.name} from {url} failed: {exc}.",
                    f"Check the network, or set {self.path_var} to a local copy.",
                ) from exc
            except TextuneError:
                temp.unlink(missing_ok=True)
                raise
        os.replace(temp, destination)

    def _verify(self, got: str, origin: str) -> None:
        if got != self.sha256:
            raise TextuneError(
                f"{self.name} from {origin} failed its checksum: expected sha256 {self.sha256}, "
                f"got {got}; nothing was cached.",
                f"The file is corrupt or not {self.name}; fix {self.url_var} or {self.path_var}, "
                "or retry the download.",
            )


def _remove_empty_up_to(directory: Path, outermost: Path | None) -> None:
    """Remove ``directory`` and its parents up to ``outermost`` (those a failed download created), innermost
    first, each only while empty: another process may have put a file there meanwhile."""
    if outermost is None:
        return
    for candidate in (directory, *directory.parents):
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == outermost:
            return


TINYSHAKESPEARE = PinnedFile(
    name="tinyshakespeare.txt",
    sha256=SHA256,
    default_url=DEFAULT_URL,
    url_var="TEXTUNE_SHAKESPEARE_URL",
    path_var="TEXTUNE_SHAKESPEARE_PATH",
)


def shakespeare_file() -> Path:
    """A verified local copy of tinyshakespeare (downloading it on first use)."""
    return TINYSHAKESPEARE.local_copy()
