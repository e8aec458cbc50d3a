"""``textune tensorboard EXPERIMENT``: a real TensorBoard on 127.0.0.1 showing every trial's run.

The command is started as a user would, asked through TensorBoard's HTTP API, and stopped with Ctrl-C
(SIGINT to its process id), which must take the TensorBoard server down with it. A TensorBoard following a
search's storage lists each trial's HParams session from the trial's start.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune, run_until
from support.jobs import tiny_job, write_job
from support.tensorboard import free_port, get_json, hparams_experiment, session_groups, tensorboard
from tune_jobs.experiment import RESULTS_FILE
from tune_jobs.hparams import STATUS_HPARAM

# The session-wide finished_experiment fixture (a whole search) may be set up inside this limit.
pytestmark = pytest.mark.timeout(300)


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


def trial_sessions(url: str) -> dict[str, dict[str, Any]]:
    """Trial directory name -> its HParams session group, as TensorBoard serves them now (none if it fails)."""
    try:
        groups = session_groups(url, ["lr", STATUS_HPARAM])
    except OSError:  # still loading; asked again
        return {}
    return {Path(group["name"]).name: group for group in groups}


def status_of(group: dict[str, Any]) -> tuple[str, str]:
    """(trial_status hparam, the session's status) of a session group of one session."""
    return group["hparams"][STATUS_HPARAM], group["sessions"][0]["status"]


def test_hparams_sessions_show_trials_running_from_their_start_then_their_final_status(tmp_path: Path) -> None:
    """A TensorBoard following the storage while the search runs lists the trial as running (the driver writes
    its session when the trial starts); after the run, a TensorBoard shows one session per trial with its final
    status. One trial with a budget it never reaches, interrupted once TensorBoard shows it running, so nothing
    races the trial's end: it ends unfinished (a finished search's statuses: tests/test_tune_search.py).
    """
    storage = tmp_path / "storage"
    storage.mkdir()
    job = tiny_job(storage, name="live", num_samples=1, max_concurrent_trials=1)
    job["budget"] = {"max_tokens": 10**9, "eval_every_tokens": 1024}
    running: dict[str, dict[str, Any]] = {}
    with tensorboard(storage, reload_interval_s=1) as url:

        def shown_running() -> bool:
            running.update(trial_sessions(url))
            return bool(running)

        output = run_until(write_job(tmp_path / "job.yaml", job), shown_running, signal.SIGINT)
        experiment = hparams_experiment(url)
    assert [status_of(group) for group in running.values()] == [("running", "STATUS_RUNNING")], running
    # The experiment config was there while the search ran, its status domain holding running.
    (status_info,) = [info for info in experiment["hparamInfos"] if info["name"] == STATUS_HPARAM]
    assert "running" in status_info["domainDiscrete"], status_info

    trials = pd.read_parquet(storage / "live" / RESULTS_FILE)
    assert list(trials["status"]) == ["unfinished"], output[-3000:]
    expected = {Path(d).name: status for d, status in zip(trials["trial_dir"], trials["status"], strict=True)}
    assert set(running) == set(expected)
    # TensorBoard keeps the first session it read of a run: a server started after the run shows the rewrite.
    with tensorboard(storage) as url:
        deadline = time.monotonic() + 60
        while len(sessions := trial_sessions(url)) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert {name: status_of(group) for name, group in sessions.items()} == {
        name: (status, "STATUS_RUNNING")
        for name, status in expected.items()  # unfinished: resumable
    }
