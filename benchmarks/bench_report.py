"""``textune report``: its wall time against ``textune best`` on the same experiment, and the sampling it does
with one torch thread against all cores.

The experiment is a small ASHA + HyperOpt search on the synthetic corpus, run first through the CLI (or
``--experiment`` names a finished one). Sampling is timed on the best trial's checkpoint: 3 seeds x 200 tokens
from a newline, the report's default, once with torch's default threads (every core) and once with one, best
of ``--repeats`` each, after a warm-up.

    .venv/bin/python -m benchmarks.bench_report [--experiment DIR --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import RESULTS, load_note, machine_description

SEARCH = (
    "num_samples=8",
    "max_concurrent_trials=2",
    "data.synthetic.characters=60000",
    "model.n_layers=1",
    "model.block_size=32",
    "model.eval_max_blocks=4",
    "budget.max_tokens=8192",
    "budget.eval_every_tokens=1024",
    "scheduler.grace_period_tokens=1024",
    "scheduler.reduction_factor=2",
)


def timed_cli(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tune_jobs.cli.main", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def sampling_seconds(experiment_dir: str, threads: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds to draw the report's default samples from the best checkpoint."""
    import torch

    from models.generate import load_model
    from tune_jobs.analysis.quality import QualityConfig, sample_config

    loaded = load_model(Path(experiment_dir) / "best", torch.device("cpu"))
    torch.set_num_threads(threads)
    sample_config(loaded, QualityConfig())  # warm-up: first calls pay for allocation and dispatch caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sample_config(loaded, QualityConfig())
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None, help="A finished experiment (default: run a small search).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = f"{machine_description()}, {load_note()}"
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        experiment = args.experiment
        if experiment is None:
            timed_cli(
                "run",
                "tune_jobs/configs/quickstart.yaml",
                "--name",
                "bench-report",
                *[f"--set={setting}" for setting in (*SEARCH, f"storage={scratch}")],
            )
            experiment = f"{scratch}/bench-report"
        best_s = timed_cli("best", experiment)
        report_s = timed_cli("report", experiment, "--out", f"{scratch}/report")
        all_cores = os.cpu_count() or 1
        sampling = {threads: sampling_seconds(experiment, threads, args.repeats) for threads in (all_cores, 1)}
    result = {"machine": machine, "report_s": report_s, "best_s": best_s, "sampling_s_by_threads": sampling}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_report.json").write_text(json.dumps(result, indent=2))
    print(
        f"| `textune report` wall time, 8-trial search (3 configs x 3 samples x 200 tokens, 3 figures, page) | "
        f"{report_s:.1f} s; its sampling {sampling[1]:.2f} s with 1 torch thread | `textune best` {best_s:.1f} s "
        f"(report x{report_s / best_s:.1f}); sampling with {all_cores} threads {sampling[all_cores]:.2f} s "
        f"(1 thread x{sampling[all_cores] / sampling[1]:.1f} faster) | "
        f"`.venv/bin/python -m benchmarks.bench_report` | {machine} |"
    )


if __name__ == "__main__":
    main()
