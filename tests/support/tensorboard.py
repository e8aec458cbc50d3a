"""A real TensorBoard server for tests, and its HTTP API: the runs it serves and the HParams sessions; where a trial's
session is on disk."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tune_jobs.hparams import EVENTS_FILE, SESSION_PREFIX

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def session_file(trial_dir: Path) -> Path:
    """The event file of a trial's HParams session: its one session run, ``TRIAL_DIR/hparams-<status>/``."""
    (run,) = trial_dir.glob(f"{SESSION_PREFIX}*")
    return run / EVENTS_FILE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def tensorboard(logdir: Path, reload_interval_s: int = 0) -> Iterator[str]:
    """``tensorboard --logdir LOGDIR`` on a free port of 127.0.0.1 (its URL), once it answers; stopped after.

    ``reload_interval_s`` 0 loads the files once, at start; a positive interval follows files as they change.
    """
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--reload_interval", str(reload_interval_s)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{url}/data/logdir")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def hparams_experiment(url: str) -> dict[str, Any]:
    """The HParams experiment TensorBoard serves (``hparamInfos``, ``metricInfos``)."""
    return post_json(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""})


def session_groups(url: str, hparams: list[str], metrics: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every HParams session group TensorBoard serves (one per session here), of any status, with the values of
    ``hparams`` and ``metrics``; none until TensorBoard has loaded the files."""
    body = {
        "experimentName": "",
        "startIndex": 0,
        "sliceSize": 1000,
        "allowedStatuses": ALL_STATUSES,
        "colParams": [{"hparam": name} for name in hparams] + [{"metric": {"tag": tag}} for tag in metrics],
    }
    return post_json(f"{url}/data/plugin/hparams/session_groups", body).get("sessionGroups", [])
