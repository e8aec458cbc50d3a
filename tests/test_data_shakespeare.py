"""The shakespeare built-in and the checksum-pinned download behind it: real downloads from a loopback HTTP
server, checksums, the cache.

Nothing here needs tinyshakespeare itself (a fresh clone runs offline): the download machinery is tested on
text pinned to its own checksum, and the built-in on what it must refuse.
Run inside the loopback-only network namespace (make test does).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_user_error, run_textune
from data_pipeline.config import DataConfig, TokenizerConfig
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from data_pipeline.shakespeare import TINYSHAKESPEARE, PinnedFile
from textune.errors import TextuneError

# Written out here, not imported: the test checks the code pins the right file.
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Server:
    """A threaded HTTP server on 127.0.0.1 serving one directory and counting GET requests per path."""

    def __init__(self, root: Path) -> None:
        self.requests: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                server.requests[self.path] = server.requests.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def served_text(shakespeare_file: Path) -> bytes:
    """What the server hands out, whole lines: any text works, since each test pins the checksum it expects."""
    text = shakespeare_file.read_bytes()[:200_000]
    return text[: text.rindex(b"\n") + 1]


@pytest.fixture
def server(served_text: bytes, tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "input.txt").write_bytes(served_text)
    (root / "corrupt.txt").write_bytes(served_text[:-10] + b"corrupted!")
    served = Server(root)
    served.thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
        served.thread.join(timeout=10)


def pinned(served_text: bytes, server: Server) -> PinnedFile:
    """The served text as a pinned file, downloaded the way the shakespeare built-in is."""
    return PinnedFile(
        name="pinned.txt",
        sha256=hashlib.sha256(served_text).hexdigest(),
        default_url=f"{server.url}/input.txt",
        url_var="TEST_PINNED_URL",
        path_var="TEST_PINNED_PATH",
    )


def test_downloads_once_verifies_and_caches(server: Server, served_text: bytes, isolated_cache: Path) -> None:
    first = pinned(served_text, server).local_copy()
    second = pinned(served_text, server).local_copy()
    assert server.requests == {"/input.txt": 1}  # the second use found the verified copy in the cache
    assert first == second == isolated_cache / "downloads" / "pinned.txt"
    assert first.read_bytes() == served_text
    assert [p.name for p in (isolated_cache / "downloads").iterdir()] == ["pinned.txt"]  # no temporary file left


def test_a_cached_download_feeds_every_dataset(
    server: Server, served_text: bytes, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in reads its verified cached copy (TINYSHAKESPEARE is the same PinnedFile with its own checksum),
    so datasets of any tokenizer share one download."""
    monkeypatch.setenv(TINYSHAKESPEARE.url_var, f"{server.url}/input.txt")
    downloads = isolated_cache / "downloads"
    downloads.mkdir()
    (downloads / TINYSHAKESPEARE.name).write_bytes(served_text)  # as a verified download leaves it
    first = TokenDataset.open(prepare_dataset(DataConfig(source="shakespeare")))
    second = TokenDataset.open(
        prepare_dataset(DataConfig(source="shakespeare", tokenizer=TokenizerConfig(kind="byte")))
    )
    assert server.requests == {}
    assert (
        first.manifest.source.content_hash
        == second.manifest.source.content_hash
        == hashlib.sha256(served_text).hexdigest()
    )


def test_corrupt_download_is_refused_and_nothing_is_cached(
    server: Server, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{server.url}/corrupt.txt"
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", url)
    with pytest.raises(TextuneError) as info:
        prepare_dataset(DataConfig(source="shakespeare"))
    message = info.value.paragraph()
    assert url in message and f"expected sha256 {TINYSHAKESPEARE_SHA256}" in message and "got " in message
    # A failed start leaves nothing behind: no file, and not the downloads/ (or datasets/) folder it made.
    assert list(isolated_cache.iterdir()) == []
    assert_user_error(run_textune("data", "prepare", "shakespeare"), url, "checksum")  # the same through the CLI
    assert list(isolated_cache.iterdir()) == []


def test_unreachable_url_names_it_and_the_override(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{server.url}/missing.txt"
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", url)
    cache = tmp_path / "new" / "cache"  # the download would create it: the failed one removes it again
    result = run_textune("data", "prepare", "shakespeare", env={"TEXTUNE_CACHE_DIR": str(cache)})
    assert_user_error(result, url, "TEXTUNE_SHAKESPEARE_PATH")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("corrupt", [False, True], ids=["verified", "corrupt"])
def test_local_path_override_is_verified_too(
    corrupt: bool, server: Server, served_text: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "copy.txt"
    local.write_bytes(served_text[:-1] if corrupt else served_text)
    monkeypatch.setenv("TEST_PINNED_PATH", str(local))
    if corrupt:
        with pytest.raises(TextuneError, match="failed its checksum"):
            pinned(served_text, server).local_copy()
    else:
        assert pinned(served_text, server).local_copy() == local
    assert server.requests == {}  # a local copy is never downloaded


def test_the_builtin_checks_its_local_copy_against_tinyshakespeare_s_checksum(tmp_path: Path) -> None:
    local = tmp_path / "not-shakespeare.txt"
    local.write_text("To be, or not to be\n", encoding="utf-8")
    missing = tmp_path / "nowhere.txt"
    for path, fragment in ((local, f"expected sha256 {TINYSHAKESPEARE_SHA256}"), (missing, "does not exist")):
        assert_user_error(
            run_textune("data", "prepare", "shakespeare", env={"TEXTUNE_SHAKESPEARE_PATH": str(path)}),
            f"TEXTUNE_SHAKESPEARE_PATH={path}",
            fragment,
        )
