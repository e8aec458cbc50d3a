"""Storage URIs and dataset shipping, against real files and a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cluster.dataset_sync import materialize_dataset, upload_dataset
from cluster.storage import StorageOptions, open_storage, resolve_storage
from conftest import BUCKET
from data_pipeline.cache import MANIFEST_FILE
from textune.errors import TextuneError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The credentials of the moto server for this test (the module fixture's are gone between tests)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


def fake_dataset(root: Path, name: str = "corpus-char-0123456789abcdef") -> Path:
    """A directory shaped like a prepared dataset: shards in a subfolder and the manifest."""
    directory = root / name
    (directory / "shards").mkdir(parents=True)
    (directory / "shards" / "train.arrow").write_bytes(os.urandom(4096))
    (directory / "tokenizer.json").write_text('{"kind": "char"}')
    (directory / MANIFEST_FILE).write_text(json.dumps({"name": name}))
    return directory


def test_local_path_resolves_to_an_absolute_path_and_is_probed(tmp_path: Path) -> None:
    filesystem, path = open_storage(str(tmp_path / "runs"))
    assert isinstance(filesystem, pafs.LocalFileSystem)
    assert path == str((tmp_path / "runs").resolve())
    assert (tmp_path / "runs").is_dir() and not list((tmp_path / "runs").iterdir())  # the probe is gone


@pytest.mark.parametrize("how", ["options", "uri-query", "env"])
def test_s3_endpoint_override_from_options_uri_or_environment(
    s3_env: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = f"s3://{BUCKET}/runs", StorageOptions()
    if how == "options":
        options = StorageOptions(endpoint_override=f"http://{s3_env}")
    elif how == "uri-query":
        uri += f"?endpoint_override={s3_env}&scheme=http"
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3_env}")
    filesystem, path = open_storage(uri, options)
    assert isinstance(filesystem, pafs.S3FileSystem)
    assert path == f"{BUCKET}/runs"
    with filesystem.open_output_stream(f"{path}/x.txt") as stream:
        stream.write(b"hello")
    assert filesystem.get_file_info(f"{path}/x.txt").size == 5


@pytest.mark.parametrize(
    "uri, fragments",
    [
        ("ftp://host/runs", ['unknown scheme "ftp://"', "s3://BUCKET/PREFIX"]),
        ("hdfs://namenode/runs", ['unknown scheme "hdfs://"']),
        ("s3:///runs", ["names no bucket"]),
        (f"s3://no-such-bucket-{os.getpid()}/runs", ['bucket "no-such-bucket', "does not exist"]),
        ("s3://textune-test/runs?endpoint_overide=x", ['unknown key "endpoint_overide"', "Did you mean"]),
    ],
)
def test_bad_storage_uris_name_the_problem(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, uri: str, fragments: list[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3_env}")
    started = time.monotonic()
    with pytest.raises(TextuneError) as info:
        open_storage(uri)
    assert time.monotonic() - started < 10
    for fragment in fragments:
        assert fragment in info.value.paragraph()


def test_local_paths_that_would_land_elsewhere_are_refused(tmp_path: Path) -> None:
    # A "?" would split one experiment over several directories (it starts a URI's options elsewhere).
    with pytest.raises(TextuneError, match='may not hold "\\?"'):
        resolve_storage(f"{tmp_path}/a?b")
    # file://tmp/x names the host "tmp": the path would be /x at the root of this machine.
    with pytest.raises(TextuneError, match='"tmp" is read as a host name') as refused:
        resolve_storage("file://tmp/x")
    assert "Write a local file URI with three slashes (file:///tmp/x)" in refused.value.paragraph()
    assert not Path("/x").exists()
    assert resolve_storage(f"file://{tmp_path}/runs")[1] == str(tmp_path / "runs")
    assert resolve_storage(f"file://localhost{tmp_path}/runs")[1] == str(tmp_path / "runs")


def test_unwritable_local_storage_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(TextuneError) as info:
        open_storage(str(blocker / "runs"))
    assert "is not writable" in info.value.paragraph() and str(blocker) in info.value.paragraph()


def test_local_storage_without_enough_free_space_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TextuneError) as info:
        open_storage(str(tmp_path), StorageOptions(min_free_gb=1e9))
    assert "min_free_gb" in info.value.paragraph()


def test_dataset_is_uploaded_once_and_cached_on_first_use(s3_env: str, tmp_path: Path, isolated_cache: Path) -> None:
    local = fake_dataset(tmp_path / "prepared")
    storage = f"s3://{BUCKET}/shared?endpoint_override={s3_env}&scheme=http"
    uri = upload_dataset(local, storage)
    assert uri == f"s3://{BUCKET}/shared/datasets/{local.name}?endpoint_override={s3_env}&scheme=http"
    filesystem, remote = resolve_storage(uri)
    first_upload = filesystem.get_file_info(f"{remote}/{MANIFEST_FILE}").mtime
    assert upload_dataset(local, storage) == uri  # already there: not uploaded again
    assert filesystem.get_file_info(f"{remote}/{MANIFEST_FILE}").mtime == first_upload

    copy = materialize_dataset(uri)
    assert copy == isolated_cache / "datasets" / local.name
    for path in local.rglob("*"):
        if path.is_file():
            assert (copy / path.relative_to(local)).read_bytes() == path.read_bytes()
    (copy / "tokenizer.json").write_text("changed locally")
    assert materialize_dataset(uri) == copy  # the node's cached copy is used, not downloaded again
    assert (copy / "tokenizer.json").read_text() == "changed locally"


def test_incomplete_upload_is_not_materialized(s3_env: str, tmp_path: Path, isolated_cache: Path) -> None:
    storage = f"s3://{BUCKET}/partial?endpoint_override={s3_env}&scheme=http"
    filesystem, base = resolve_storage(storage)
    with filesystem.open_output_stream(f"{base}/datasets/half-done/shards/train.arrow") as stream:
        stream.write(b"\0" * 10)
    with pytest.raises(TextuneError) as info:
        materialize_dataset(f"s3://{BUCKET}/partial/datasets/half-done?endpoint_override={s3_env}&scheme=http")
    assert "missing or incomplete" in info.value.paragraph()
    assert not (isolated_cache / "datasets" / "half-done").exists()


def test_local_dataset_uri_is_used_in_place(tmp_path: Path) -> None:
    local = fake_dataset(tmp_path)
    assert materialize_dataset(str(local)) == local
