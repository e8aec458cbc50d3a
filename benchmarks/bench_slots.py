"""Slot utilization: the share of trial slot-time spent in training steps, textune vs plain Ray Tune.

24 trials of about ``--trial-seconds`` each on 2 CPU slots (a tiny Transformer on the synthetic corpus, one
torch thread per trial), measured three times in the same run:

- textune: ``textune run``'s path (:func:`tune_jobs.runner.run_job`): function trainable with the fixed
  params bound once, ``reuse_actors=True``, checkpoints reported to Ray Tune;
- baseline: a plain Ray Tune function trainable that calls the same ``run_trial`` with the same checkpoints,
  ``reuse_actors=False`` (a fresh worker process, and a fresh torch import, per trial);
- floor: Ray Tune with textune's settings (``reuse_actors=True``, the same number of reports per trial, each
  with a checkpoint of the same size, the same checkpoints kept) around a trial that only sleeps for the
  training time textune's trials measured: what Ray Tune alone costs, with no torch and no model.

Utilization = sum over trials of the seconds spent in optimiser steps (tokens / tokens_per_s of every
evaluation interval, as the trainer reports them) / (2 slots x wall seconds of the search, from the call that
starts it until it returns). Everything else counts as overhead, split in two:

- inside trials: the seconds Ray Tune's ``time_total_s`` counts in the trainable that are not optimiser steps:
  evaluation, checkpoint writing and reporting, building the model, and in a slot's first trial the import of
  torch (with ``torch._dynamo``, which torch's optimisers import on first use);
- outside trials: the rest of the slot time: worker process start and the import of Ray Tune in it, the
  driver's set-up (dataset check, Tuner), Ray Tune's scheduling between trials, and each report's wait until
  the driver asks for the next result (Ray Tune's function trainables report synchronously).

The driver imports its modules before the clock starts, as ``textune run`` does before it starts Ray.

    .venv/bin/python -m benchmarks.bench_slots [--trials 24 --trial-seconds 10]

Run it in a loopback-only network namespace (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from benchmarks.machine import RESULTS, load_note, machine_description
from cluster.connection import EMBEDDED, connect
from data_pipeline.config import DataConfig
from data_pipeline.prepare import prepare_dataset
from tune_jobs.results.collect import collect
from tune_jobs.runner import run_job
from tune_jobs.spec import JobSpec

SLOTS = 2
MODEL = {
    "n_layers": 2,
    "n_heads": 2,
    "head_dim": 16,
    "block_size": 64,
    "batch_size": 16,
    "eval_max_blocks": 8,
    "sample_tokens": 0,
}
EVALS_PER_TRIAL = 4


def plain_trial(config: dict[str, Any]) -> None:
    """The baseline: a plain function trainable around the same trainer."""
    from models.trial import run_trial

    class Reporter:
        def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
            tune.report(metrics, checkpoint=checkpoint)

    run_trial(config, Reporter())


def floor_trial(config: dict[str, Any]) -> None:
    """The floor: the trial's reports and checkpoints without the trainer; training is a sleep."""
    for evaluation in range(1, EVALS_PER_TRIAL + 1):
        time.sleep(config["interval_s"])
        with tempfile.TemporaryDirectory(prefix="bench-floor-ckpt-") as checkpoint_dir:
            (Path(checkpoint_dir) / "state.pt").write_bytes(bytes(config["checkpoint_bytes"]))
            # One token per interval at 1 / interval_s tokens per second: training_seconds() reads interval_s.
            tune.report(
                {"tokens": evaluation, "tokens_per_s": 1.0 / config["interval_s"]},
                checkpoint=tune.Checkpoint.from_directory(checkpoint_dir),
            )


def calibrate(dataset_dir: str, seconds: float) -> tuple[int, int]:
    """Training tokens one thread trains in ``seconds`` (measured here, rounded to whole evaluations), and the
    bytes of the checkpoint a trial reports at each evaluation."""
    import torch

    from models.trial import run_trial

    torch.set_num_threads(1)
    rates: list[float] = []
    checkpoint_bytes: list[int] = []

    class Reporter:
        def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
            rates.append(metrics["tokens_per_s"])
            checkpoint_bytes.append(sum(f.stat().st_size for f in Path(checkpoint_dir).iterdir()))

    step = MODEL["batch_size"] * MODEL["block_size"]
    run_trial(
        {
            **MODEL,
            "dataset_dir": dataset_dir,
            "max_tokens": 40 * step,
            "eval_every_tokens": 20 * step,
            "num_threads": 1,
            "device": "cpu",
        },
        Reporter(),
    )
    per_eval = max(step, int(rates[-1] * seconds / EVALS_PER_TRIAL) // step * step)
    return per_eval * EVALS_PER_TRIAL, checkpoint_bytes[-1]


def training_seconds(evaluations: pd.DataFrame) -> float:
    """Seconds spent in optimiser steps, from each evaluation interval's tokens and tokens/s."""
    total = 0.0
    for _, trial in evaluations.groupby("trial_id"):
        trial = trial.sort_values("tokens")
        intervals = trial["tokens"].diff().fillna(trial["tokens"].iloc[0])
        total += float((intervals / trial["tokens_per_s"]).sum())
    return total


def slot_time_split(evaluations: pd.DataFrame, wall_s: float) -> dict[str, float]:
    """Shares of the slots' time: training, other time inside trials, time outside any trial.

    ``median_trial_overhead_s`` is the typical trial's time inside the trainable outside optimiser steps: with
    actor reuse only a slot's first trial pays the worker's imports, so the median is the steady cost.
    """
    training = training_seconds(evaluations)
    per_trial = evaluations.groupby("trial_id")
    in_trials = float(per_trial["time_total_s"].max().sum())
    overhead_per_trial = [trial["time_total_s"].max() - training_seconds(trial) for _, trial in per_trial]
    slot_time = SLOTS * wall_s
    return {
        "utilization": training / slot_time,
        "inside_trials_overhead": (in_trials - training) / slot_time,
        "outside_trials_overhead": (slot_time - in_trials) / slot_time,
        "training_s": training,
        "wall_s": wall_s,
        "median_trial_overhead_s": float(pd.Series(overhead_per_trial).median()),
    }


def run_textune(dataset: dict[str, Any], max_tokens: int, trials: int, storage: str) -> dict[str, float]:
    spec = JobSpec.model_validate(
        {
            "name": "slots-textune",
            "data": dataset,
            "model": MODEL,
            "storage": storage,
            "num_samples": trials,
            "budget": {"max_tokens": max_tokens, "eval_every_tokens": max_tokens // EVALS_PER_TRIAL},
            "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
            "search": {"algorithm": "random"},
            "scheduler": {"kind": "fifo"},
            "max_concurrent_trials": SLOTS,
            "keep_checkpoints": 1,
        }
    )
    started = time.perf_counter()
    experiment = run_job(spec)
    wall = time.perf_counter() - started
    return slot_time_split(collect(experiment, spec).evaluations, wall)


def run_ray_tune(
    trainable: Any, param_space: dict[str, Any], trials: int, reuse_actors: bool, storage: str, name: str
) -> dict[str, float]:
    """A plain Ray Tune search on the 2 slots, keeping one checkpoint per trial as textune's search does."""
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=SLOTS, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            # textune's run turned Ray's automatic loggers off in this process
            callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    evaluations = pd.concat([r.metrics_dataframe.assign(trial_id=str(i)) for i, r in enumerate(grid)])
    return slot_time_split(evaluations, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--trial-seconds", type=float, default=10.0)
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = f"{machine_description()}, Ray {ray.__version__}, {load_note()}"
    dataset = {"source": "synthetic", "synthetic": {"characters": 200_000}}
    dataset_dir = str(prepare_dataset(DataConfig.model_validate(dataset)))
    max_tokens, checkpoint_bytes = calibrate(dataset_dir, args.trial_seconds)
    # A Ray of its own, never another one running on this machine, started as `textune run` starts one.
    with connect(EMBEDDED, num_cpus=SLOTS, log_to_driver=False):
        with tempfile.TemporaryDirectory(prefix="bench-slots-") as storage:
            textune = run_textune(dataset, max_tokens, args.trials, storage)
            fixed = {
                **MODEL,
                "dataset_dir": dataset_dir,
                "max_tokens": max_tokens,
                "num_threads": 1,
                "device": "cpu",
                "eval_every_tokens": max_tokens // EVALS_PER_TRIAL,
            }
            plain = run_ray_tune(
                plain_trial,
                {**fixed, "lr": tune.loguniform(1e-3, 1e-2)},
                args.trials,
                reuse_actors=False,
                storage=storage,
                name="slots-plain",
            )
            # The floor sleeps for the training time textune's trials measured in this run.
            interval_s = textune["training_s"] / (args.trials * EVALS_PER_TRIAL)
            floor = run_ray_tune(
                floor_trial,
                {"interval_s": interval_s, "checkpoint_bytes": checkpoint_bytes, "x": tune.uniform(0.0, 1.0)},
                args.trials,
                reuse_actors=True,
                storage=storage,
                name="slots-floor",
            )
    result = {
        "trials": args.trials,
        "slots": SLOTS,
        "trial_seconds_target": args.trial_seconds,
        "max_tokens": max_tokens,
        "checkpoint_bytes": checkpoint_bytes,
        "mean_training_s_per_trial": textune["training_s"] / args.trials,
        "textune": textune,
        "plain_no_reuse": plain,
        "ray_tune_floor": floor,
        "ratio_to_plain": textune["utilization"] / plain["utilization"],
        "ratio_to_floor": textune["utilization"] / floor["utilization"],
        "machine": machine,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_slots_{args.trial_seconds:g}s.json").write_text(json.dumps(result, indent=2))

    def shares(figures: dict[str, float]) -> str:
        return (
            f"{100 * figures['utilization']:.1f}% ({figures['wall_s']:.0f} s; overhead inside trials "
            f"{100 * figures['inside_trials_overhead']:.1f}%, "
            f"outside {100 * figures['outside_trials_overhead']:.1f}%; median trial "
            f"{figures['median_trial_overhead_s']:.2f} s)"
        )

    print(
        f"| slot utilization, {args.trials} trials of ~{result['mean_training_s_per_trial']:.1f} s training on "
        f"{SLOTS} slots | textune {shares(textune)} | plain Ray Tune, no actor reuse {shares(plain)}: textune "
        f"x{result['ratio_to_plain']:.2f}; Ray Tune floor (sleeping trials, same reports and checkpoints) "
        f"{shares(floor)}: textune x{result['ratio_to_floor']:.2f} | `.venv/bin/python -m benchmarks.bench_slots "
        f"--trial-seconds {args.trial_seconds:g}` | {machine} |"
    )


if __name__ == "__main__":
    main()
