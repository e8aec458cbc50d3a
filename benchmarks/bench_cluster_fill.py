"""How fast a HyperOpt search fills a multi-GPU cluster, and how busy it keeps the slots.

A real local cluster (`textune cluster up`'s code: a head and W workers with G logical GPUs each) runs a
search of sleep-only trials (one GPU each) under HyperOpt + ASHA, as `textune run` configures Ray Tune.
Measured twice in the same run, each on a fresh cluster:

- textune's settings: ``max_concurrent_trials`` from :func:`cluster.resources.cluster_trial_slots` and the
  pending-trial limit raised to it (:func:`cluster.resources.raise_pending_trial_limit`);
- the baseline: Ray Tune's defaults for HyperOpt (no concurrency limit, hence one pending trial at a time).

Before both, the run measures the machine's floor: the seconds it needs for as many fresh Python processes as
there are slots to import Ray Tune, which every trial worker does before its trial can start; they run as
many at a time as the machine has cores (started all at once, 32 of them took 294 s on 2 cores, against
53-75 s one per core).

Figures: seconds from ``Tuner.fit()`` until every slot ran a trial ("fill"), and slot utilization: the
seconds trials spent inside the trainable / (slots x seconds from ``fit()`` until the last trial ended).

    .venv/bin/python -m benchmarks.bench_cluster_fill [--workers 4 --gpus-per-worker 8 --duration 300]

The default is the full scale of the goal (32 slots, 5 minutes per search). On 2 cores, 32 trial processes
starting at once measure the machine's process start rather than the scheduling (the floor says how much);
``--workers 2 --gpus-per-worker 4`` is the smaller cluster earlier figures used.

Run it in a loopback-only network namespace (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.machine import RESULTS, load_note, machine_description


def sleep_trial(config: dict[str, Any]) -> None:
    """A trial that only sleeps: ``steps`` reports ``step_s`` apart, each with the metric ASHA needs."""
    from ray import tune

    started = time.time()
    for step in range(1, config["steps"] + 1):
        time.sleep(config["step_s"])
        tune.report({"tokens": step, "val_bpc": config["x"] / step, "started": started, "now": time.time()})


def import_floor(processes: int) -> float:
    """Seconds until ``processes`` fresh Python processes, one per core at a time, have each imported Ray Tune."""

    def import_once(_: int) -> int:
        return subprocess.run([sys.executable, "-c", "import ray.tune"], check=False).returncode

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        if any(pool.map(import_once, range(processes))):
            raise RuntimeError("a process importing ray.tune failed; see its error above")
    return time.perf_counter() - started


def run_search(slots: int, duration_s: float, step_s: float, textune_settings: bool) -> dict[str, float]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.hyperopt import HyperOptSearch

    from cluster.resources import PENDING_TRIALS_VAR, raise_pending_trial_limit

    os.environ.pop(PENDING_TRIALS_VAR, None)
    if textune_settings:
        raise_pending_trial_limit(slots)
    trainable = tune.with_resources(sleep_trial, {"cpu": 1, "gpu": 1})
    tune_config = tune.TuneConfig(
        metric="val_bpc",
        mode="min",
        num_samples=10_000,
        time_budget_s=duration_s,
        reuse_actors=True,
        max_concurrent_trials=slots if textune_settings else None,
        search_alg=HyperOptSearch(n_initial_points=slots, random_state_seed=0),
        scheduler=ASHAScheduler(time_attr="tokens", grace_period=2, reduction_factor=2, max_t=4),
    )
    storage = tempfile.mkdtemp(prefix="bench-fill-")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune_config,
        param_space={"x": tune.uniform(1.0, 2.0), "steps": 4, "step_s": step_s},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    fit_started = time.time()
    results = tuner.fit()
    spans = [(r.metrics["started"], r.metrics["now"]) for r in results if r.metrics and "started" in r.metrics]
    starts = sorted(start for start, _ in spans)
    last_end = max(end for _, end in spans)
    busy = sum(end - start for start, end in spans)
    return {
        "trials": len(spans),
        "fill_s": (starts[slots - 1] - fit_started) if len(starts) >= slots else float("nan"),
        "utilization": busy / (slots * (last_end - fit_started)),
    }


def measure(args: argparse.Namespace, textune_settings: bool) -> dict[str, float]:
    """One search on a fresh cluster: the second search must not inherit the first one's warm workers."""
    from cluster.connection import connect
    from cluster.local_cluster import LocalClusterSpec, down, up
    from cluster.resources import cluster_trial_slots

    state_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    # Logical CPUs match the GPUs so a worker holds one 1-CPU + 1-GPU trial per GPU.
    spec = LocalClusterSpec(
        workers=args.workers,
        cpus_per_worker=args.gpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        head_cpus=1,
        start_timeout_s=180,
    )
    state = up(spec, state_dir)
    try:
        with connect(state.gcs_address, log_to_driver=False):
            slots = cluster_trial_slots(gpus_per_trial=1, cpus_per_trial=1)
            return {"slots": slots, **run_search(slots, args.duration, args.step_s, textune_settings)}
    finally:
        down(state_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gpus-per-worker", type=int, default=8)
    parser.add_argument("--duration", type=float, default=300, help="seconds of each search")
    parser.add_argument("--step-s", type=float, default=5.0, help="sleep between a trial's 4 reports")
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

    machine = f"{machine_description()}, {load_note()}"  # other work slows process starts: say how busy
    floor_s = import_floor(args.workers * args.gpus_per_worker)
    textune = measure(args, textune_settings=True)
    baseline = measure(args, textune_settings=False)
    figures = {
        "workers": args.workers,
        "gpus_per_worker": args.gpus_per_worker,
        "slots": textune["slots"],
        "trial_s": 4 * args.step_s,
        "duration_s": args.duration,
        "textune": textune,
        "baseline": baseline,
        "import_floor_s": floor_s,
        "machine": machine,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_cluster_fill.json").write_text(json.dumps(figures, indent=2))
    command = (
        f".venv/bin/python -m benchmarks.bench_cluster_fill --workers {args.workers} --gpus-per-worker "
        f"{args.gpus_per_worker} --duration {args.duration:g}"
    )
    print(
        f"| cluster fill, {args.workers} workers x {args.gpus_per_worker} logical GPUs ({textune['slots']} slots), "
        f"HyperOpt + ASHA, {4 * args.step_s:g} s sleep trials, {args.duration:g} s | all slots busy after "
        f"{textune['fill_s']:.1f} s; utilization {100 * textune['utilization']:.0f}% ({textune['trials']} trials) "
        f"| Ray Tune defaults: fill {baseline['fill_s']:.1f} s, utilization {100 * baseline['utilization']:.0f}% "
        f"({baseline['trials']} trials); machine floor: {textune['slots']} processes importing Ray Tune, one per "
        f"core at a time, {floor_s:.1f} s | `{command}` | {figures['machine']} |"
    )


if __name__ == "__main__":
    main()
