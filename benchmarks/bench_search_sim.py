"""Search strategies compared on recorded learning-curve tables with the replay simulator (docs/replay.md).

For every table (each directory under benchmarks/tables/, the committed recordings of benchmarks/record_table.py,
or the ones given with --table): every strategy (random+fifo, grid+fifo, random+asha, hyperopt+fifo,
hyperopt+asha, and every strategy of a search algorithm added since: bohb+asha) x paired seeds x simulated
workers 1, 8, 32 and 128, each search ``--trials`` trials. Reported per strategy and worker count, as IQM with a
bootstrap 95% CI over seeds:

- regret (best found minus the table's best, in the metric's unit) at the end and at fixed budgets of
  tokens (a share of trials x max_tokens) and of simulated device-hours;
- tokens and device-hours to come within 1% and 2% of the table's best, with the share of seeds that did;
- the extrapolated share (evaluations the table did not hold; the nearest recorded configuration filled them).

Writes benchmarks/results/search_sim_TABLE.json, a Markdown table on stdout and one plot per table
(docs/replay-TABLE.png: anytime regret at 8 workers; a ``--smoke`` plot goes beside its JSON); ``--out DIR`` puts
both there instead.

    .venv/bin/python -m benchmarks.bench_search_sim [--table DIR ...] [--seeds 50] [--trials 100] [--jobs N]

A table's outputs carry its directory's name, or for an experiment's own table (EXPERIMENT/replay/table) the
experiment's; two tables of one run that would share a name are refused. The searches run in ``--jobs``
processes (default: one per core): nearly all of a replay's time is HyperOpt's and Ray Tune's own code, which one
process runs on one core. ``--seeds``, ``--trials`` and ``--jobs`` are at least 1; a bad value or a directory that
is not a readable table is refused in one paragraph with exit status 2 (benchmarks/table_args.py).

``--smoke`` replays a small synthetic table built in memory (no recording needed, no Ray; not with ``--table``)
with 3 seeds (or ``--seeds``), 24 trials (or ``--trials``) and workers 1 and 8: the test suite runs it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.machine import RESULTS, load_note, machine_description
from benchmarks.table_args import add_jobs_option, at_least_one, output_directory, read_tables

DOCS = Path(__file__).resolve().parents[1] / "docs"
TABLES = Path(__file__).resolve().parent / "tables"
WORKERS = (1, 8, 32, 128)
SEEDS, TRIALS = 50, 100
BUDGET_SHARES = (0.1, 0.25, 0.5, 1.0)
PLOT_WORKERS = 8
SMOKE_SEEDS, SMOKE_TRIALS, SMOKE_WORKERS = 3, 24, (1, 8)


def synthetic_table():
    """A 72-configuration table of smooth curves with seed noise (3 seeds), 8 evaluations each, 5 hyperparameters:
    the smoke test's stand-in for a recorded table."""
    from tune_jobs.replay.table import config_id, make_table
    from tune_jobs.results.table import CONFIG_PREFIX
    from tune_jobs.spec import JobSpec

    grid: dict[str, list[Any]] = {
        "lr": [1e-3, 4e-3, 1.6e-2],
        "batch_size": [8, 16],
        "head_dim": [8, 16],
        "n_layers": [1, 2],
        "optimizer": ["adamw", "rmsprop", "sgd"],
    }
    every, evaluations = 1024, 8
    noise = np.random.default_rng(0)
    rows = []
    for number, values in enumerate(itertools.product(*grid.values())):
        config = dict(zip(grid, values, strict=True))
        quality = (
            0.4 * (math.log10(config["lr"]) + 2.4) ** 2
            + 0.1 * (config["head_dim"] == 8)
            + 0.05 * (config["n_layers"] == 1)
            + {"adamw": 0.0, "rmsprop": 0.1, "sgd": 0.6}[config["optimizer"]]
        )
        wall = 0.5 * config["n_layers"] * config["head_dim"] / 8 * config["batch_size"] / 8
        for seed in (0, 1, 2) if number % 4 == 0 else (0,):
            offset = noise.normal(0, 0.02)
            for step in range(1, evaluations + 1):
                metric = 1.0 + quality + 1.5 / math.sqrt(step) + offset
                rows.append(
                    {
                        "config_id": config_id(config),
                        "seed": seed,
                        "source_trial": f"t{number}-{seed}",
                        **{CONFIG_PREFIX + k: v for k, v in config.items()},
                        "tokens": step * every,
                        "val_bpc": metric,
                        "train_loss": metric,
                        "wall_s": wall,
                        "flops": 1e9 * wall,
                    }
                )
    spec = JobSpec.model_validate(
        {
            "name": "synthetic-table",
            "data": {"source": "synthetic"},
            "space": {k: {"grid": v} for k, v in grid.items()},
            "budget": {"max_tokens": every * evaluations, "eval_every_tokens": every},
            "search": {"algorithm": "grid"},
            "scheduler": {"kind": "fifo"},
        }
    )
    return make_table(pd.DataFrame(rows), spec, {"source": "bench_search_sim synthetic table"})


def regret_at_budgets(runs: list[Any], target: float, mode: str, axis: str, budgets: list[float]) -> list[dict]:
    """Per budget: IQM and CI over seeds of the regret of the best found within that much ``axis``."""
    from tune_jobs.replay.compare import iqm_ci

    out = []
    for budget in budgets:
        regrets = []
        for search in runs:
            seen = search.progress[search.progress[axis] <= budget]
            if not seen.empty:
                best = float(seen["best"].iloc[-1])
                regrets.append(best - target if mode == "min" else target - best)
        out.append({"budget": budget, "reached_share": len(regrets) / len(runs), **iqm_ci(regrets)})
    return out


def bench_strategies() -> list[str]:
    """The default strategies, and every strategy of a search algorithm they lack (bohb+asha)."""
    from tune_jobs.replay.strategies import DEFAULT_STRATEGIES, STRATEGIES

    known = {name.split("+")[0] for name in DEFAULT_STRATEGIES}
    return [*DEFAULT_STRATEGIES, *(name for name in STRATEGIES if name.split("+")[0] not in known)]


# The table and lookup a pool process replays on, set once per process by _start_process.
_PROCESS_STATE: dict[str, Any] = {}


def _start_process(table: Any, lookup: Any) -> None:
    _PROCESS_STATE.update(table=table, lookup=lookup)


def _run_strategy(strategy: Any, seeds: int, count: int, trials: int, target: float) -> Any:
    from tune_jobs.replay.compare import run_strategy

    return run_strategy(_PROCESS_STATE["table"], _PROCESS_STATE["lookup"], strategy, seeds, count, trials, target)


def run_grid(
    table: Any,
    lookup: Any,
    strategies: list[Any],
    seeds: int,
    trials: int,
    workers: tuple[int, ...],
    target: float,
    jobs: int,
) -> dict[int, tuple[list[Any], float]]:
    """Every strategy x worker count (``seeds`` searches each) in ``jobs`` processes; per worker count the
    runs in strategy order and the wall seconds from the start to the last of them."""
    # TPE's proposals cost most, so they go first and the cheap random searches fill the gaps at the end.
    tasks = sorted(
        itertools.product(workers, range(len(strategies))),
        key=lambda task: strategies[task[1]].algorithm in ("random", "grid"),
    )
    started = time.perf_counter()
    # fork: the pool's processes inherit the loaded table and Ray Tune's imports instead of repeating them.
    with ProcessPoolExecutor(jobs, multiprocessing.get_context("fork"), _start_process, (table, lookup)) as pool:
        futures = {
            task: pool.submit(_run_strategy, strategies[task[1]], seeds, task[0], trials, target) for task in tasks
        }
        done = {task: (future.result(), time.perf_counter() - started) for task, future in futures.items()}
    return {
        count: (
            [done[(count, i)][0] for i in range(len(strategies))],
            max(done[(count, i)][1] for i in range(len(strategies))),
        )
        for count in workers
    }


def bench_table(
    label: str, table: Any, seeds: int, trials: int, workers: tuple[int, ...], plot_path: Path | None, jobs: int
):
    from tune_jobs.replay.compare import comparison_document
    from tune_jobs.replay.lookup import CurveLookup
    from tune_jobs.replay.plot import plot_regret
    from tune_jobs.replay.simulator import Overhead
    from tune_jobs.replay.strategies import parse_strategies

    spec = table.spec
    strategies = parse_strategies(bench_strategies(), spec, [spec.budget.eval_every_tokens], [3.0])
    lookup = CurveLookup(table, "nearest")
    target = table.best_value()
    token_budgets = [share * trials * spec.budget.max_tokens for share in BUDGET_SHARES]
    results = []
    for count, (runs, seconds) in run_grid(table, lookup, strategies, seeds, trials, workers, target, jobs).items():
        document = comparison_document(table, lookup.fill, runs, count, trials, target, Overhead(), seconds)
        longest = max(float(s.progress["device_s"].iloc[-1]) for r in runs for s in r.searches)
        hour_budgets = [share * longest for share in BUDGET_SHARES]
        for strategy_runs, summary in zip(runs, document["strategies"], strict=True):
            summary["regret_at_tokens"] = regret_at_budgets(
                strategy_runs.searches, target, table.mode, "tokens", token_budgets
            )
            summary["regret_at_device_hours"] = [
                {**row, "budget": row["budget"] / 3600}
                for row in regret_at_budgets(strategy_runs.searches, target, table.mode, "device_s", hour_budgets)
            ]
        results.append(document)
        if plot_path is not None and count == PLOT_WORKERS:
            plot_regret(
                runs,
                target,
                table.mode,
                table.metric,
                f"{label}: {count} simulated workers, {seeds} seeds, {trials} trials",
                plot_path,
            )
    return results


def markdown(label: str, results: list[dict[str, Any]]) -> str:
    from tune_jobs.replay.compare import format_ci as ci

    lines = [
        f"### {label}",
        "",
        "| strategy | workers | final regret | tokens to 1% (reached) | "
        "tokens to 2% (reached) | device-h to 1% | extrapolated |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for document in results:
        for s in document["strategies"]:
            one, two = s["within_0.01"], s["within_0.02"]
            lines.append(
                f"| {s['strategy']} | {document['workers']} | {ci(s['regret'], '.4f')} | "
                f"{ci(one['tokens'], ',.0f')} ({100 * one['reached_share']:.0f}%) | "
                f"{ci(two['tokens'], ',.0f')} ({100 * two['reached_share']:.0f}%) | "
                f"{ci(one['device_hours'], '.4f')} | {100 * s['extrapolated_share']:.0f}% |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--table", type=Path, action="append", default=[], help="A table directory (repeatable).")
    source.add_argument("--smoke", action="store_true", help="A synthetic table, 3 seeds, workers 1 and 8.")
    parser.add_argument(
        "--seeds", type=at_least_one, help=f"Paired seeds (default {SEEDS}; {SMOKE_SEEDS} with --smoke)."
    )
    parser.add_argument(
        "--trials", type=at_least_one, help=f"Trials a search (default {TRIALS}; {SMOKE_TRIALS} with --smoke)."
    )
    add_jobs_option(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="Where the JSON and the plots go (default: benchmarks/results and docs)."
    )
    args = parser.parse_args()
    workers: tuple[int, ...]
    if args.smoke:
        tables = [("synthetic-smoke", synthetic_table())]
        seeds, trials, workers = args.seeds or SMOKE_SEEDS, args.trials or SMOKE_TRIALS, SMOKE_WORKERS
    else:
        directories = args.table or sorted(p.parent for p in TABLES.glob("*/manifest.json"))
        if not directories:
            parser.error(
                f"no tables under {TABLES}: record one with benchmarks/record_table.py --out "
                f"{TABLES}/CORPUS, or give --table DIR"
            )
        tables = read_tables(parser, directories)
        seeds, trials, workers = args.seeds or SEEDS, args.trials or TRIALS, WORKERS
    out = output_directory(parser, args.out or RESULTS)
    print(f"bench_search_sim on {machine_description()}, {load_note()}", flush=True)
    for label, table in tables:
        started, load = time.perf_counter(), load_note()
        # The smoke's plot is a throwaway: it goes with its JSON, never into docs/.
        plot_path = (args.out or (RESULTS if args.smoke else DOCS)) / f"replay-{label}.png"
        results = bench_table(label, table, seeds, trials, workers, plot_path, args.jobs)
        elapsed = time.perf_counter() - started
        searches = sum(len(d["strategies"]) * seeds for d in results)
        trials_run = sum(s["simulated_trials"] for d in results for s in d["strategies"])
        # One process's rate: simulated trials per second of the searches' own run time.
        per_process = trials_run / sum(
            s["simulated_trials"] / s["simulated_trials_per_second"] for d in results for s in d["strategies"]
        )
        path = out / f"search_sim_{label}.json"
        path.write_text(
            json.dumps(
                {
                    "table": label,
                    "manifest": table.manifest,
                    "seconds": elapsed,
                    "jobs": args.jobs,
                    "load": load,
                    "searches": searches,
                    "simulated_trials": trials_run,
                    "trials_per_second_one_process": per_process,
                    "results": results,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(markdown(label, results))
        print(
            f"\n{label}: {searches} simulated searches, {trials_run} trials in {elapsed:.1f} s with {args.jobs} "
            f"processes ({trials_run / elapsed:.0f} simulated trials/s, fill and statistics included; "
            f"{per_process:.0f} per process); {load}; written {path} and {plot_path}"
        )


if __name__ == "__main__":
    main()
