"""The shakespeare built-in: real downloads from a loopback HTTP server, checksums, the cache.

Run inside the loopback-only network namespace (make test does).
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import SHAKESPEARE_SHA256, assert_user_error, run_textune
from data_pipeline.config import DataConfig, TokenizerConfig
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from textune.errors import TextuneError

pytestmark = pytest.mark.timeout(120)


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
def server(shakespeare_file: Path, tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    data = shakespeare_file.read_bytes()
    (root / "input.txt").write_bytes(data)
    (root / "corrupt.txt").write_bytes(data[:-10] + b"corrupted!")
    served = Server(root)
    served.thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
        served.thread.join(timeout=10)


def test_downloads_once_verifies_and_caches(server: Server, isolated_cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", f"{server.url}/input.txt")
    first = TokenDataset.open(prepare_dataset(DataConfig(source="shakespeare")))
    second = TokenDataset.open(prepare_dataset(DataConfig(source="shakespeare",
                                                          tokenizer=TokenizerConfig(kind="byte"))))
    assert server.requests == {"/input.txt": 1}  # the second dataset reused the cached download
    assert first.manifest.source.content_hash == second.manifest.source.content_hash == SHAKESPEARE_SHA256
    assert [p.name for p in (isolated_cache / "downloads").iterdir()] == ["tinyshakespeare.txt"]


def test_corrupt_download_is_refused_and_nothing_is_cached(server: Server, isolated_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server.url}/corrupt.txt"
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", url)
    with pytest.raises(TextuneError) as info:
        prepare_dataset(DataConfig(source="shakespeare"))
    message = info.value.paragraph()
    assert url in message and f"expected sha256 {SHAKESPEARE_SHA256}" in message and "got " in message
    assert list((isolated_cache / "downloads").iterdir()) == []
    assert not any((isolated_cache / "datasets").iterdir())
    assert_user_error(run_textune("data", "prepare", "shakespeare"), url, "checksum")  # the same through the CLI


def test_unreachable_url_names_it_and_the_override(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server.url}/missing.txt"
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", url)
    assert_user_error(run_textune("data", "prepare", "shakespeare"), url, "TEXTUNE_SHAKESPEARE_PATH")


@pytest.mark.parametrize("corrupt", [False, True], ids=["verified", "corrupt"])
def test_local_path_override_is_verified_too(corrupt: bool, shakespeare_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_URL", "http://127.0.0.1:9/never-used")
    local = shakespeare_file
    if corrupt:
        local = tmp_path / "copy.txt"
        local.write_bytes(shakespeare_file.read_bytes()[:-1])
    monkeypatch.setenv("TEXTUNE_SHAKESPEARE_PATH", str(local))
    if corrupt:
        with pytest.raises(TextuneError, match="failed its checksum"):
            prepare_dataset(DataConfig(source="shakespeare"))
    else:
        dataset = TokenDataset.open(prepare_dataset(DataConfig(source="shakespeare")))
        assert dataset.manifest.source.content_hash == SHAKESPEARE_SHA256
