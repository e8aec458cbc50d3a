"""``textune tensorboard EXPERIMENT``: a real TensorBoard on 127.0.0.1 showing every trial's run.

The command is started as a user would, asked through TensorBoard's HTTP API, and stopped with Ctrl-C
(SIGINT to its process id), which must take the TensorBoard server down with it. A TensorBoard following a
search's storage lists each trial's HParams session from the trial's start, and its final status once the search
has ended, without a restart.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune, run_until
from support.jobs import tiny_job, write_job
from support.tensorboard import free_port, get_json, hparams_experiment, session_groups, tensorboard
from tune_jobs.experiment import EVALUATIONS_FILE, RESULTS_FILE
from tune_jobs.hparams import STATUS_HPARAM, write_experiment_config, write_hparams, write_running_session
from tune_jobs.space import Dimension

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
    trials = pd.read_parquet(finished_experiment / RESULTS_FILE)
    # Every trial's HParams session is a run of its own, TRIAL_DIR/hparams-STATUS (tune_jobs.hparams).
    sessions = {f"{Path(d).name}/hparams-{s}" for d, s in zip(trials["trial_dir"], trials["status"], strict=True)}
    sessions |= {Path(d).name for d in trials["trial_dir"]}  # and each trial's curves, a run of the trial directory
    try:
        deadline, runs = time.monotonic() + 60, []
        while not sessions <= set(runs):  # TensorBoard serves first and loads the event files after
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, f"runs listed: {runs}"
            try:
                runs = get_json(f"{url}/data/runs")
            except OSError:
                pass
            time.sleep(0.5)
        assert get_json(f"{url}/data/logdir")["logdir"] == str(finished_experiment)
        # Every trial's curves reached the experiment (each trial writes them on the node that runs it): its run
        # has a val_bpc point at every evaluation it reported, whichever worker ran it and however it ended.
        evaluations = pd.read_parquet(finished_experiment / EVALUATIONS_FILE)
        for trial_dir, trial_id in zip(trials["trial_dir"], trials["trial_id"], strict=True):
            run = Path(trial_dir).name
            points = get_json(f"{url}/data/plugin/scalars/scalars?run={run}&tag=bpc/val")
            reported = evaluations[evaluations["trial_id"] == trial_id].sort_values("tokens")
            assert [step for _, step, _ in points] == list(reported["tokens"]), run
            assert [value for _, _, value in points] == pytest.approx(list(reported["val_bpc"]), rel=1e-6), run
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


def trial_sessions(url: str) -> dict[str, list[dict[str, Any]]]:
    """Trial directory name -> its HParams session groups (one per session run TRIAL_DIR/hparams-STATUS), as
    TensorBoard serves them now (none if it fails)."""
    try:
        groups = session_groups(url, ["lr", STATUS_HPARAM], ("val_bpc",))
    except OSError:  # still loading; asked again
        return {}
    sessions: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        sessions.setdefault(Path(group["name"]).parent.name, []).append(group)
    return sessions


def status_of(groups: list[dict[str, Any]]) -> tuple[str, ...]:
    """(trial_status hparam, the session's status) of each session group of a trial (one per session)."""
    return tuple(
        value for group in groups for value in (group["hparams"][STATUS_HPARAM], group["sessions"][0]["status"])
    )


def statuses_until(
    url: str, expected: Mapping[str, tuple[str, ...]], timeout_s: float = 60
) -> dict[str, tuple[str, ...]]:
    """Every trial's session statuses as TensorBoard serves them, asked until they are ``expected`` or the time is
    up (TensorBoard loads files in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = {name: status_of(groups) for name, groups in trial_sessions(url).items()}
        if shown == expected or time.monotonic() > deadline:
            return shown
        time.sleep(0.5)


@pytest.mark.slow  # starts a TensorBoard server
def test_an_open_tensorboard_shows_a_trial_end_without_a_restart(tmp_path: Path) -> None:
    """The driver's two writes, without Ray: a trial's running session when it starts, then (the search over) its
    final session with its metrics. A TensorBoard that read the first shows the second, and only it, while it stays
    open; one started afterwards shows the one final session too."""
    space = {"lr": Dimension(loguniform=[1e-4, 1e-2])}
    filesystem, root = pyarrow.fs.LocalFileSystem(), tmp_path / "experiment"
    write_experiment_config(filesystem, str(root), space)
    write_running_session(filesystem, str(root / "trial_a"), space, {"lr": 1e-3})
    trials = pd.DataFrame(
        {
            "trial_dir": ["/elsewhere/trial_a"],  # as Ray recorded it; the session goes into the experiment's copy
            "status": ["completed"],
            "error": [None],
            "config/lr": [1e-3],
            "tokens": [8192],
            "last_val_bpc": [2.5],
            "last_val_ppl": [6.0],
            "best_val_bpc": [2.25],
        }
    )
    with tensorboard(root, reload_interval_s=1) as url:
        assert statuses_until(url, {"trial_a": ("running", "STATUS_RUNNING")}) == {
            "trial_a": ("running", "STATUS_RUNNING")
        }
        write_hparams(filesystem, str(root), space, trials)
        final = {"trial_a": ("completed", "STATUS_SUCCESS")}
        assert statuses_until(url, final) == final
        (group,) = trial_sessions(url)["trial_a"]
        assert group["name"] == "trial_a/hparams-completed"
        # The final session's metrics came with it: the last evaluation's val_bpc and val_ppl, and the best val_bpc.
        metrics = {metric["name"]["tag"]: metric["value"] for metric in group["metricValues"]}
        assert metrics == {"val_bpc": 2.5, "val_ppl": 6.0, "best_val_bpc": 2.25}
    assert sorted(path.name for path in (root / "trial_a").iterdir()) == ["hparams-completed"]
    with tensorboard(root) as url:
        assert statuses_until(url, final) == final


@pytest.mark.slow  # starts Ray and a TensorBoard server
def test_hparams_sessions_show_trials_running_from_their_start_then_their_final_status(tmp_path: Path) -> None:
    """A TensorBoard following the storage while the search runs lists the trial as running (the driver writes
    its session when the trial starts); the same server, kept open after the run, then shows the trial's final
    status in its place, and a TensorBoard started later the same one session. One trial with a budget it never
    reaches, interrupted once TensorBoard shows it running, so nothing races the trial's end: it ends unfinished
    (a finished search's statuses: tests/test_tune_search.py; a completed one on an open server: the test above).
    """
    storage = tmp_path / "storage"
    storage.mkdir()
    job = tiny_job(storage, name="live", num_samples=1, max_concurrent_trials=1)
    job["budget"] = {"max_tokens": 10**9, "eval_every_tokens": 1024}
    running: dict[str, list[dict[str, Any]]] = {}
    with tensorboard(storage, reload_interval_s=1) as url:

        def shown_running() -> bool:
            running.update(trial_sessions(url))
            return bool(running)

        output = run_until(write_job(tmp_path / "job.yaml", job), shown_running, signal.SIGINT)
        experiment = hparams_experiment(url)
        trials = pd.read_parquet(storage / "live" / RESULTS_FILE)
        assert list(trials["status"]) == ["unfinished"], output[-3000:]
        # unfinished (resumable): the session's own status stays running, the trial's status is the final one.
        expected = {Path(d).name: ("unfinished", "STATUS_RUNNING") for d in trials["trial_dir"]}
        assert statuses_until(url, expected) == expected  # the open server, without a restart
    assert {name: status_of(groups) for name, groups in running.items()} == {
        name: ("running", "STATUS_RUNNING") for name in expected
    }
    # The experiment config was there while the search ran, its status domain holding running.
    (status_info,) = [info for info in experiment["hparamInfos"] if info["name"] == STATUS_HPARAM]
    assert "running" in status_info["domainDiscrete"], status_info
    with tensorboard(storage) as url:
        assert statuses_until(url, expected) == expected
