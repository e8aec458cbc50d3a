"""Faults injected into real searches: a lost worker node, trials that crash, damaged checkpoints.

Every trial is accounted for, and a restarted trial continues from its newest intact checkpoint: its reports
(``restored_from_tokens``) show where each run started, so the progress a fault cost is read from the results.
One Ray cluster serves the module: a head node for the crash tests, plus two single-GPU worker nodes (logical
GPUs) that the node-loss test adds and kills one of.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from support.jobs import tiny_job
from support.tensorboard import session_file
from tune_jobs.experiment import Experiment
from tune_jobs.finish import finish_experiment
from tune_jobs.hparams import ERROR_HPARAM
from tune_jobs.results.restarts import restarts
from tune_jobs.results.table import ExperimentResults
from tune_jobs.runner import resume_job, run_job
from tune_jobs.spec import JobSpec
from tune_jobs.trainable import CHECKPOINT_NAME

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.usefixtures("shared_module_cache")]

EVAL = 1024  # tokens between evaluations (and checkpoints)
# Crash settings (the trainer's fault injection, docs/models.md): between the first and second evaluation once
# (a retry from the checkpoint gets through), or between the second and third in every attempt.
CRASH_ONCE = {"fault_at_tokens": EVAL + EVAL // 2, "fault_every_attempt": False}
CRASH_ALWAYS = {"fault_at_tokens": 2 * EVAL + EVAL // 2, "fault_every_attempt": True}


@pytest.fixture(scope="module")
def cluster(module_cache: Path) -> Iterator[Any]:
    """A head node with 2 CPUs and a driver connected to it; nodes notice a dead peer within seconds."""
    from ray.cluster_utils import Cluster

    from cluster.connection import connect

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": False,
            # Ray's default (health check every 3 s, 5 misses) would take 15 s to declare a killed node dead.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
        },
    )
    try:
        with connect(cluster.address, log_to_driver=False):  # as `textune run --address HOST:PORT` connects
            yield cluster
    finally:
        cluster.shutdown()


def history(results: ExperimentResults, trial_id: str) -> pd.DataFrame:
    return results.evaluations[results.evaluations["trial_id"] == trial_id]


# --- trial crashes and damaged checkpoints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_search(
    cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobSpec, Experiment, ExperimentResults]:
    """Two trials, max_failures 1: one crashes in every attempt, one crashes once (each crash costs Ray a new
    worker process, so there are few)."""
    points = [CRASH_ALWAYS, CRASH_ONCE]
    job = tiny_job(
        tmp_path_factory.mktemp("storage"),
        name="crashes",
        num_samples=len(points),
        max_failures=1,
        budget={"max_tokens": 4 * EVAL, "eval_every_tokens": EVAL},
        # Both points lie in the space (a resume checks them again); random search runs the points only.
        space={
            "fault_at_tokens": {"choice": [p["fault_at_tokens"] for p in points]},
            "fault_every_attempt": {"choice": [False, True]},
        },
        search={"algorithm": "random", "points_to_evaluate": points},
    )
    spec = JobSpec.model_validate(job)
    experiment = run_job(spec)
    return spec, experiment, finish_experiment(experiment, spec)


def trials_with(results: ExperimentResults, fault: dict[str, Any]) -> pd.DataFrame:
    trials = results.trials
    return trials[
        (trials["config/fault_at_tokens"] == fault["fault_at_tokens"])
        & (trials["config/fault_every_attempt"] == fault["fault_every_attempt"])
    ]


def test_a_crashed_trial_is_retried_from_its_checkpoint(
    crash_search: tuple[JobSpec, Experiment, ExperimentResults],
) -> None:
    spec, _, results = crash_search
    retried = trials_with(results, CRASH_ONCE).iloc[0]
    assert retried["status"] == "completed" and retried["failures"] == 1, retried
    assert "injected fault" in retried["error"]
    evaluations = history(results, retried["trial_id"])
    tokens, restored_from = list(evaluations["tokens"]), list(evaluations["restored_from_tokens"])
    # One report before the crash; the retry continued from that checkpoint, not from token 0, so only the
    # interval in flight was lost. (Ray's result log can miss the row of the report just before the crash when
    # the worker dies right after it, so the pre-crash row is not required here.)
    assert tokens[-3:] == [2 * EVAL, 3 * EVAL, 4 * EVAL] and restored_from[-3:] == [EVAL, EVAL, EVAL]
    assert tokens == sorted(set(tokens)), "the retry trained an interval again"


def test_a_trial_that_keeps_failing_is_recorded_as_errored(
    crash_search: tuple[JobSpec, Experiment, ExperimentResults],
) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import api_pb2, metadata

    spec, experiment, results = crash_search
    failing = trials_with(results, CRASH_ALWAYS)
    assert len(results.trials) == spec.num_samples
    assert (failing["status"] == "errored").all() and (failing["failures"] == spec.max_failures + 1).all()
    assert failing["error"].str.startswith("RuntimeError: injected fault").all(), list(failing["error"])
    # The same in the table on disk and in TensorBoard's HParams session of each failed trial.
    on_disk = pd.read_parquet(Path(experiment.root) / "results.parquet").set_index("trial_id")
    for _, trial in failing.iterrows():
        assert on_disk.loc[trial["trial_id"], "error"] == trial["error"]
        events = session_file(Path(experiment.root) / Path(trial["trial_dir"]).name)
        plugin_data = {
            value.tag: value.metadata.plugin_data.content
            for event in EventFileLoader(str(events)).Load()
            for value in event.summary.value
        }
        start = metadata.parse_session_start_info_plugin_data(plugin_data[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(plugin_data[metadata.SESSION_END_INFO_TAG])
        assert end.status == api_pb2.STATUS_FAILURE
        assert start.hparams[ERROR_HPARAM].string_value == trial["error"]
    # The search went on: the other trial completed.
    assert (trials_with(results, CRASH_ONCE)["status"] == "completed").all()


def test_a_restored_trial_falls_back_from_a_damaged_checkpoint(
    cluster: Any, crash_search: tuple[JobSpec, Experiment, ExperimentResults]
) -> None:
    spec, experiment, before = crash_search
    errored = trials_with(before, CRASH_ALWAYS).iloc[0]
    # It checkpointed at 1 and 2 evaluations; truncate the latest, the one Ray restores it from. (A flipped byte
    # is caught the same way: tests/test_models_checkpoints.py; the benchmark injects both.)
    state_file = max(Path(errored["trial_dir"]).glob("checkpoint_*")) / "state.pt"
    state_file.write_bytes(state_file.read_bytes()[: state_file.stat().st_size // 2])
    resume_job(experiment)  # continues the errored trial
    after = finish_experiment(experiment, spec)
    evaluations = history(after, errored["trial_id"])
    # The restored run skipped the damaged checkpoint (2 evaluations) for the one before it, and went on.
    new_reports = evaluations.iloc[len(history(before, errored["trial_id"])) :]
    assert list(new_reports["restored_from_tokens"]) == [EVAL], evaluations
    assert list(new_reports["tokens"]) == [2 * EVAL]
    # The trial that had finished was left alone.
    finished = trials_with(before, CRASH_ONCE).iloc[0]["trial_id"]
    assert len(history(after, finished)) == len(history(before, finished))
    logs = "".join(
        path.read_text(errors="replace") for path in Path(cluster.head_node.get_logs_dir_path()).glob("worker-*.err")
    )
    assert "skipping a damaged checkpoint of this trial" in logs, "no warning was logged"


# --- worker-node loss ----------------------------------------------------------------------------------


def checkpoint_indices(trial: Path) -> list[int]:
    """The indices of a trial's checkpoints on storage (Ray numbers them from 0; they reach storage as reported)."""
    return [int(match.group(1)) for path in trial.iterdir() if (match := CHECKPOINT_NAME.match(path.name))]


def running_trials_by_node(experiment: Path, evaluations_per_trial: int) -> dict[str, str]:
    """{trial directory name: node id} of the trials that reported a checkpoint and not yet their last one, the
    node read from the trial's latest report in its result log on storage (Ray syncs it with its snapshots)."""
    found = {}
    for trial in experiment.glob("trial_*"):
        indices = checkpoint_indices(trial)
        lines = (trial / "result.json").read_text().splitlines() if (trial / "result.json").exists() else []
        if indices and max(indices) < evaluations_per_trial - 1 and lines:
            try:
                found[trial.name] = json.loads(lines[-1])["node_id"]
            except json.JSONDecodeError:  # a line Ray is still writing: read it next time
                continue
    return found


def worker_processes(node: Any) -> list[int]:
    """The pids of the processes a cluster_utils node's raylet started (its Ray workers, trial actors among them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, todo = [], [node.all_processes["raylet"][0].process.pid]
    while todo:
        children = parents.get(todo.pop(), [])
        pids += children
        todo += children
    return pids


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def freeze_a_running_trial(
    workers: list[Any], experiment: Path, evaluations_per_trial: int, search: threading.Thread
) -> tuple[str, Any, list[int]]:
    """(trial directory name, its node, the node's stopped worker pids) of a trial frozen mid-run on its node.

    The node is picked from the trial's own reports. Its workers are stopped (SIGSTOP), then the trial's
    checkpoints on storage are read again: a stopped trial cannot report, so one without its last checkpoint
    is certainly still running there when the node is killed. (A trial that finished between its report and the
    stop is let go, and another is picked.)
    """
    by_id = {node.node_id: node for node in workers}
    deadline = time.monotonic() + 180
    while True:
        assert search.is_alive(), "the search ended before a running trial could be caught on its node"
        assert time.monotonic() < deadline, "no trial was seen running with a checkpoint in time"
        for trial, node_id in running_trials_by_node(experiment, evaluations_per_trial).items():
            pids = worker_processes(by_id[node_id])
            signal_all(pids, signal.SIGSTOP)
            if max(checkpoint_indices(experiment / trial)) < evaluations_per_trial - 1:
                return trial, by_id[node_id], pids
            signal_all(pids, signal.SIGCONT)
        time.sleep(0.05)


def test_worker_node_loss_resumes_trials_from_their_checkpoints(cluster: Any, tmp_path: Path) -> None:
    # Two worker nodes with one logical GPU each; trials ask for a GPU, so they run only there (the head has
    # none) and a node holds one trial at a time. Trials have no CUDA: device auto falls back to the CPU.
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    # Intervals of a few hundredths of a second on an idle machine: the trial to kill is frozen, not raced.
    eval_every, evaluations_per_trial = 8 * EVAL, 16
    job = tiny_job(
        tmp_path,
        name="node-loss",
        num_samples=2,
        max_concurrent_trials=None,
        resources={"cpu": 1, "gpu": 1},
        budget={"max_tokens": evaluations_per_trial * eval_every, "eval_every_tokens": eval_every},
    )
    spec = JobSpec.model_validate(job)
    outcome: dict[str, Any] = {}

    def search_in_background() -> None:
        try:
            outcome["experiment"] = run_job(spec)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
            outcome["error"] = exc

    search = threading.Thread(target=search_in_background, daemon=True)
    search.start()
    # Kill the node a trial reported from, while that trial is mid-run (a node dies mid-interval): its
    # processes are frozen first, so the trial cannot finish between the choice and the kill.
    victim, lost_node, frozen = freeze_a_running_trial(workers, tmp_path / "node-loss", evaluations_per_trial, search)
    cluster.remove_node(lost_node, allow_graceful=False)
    signal_all(frozen, signal.SIGKILL)  # the node's processes die with it
    survivor = next(node for node in workers if node is not lost_node)
    search.join(timeout=200)
    assert not search.is_alive(), "the search did not finish after the node loss"
    assert "error" not in outcome, outcome

    results = finish_experiment(outcome["experiment"], spec)
    trials = results.trials
    assert len(trials) == spec.num_samples and (trials["status"] == "completed").all(), trials[["status", "error"]]
    lost = trials[trials["trial_dir"].map(lambda path: Path(path).name) == victim].iloc[0]
    # The trial on the lost node was restarted (the node loss counts as one failure) and finished on the
    # surviving worker, where every trial ended.
    assert lost["failures"] == 1, trials[["trial_id", "failures", "node_id"]]
    assert (trials["node_id"] == survivor.node_id).all(), trials[["trial_id", "node_id"]]
    # It continued from the last evaluation it had reported: not from scratch, and only the interval in flight
    # (under one evaluation interval) was trained again. (Ray's result log can miss the rows a killed node
    # reported last, so a restart is judged by the reports after it.)
    restarted = restarts(results.evaluations)
    assert list(restarted["trial_id"]) == [lost["trial_id"]], restarted
    assert (restarted["restored_from_tokens"] > 0).all() and (restarted["tokens_redone"] == 0).all(), restarted
    evaluations = history(results, lost["trial_id"])
    tokens = list(evaluations["tokens"])
    assert tokens == sorted(set(tokens)) and tokens[-1] == eval_every * evaluations_per_trial, tokens
    assert evaluations["restored_from_tokens"].iloc[-1] > 0, "the trial started again from scratch"
