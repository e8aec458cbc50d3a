"""Fault campaign: node kills, driver kills, trial crashes and damaged checkpoints injected into real searches.

For each kind of fault it records the faults injected and survived (the trial or search it hit still
finished), the trials lost (goal 0) and the progress each fault cost a trial, in tokens and in evaluation
intervals (goal at most 1):

- node kills: a worker node of a local multi-node Ray cluster (``ray.cluster_utils.Cluster``, logical GPUs so
  trials run on the workers only) is killed while its trial runs; a new node joins afterwards. Cost = the
  trial's newest checkpoint on storage at the kill minus the checkpoint its restarted run continued from,
  plus the interval in flight (under one interval, not observable from the records);
- driver kills: ``textune run`` is SIGKILLed once two trials finished, then ``textune resume`` finishes the
  search (its own embedded Ray, as a user runs it). Cost as for node kills, per trial that was running (the
  resumed run starts from the checkpoint of Ray's last experiment snapshot; a trial proposed after that
  snapshot is proposed afresh, and all it had done counts as lost);
- trial crashes: ``fault_at_tokens`` raises half-way through the second evaluation interval; Ray retries the
  trial from its checkpoint. Cost = the fault's tokens minus the restart's checkpoint (exact);
- damaged checkpoints: trials crash after two checkpoints without retries (``max_failures: 0``), their latest
  checkpoint is truncated or has a byte flipped, and ``resume`` restores them. Cost = the damaged checkpoint's
  tokens minus the checkpoint the trial fell back to.

    .venv/bin/python -m benchmarks.bench_faults [--node-kills 2 --driver-kills 1 --crashes 4 --corruptions 2]

Run it in a loopback-only network namespace (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmarks.machine import RESULTS, load_note, machine_description
from models.status import TrialStatus

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL = 2048  # tokens between evaluations (and checkpoints)
EVALS_PER_TRIAL = 8
JOB: dict[str, Any] = {
    "data": {"source": "synthetic", "synthetic": {"characters": 60000}},
    "model": {
        "n_layers": 1,
        "n_heads": 2,
        "head_dim": 8,
        "block_size": 32,
        "batch_size": 8,
        "eval_max_blocks": 4,
        "sample_tokens": 0,
    },
    "budget": {"max_tokens": EVALS_PER_TRIAL * EVAL, "eval_every_tokens": EVAL},
    "space": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}},
    "search": {"algorithm": "random"},
    "scheduler": {"kind": "fifo"},
    "max_concurrent_trials": 2,
}


def job(storage: Path, name: str, **changes: Any) -> dict[str, Any]:
    return {**JOB, "name": name, "storage": str(storage), **changes}


def checkpointed_tokens(experiment_dir: Path) -> dict[str, int]:
    """Trial directory name -> tokens of its newest checkpoint on storage (what a fault now leaves behind)."""
    newest: dict[str, int] = {}
    for meta_file in experiment_dir.glob("trial_*/checkpoint_*/meta.json"):
        with_tokens = json.loads(meta_file.read_text())["tokens"]
        trial = meta_file.parent.parent.name
        newest[trial] = max(newest.get(trial, 0), with_tokens)
    return newest


def first_restore(results: Any) -> dict[str, int]:
    """Trial directory name -> the checkpoint tokens its first restarted run continued from."""
    from tune_jobs.results.restarts import restarts

    first = restarts(results.evaluations).groupby("trial_id")["restored_from_tokens"].first()
    return {f"trial_{trial_id}": int(tokens) for trial_id, tokens in first.items()}


def redone_after(results: Any, at_fault: dict[str, int], fault_time: float, hit: set[str]) -> list[int]:
    """For each trial in ``hit`` that had checkpointed when the fault struck: checkpointed tokens trained again.

    Its runs after the fault started at the lowest ``restored_from_tokens`` they report; a trial the lost driver
    had started but the resumed search does not know (proposed after the last snapshot) lost all it had.
    """
    later = results.evaluations[results.evaluations["timestamp"] > fault_time]
    restored = {
        f"trial_{trial_id}": int(tokens)
        for trial_id, tokens in later.groupby("trial_id")["restored_from_tokens"].min().items()
    }
    known = {f"trial_{trial_id}" for trial_id in results.trials["trial_id"]}
    lost = []
    for trial in sorted(hit & set(at_fault)):
        if trial not in known:
            lost.append(at_fault[trial])
        elif trial in restored:  # a trial that had ended before the fault has no later run
            lost.append(at_fault[trial] - restored[trial])
    return lost


def outcome(
    kind: str, faults: int, results: Any, expected_trials: int, lost_tokens: list[int], survived: int, note: str
) -> dict[str, Any]:
    trials = results.trials
    duplicates = int(results.evaluations.duplicated(["trial_id", "tokens"]).sum())
    return {
        "kind": kind,
        "injected": faults,
        "survived": survived,
        "trials_expected": expected_trials,
        "trials_completed": int((trials["status"] == TrialStatus.COMPLETED).sum()),
        "trials_lost": expected_trials - int((trials["status"] == TrialStatus.COMPLETED).sum()),
        "duplicated_evaluations": duplicates,
        "lost_tokens": lost_tokens,
        "lost_intervals": [tokens / EVAL for tokens in lost_tokens],
        "note": note,
    }


def run_in_background(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller after join
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def node_kills(cluster: Any, storage: Path, kills: int) -> dict[str, Any]:
    """One search per kill on two single-GPU workers; the worker of a running trial dies, a new one joins."""
    from tune_jobs.finish import finish_experiment
    from tune_jobs.runner import run_job
    from tune_jobs.spec import JobSpec

    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    lost, survived, expected, all_results = [], 0, 0, []
    for round_index in range(kills):
        spec = JobSpec.model_validate(
            job(
                storage,
                f"node-kill-{round_index}",
                num_samples=3,
                max_concurrent_trials=None,
                resources={"cpu": 1, "gpu": 1},
            )
        )
        experiment_dir = storage / spec.name
        thread, box = run_in_background(functools.partial(run_job, spec))
        wait_for(
            lambda directory=experiment_dir: len(checkpointed_tokens(directory)) >= 2, 300, "two trials to checkpoint"
        )
        killed_at = time.time()
        cluster.remove_node(workers.pop(), allow_graceful=False)
        at_kill = checkpointed_tokens(experiment_dir)  # after the kill: the dead node's last checkpoint included
        workers.append(cluster.add_node(num_cpus=1, num_gpus=1))  # the cluster heals: a new node joins
        thread.join()
        if "error" in box:
            raise box["error"]
        results = finish_experiment(box["value"], spec)
        hit = {f"trial_{trial_id}" for trial_id in results.trials[results.trials["failures"] > 0]["trial_id"]}
        lost += redone_after(results, at_kill, killed_at, hit)
        survived += int(bool(hit) and (results.trials["status"] == TrialStatus.COMPLETED).all())
        expected += spec.num_samples
        all_results.append(results)
    return outcome(
        "node kill",
        kills,
        merged(all_results),
        expected,
        lost,
        survived,
        "checkpointed progress trained again, plus the interval in flight (under 1, not observable)",
    )


def merged(all_results: list[Any]) -> Any:
    from tune_jobs.results.table import ExperimentResults

    return ExperimentResults(
        pd.concat([r.trials for r in all_results], ignore_index=True),
        pd.concat([r.evaluations for r in all_results], ignore_index=True),
    )


def driver_kills(storage: Path, kills: int) -> dict[str, Any]:
    """``textune run`` SIGKILLed after two finished trials, then ``textune resume``: the user's commands."""
    from tune_jobs.experiment import experiment_at
    from tune_jobs.results.collect import collect
    from tune_jobs.spec import JobSpec

    lost, survived, expected, all_results = [], 0, 0, []
    trials = 6
    for round_index in range(kills):
        data = job(
            storage,
            f"driver-kill-{round_index}",
            num_samples=trials,
            max_concurrent_trials=1,
            search={"algorithm": "hyperopt", "n_initial_points": 2},
            budget={"max_tokens": 4 * EVAL, "eval_every_tokens": EVAL},
        )
        job_path = storage / f"driver-kill-{round_index}.yaml"
        job_path.write_text(yaml.safe_dump(data))
        experiment_dir = storage / data["name"]
        command = [sys.executable, "-m", "tune_jobs.cli.main"]
        log = storage / f"driver-kill-{round_index}.log"
        with open(log, "w") as output:
            driver = subprocess.Popen(
                [*command, "run", str(job_path)],
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        # Defaults bind this iteration's driver, log and directory (ruff B023), though wait_for calls it at once.
        def ready_to_kill(
            driver: subprocess.Popen[bytes] = driver, log: Path = log, experiment_dir: Path = experiment_dir
        ) -> bool:
            if driver.poll() is not None:
                raise RuntimeError(f"textune run ended before the kill: {log.read_text()[-2000:]}")
            # Two trials finished and the running one is two checkpoints in: a kill now costs it something.
            return finished_trials(experiment_dir) >= 2 and any(
                2 * EVAL <= tokens < 4 * EVAL for tokens in checkpointed_tokens(experiment_dir).values()
            )

        try:
            wait_for(ready_to_kill, 300, "two finished trials and a running one")
            killed_at = time.time()
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):  # the embedded Ray the driver started, if it outlived it
                os.killpg(driver.pid, signal.SIGKILL)
        at_kill = checkpointed_tokens(experiment_dir)  # everything its trials had saved
        resumed = subprocess.run(
            [*command, "resume", str(experiment_dir)], cwd=REPO_ROOT, capture_output=True, text=True
        )
        if resumed.returncode != 0:
            raise RuntimeError(f"textune resume failed: {resumed.stderr[-2000:]}")
        spec = JobSpec.model_validate(data)
        results = collect(experiment_at(str(storage), spec.name), spec)
        lost += redone_after(results, at_kill, killed_at, set(at_kill))
        survived += int(
            len(results.trials) == trials
            and (results.trials["status"] == TrialStatus.COMPLETED).all()
            and results.trials["trial_id"].is_unique
        )
        expected += trials
        all_results.append(results)
    return outcome(
        "driver kill (SIGKILL)",
        kills,
        merged(all_results),
        expected,
        lost,
        survived,
        "checkpointed progress trained again (back to the last snapshot), plus the interval in flight",
    )


def finished_trials(experiment_dir: Path) -> int:
    """Trials whose last recorded report on storage says completed."""
    count = 0
    for result_file in experiment_dir.glob("trial_*/result.json"):
        lines = result_file.read_text().splitlines()
        count += bool(lines) and json.loads(lines[-1]).get("status") == TrialStatus.COMPLETED
    return count


def crash_search(storage: Path, name: str, crashes: int, fault_at: int, **changes: Any) -> tuple[Any, Any]:
    """A search of ``crashes`` trials that each raise once (in a fresh run) at ``fault_at`` tokens."""
    from tune_jobs.runner import run_job
    from tune_jobs.spec import JobSpec

    spec = JobSpec.model_validate(
        job(storage, name, num_samples=crashes, space={"fault_at_tokens": {"choice": [fault_at]}}, **changes)
    )
    return spec, run_job(spec)


def trial_crashes(storage: Path, crashes: int) -> dict[str, Any]:
    from tune_jobs.finish import finish_experiment

    fault_at = EVAL + EVAL // 2  # half-way through the second interval
    spec, experiment = crash_search(storage, "crashes", crashes, fault_at)
    results = finish_experiment(experiment, spec)
    lost = [fault_at - tokens for tokens in first_restore(results).values()]
    survived = int(((results.trials["status"] == TrialStatus.COMPLETED) & (results.trials["failures"] == 1)).sum())
    return outcome(
        "trial crash",
        crashes,
        results,
        spec.num_samples,
        lost,
        survived,
        "tokens from the restart's checkpoint to the fault, exact",
    )


def truncate(state_file: Path) -> None:
    state_file.write_bytes(state_file.read_bytes()[: state_file.stat().st_size // 2])


def flip_a_byte(state_file: Path) -> None:
    data = bytearray(state_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state_file.write_bytes(bytes(data))


def damaged_checkpoints(storage: Path, corruptions: int) -> dict[str, Any]:
    """Crashed trials (no retries) whose latest checkpoint is damaged, then resumed."""
    from tune_jobs.finish import finish_experiment
    from tune_jobs.runner import resume_job

    # Half-way through the third interval: two checkpoints to damage the latest of and fall back from.
    spec, experiment = crash_search(storage, "damaged", corruptions, 2 * EVAL + EVAL // 2, max_failures=0)
    damaged_at = {}
    for index, trial_dir in enumerate(sorted((storage / "damaged").glob("trial_*"))):
        latest = max(trial_dir.glob("checkpoint_*"))
        damaged_at[trial_dir.name] = json.loads((latest / "meta.json").read_text())["tokens"]
        (truncate, flip_a_byte)[index % 2](latest / "state.pt")
    resume_job(experiment)
    results = finish_experiment(experiment, spec)
    restored = first_restore(results)
    lost = [damaged_at[trial] - restored[trial] for trial in damaged_at if trial in restored]
    # Survived: the trial skipped its damaged checkpoint for the intact one before it, and finished.
    status = {
        Path(trial_dir).name: s
        for trial_dir, s in zip(results.trials["trial_dir"], results.trials["status"], strict=True)
    }
    survived = sum(
        1
        for trial in damaged_at
        if restored.get(trial, damaged_at[trial]) < damaged_at[trial] and status[trial] == TrialStatus.COMPLETED
    )
    return outcome(
        "damaged checkpoint",
        corruptions,
        results,
        spec.num_samples,
        lost,
        survived,
        "the damaged checkpoint's interval, trained and evaluated again (so recorded twice)",
    )


def markdown_row(record: dict[str, Any], machine: str) -> str:
    worst = max(record["lost_intervals"], default=0.0)
    return (
        f"| reliability: {record['kind']} (a tiny Transformer, {EVAL} tokens per evaluation interval) | "
        f"{record['survived']} of {record['injected']} faults "
        f"survived; trials lost {record['trials_lost']} of {record['trials_expected']}; duplicated "
        f"evaluations {record['duplicated_evaluations']}; progress lost per hit trial "
        f"{record['lost_tokens']} tokens (worst {worst:.2f} intervals; {record['note']}) | "
        f"goals: 0 trials lost, ≤ 1 interval "
        f"| `.venv/bin/python -m benchmarks.bench_faults` (loopback namespace) | {machine} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-kills", type=int, default=2)
    parser.add_argument("--driver-kills", type=int, default=1)
    parser.add_argument("--crashes", type=int, default=4)
    parser.add_argument("--corruptions", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = f"{machine_description()}, {load_note()}"

    from ray.cluster_utils import Cluster

    from cluster.connection import connect

    records = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
        storage = Path(scratch)
        os.environ["TEXTUNE_CACHE_DIR"] = str(storage / "cache")
        # First, before this process starts a cluster: the CLI driver brings its own embedded Ray.
        records.append(driver_kills(storage, args.driver_kills))
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "include_dashboard": False,
                "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
            },
        )
        try:
            with connect(cluster.address, log_to_driver=False):  # as `textune run --address HOST:PORT` connects
                records.append(trial_crashes(storage, args.crashes))
                records.append(damaged_checkpoints(storage, args.corruptions))
                records.append(node_kills(cluster, storage, args.node_kills))
        finally:
            cluster.shutdown()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_faults.json").write_text(
        json.dumps({"machine": machine, "eval_every_tokens": EVAL, "faults": records}, indent=2) + "\n"
    )
    for record in records:
        print(markdown_row(record, machine))


if __name__ == "__main__":
    main()
