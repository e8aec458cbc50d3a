"""``textune run`` on S3 storage whose endpoint is given only under ``storage_options:`` (the documented way):
the search, the existence check of ``--resume`` and the whole finish (results, best, HParams) reach that
endpoint. Against a real S3 server (moto) on 127.0.0.1; one small search, since only a real run writes the
finish through the CLI."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cluster.storage import StorageOptions, resolve_storage
from conftest import BUCKET, assert_user_error, run_textune
from support.jobs import tiny_job, write_job

pytestmark = pytest.mark.timeout(300)

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_run_finishes_on_s3_with_the_endpoint_only_in_storage_options(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):  # the endpoint reaches textune one way only
        monkeypatch.delenv(name, raising=False)
    options = {"endpoint_override": f"http://{s3_endpoint}"}
    job = tiny_job(
        tmp_path,
        name="options-only",
        storage_options=options,
        num_samples=1,
        budget={"max_tokens": 2048, "eval_every_tokens": 1024},
    )
    job_path = write_job(tmp_path / "job.yaml", dict(job, storage=f"s3://{BUCKET}/runs"))
    result = run_textune("run", str(job_path), env=CREDENTIALS, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    root = f"s3://{BUCKET}/runs/options-only"
    assert f"best checkpoint: {root}/best" in result.stdout

    filesystem, path = resolve_storage(root, StorageOptions(**options))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    files = {info.path[len(path) + 1 :] for info in filesystem.get_file_info(pafs.FileSelector(path, recursive=True))}
    assert {"results.parquet", "evaluations.parquet", "best/meta.json"} <= files, sorted(files)
    assert any(name.startswith("events.out.tfevents") for name in files), sorted(files)  # the HParams config

    again = run_textune("run", str(job_path), "--resume", env=CREDENTIALS, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"nothing to resume: the 1 trial of {root} ended (1 completed)")
    assert_user_error(
        run_textune("run", str(job_path), env=CREDENTIALS, timeout=60), f"experiment {root} already exists"
    )


def test_unreachable_s3_storage_is_one_paragraph_naming_it_before_anything_starts(tmp_path: Path) -> None:
    """An endpoint nobody listens on (a loopback port just closed, no server): the run's first look at its
    storage and a read command's opening of an s3:// experiment each name ``storage`` and the endpoint, exit 2,
    before any data is prepared. Starts nothing."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{closed.getsockname()[1]}"
    storage, cache = f"s3://{BUCKET}/runs", tmp_path / "cache"
    options = {"endpoint_override": endpoint, "scheme": "http"}
    job_path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path, name="unreached", storage_options=options))
    env = {**CREDENTIALS, "TEXTUNE_CACHE_DIR": str(cache)}
    commands = {
        storage: ("run", str(job_path), f"--set=storage={storage}"),
        f"{storage}?endpoint_override={endpoint}&scheme=http": (
            "best",
            f"{storage}/unreached?endpoint_override={endpoint}&scheme=http",
        ),
    }
    for uri, command in commands.items():
        result = run_textune(*command, env=env, timeout=120)
        assert_user_error(
            result,
            f'storage "{uri}" cannot be reached through the endpoint {endpoint}',
            "NETWORK_CONNECTION",
            "storage_options.endpoint_override",
        )
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one paragraph
    assert not cache.exists()  # refused before the dataset was prepared
