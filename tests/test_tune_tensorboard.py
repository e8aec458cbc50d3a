"""``textune tensorboard EXPERIMENT``: a real TensorBoard on 127.0.0.1 showing every trial's run.

The command is started as a user would, asked through TensorBoard's HTTP API, and stopped with Ctrl-C
(SIGINT to its process id), which must take the TensorBoard server down with it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune
from tune_jobs.experiment import RESULTS_FILE

# The session-wide finished_experiment fixture (a whole search) may be set up inside this limit.
pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_tensorboard_command_serves_every_trial_run_on_loopback(finished_experiment: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tune_jobs.cli.main", "tensorboard", str(finished_experiment), "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    trial_dirs = {Path(d).name for d in pd.read_parquet(finished_experiment / RESULTS_FILE)["trial_dir"]}
    try:
        deadline, runs = time.monotonic() + 60, []
        while not trial_dirs <= set(runs):  # TensorBoard serves first and loads the event files after
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, f"runs listed: {runs}"
            try:
                runs = get_json(f"{url}/data/runs")
            except OSError:
                pass
            time.sleep(0.5)
        assert get_json(f"{url}/data/logdir")["logdir"] == str(finished_experiment)
        # The experiment-level HParams config sits at the root run, beside the trials' own runs.
        assert "." in runs
        assert not port_open("127.0.0.2", port), "TensorBoard must listen on 127.0.0.1 only"
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert f"TensorBoard for {finished_experiment} at http://127.0.0.1:{port}/" in output
    assert not port_open("127.0.0.1", port), "Ctrl-C left the TensorBoard server running"


def test_tensorboard_of_a_missing_experiment_is_a_user_error(tmp_path: Path) -> None:
    assert_user_error(run_textune("tensorboard", str(tmp_path / "nope")), str(tmp_path / "nope"))
