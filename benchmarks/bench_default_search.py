"""Which search should be textune's default: issue #15's evidence, replayed on recorded learning-curve tables.

Settings fixed before any table was looked at (the same as benchmarks/bench_search_sim.py): per table, 50 paired
seeds, 8 and 32 simulated workers, 100 trials a search, ASHA with grace period = the table's eval_every_tokens and
reduction factor 3. Strategies: ``bohb+asha`` (the candidate) against ``hyperopt+asha`` (today's default),
``random+asha`` and ``random+fifo``. Per strategy and worker count:

- tokens until the best found is within 2% of the table's best, as IQM with a paired bootstrap 95% CI over seeds.
  A seed that never gets there counts as needing infinitely many (it is censored, not dropped: dropping it would
  flatter a strategy that often fails), so an IQM is infinite when more than a quarter of the seeds fail; and
  the share of seeds that got there, with its CI;
- the candidate's ratio against each baseline (baseline IQM / candidate IQM, CI from the same resampled seeds)
  and the issue's goals: >= 5x fewer tokens than random+fifo, 1.5x than random+asha, 1.3x than hyperopt+asha;
- regret (best found minus the table's best) at fixed token budgets of 1 to 100 full trials' tokens, and the
  paired difference candidate minus hyperopt+asha with its CI: "worse beyond the CI" when the CI lies above 0.

Promotion-type ASHA (issue #15 point 3): Ray's ASHA stops a trial at a rung; the promotion variant (Li et al.
2020, "A System for Massively Parallel Hyperparameter Tuning", Syne Tune's ``type="promotion"``) pauses every
trial at its next rung and, whenever a worker frees, resumes from its checkpoint the best not yet promoted trial
in the top 1/reduction_factor of the highest rung that has one, else starts a new trial. Ray Tune has no such
scheduler, so :func:`promotion_search` replays it here on the same clock, proposals (the ``random+asha``
strategy's seeded random proposals, in the same order) and curves as the simulator's stopping ``random+asha``;
the two are compared by tokens to 2% and by regret at the same budgets. Rank agreement: Kendall τ of each
rung's ranking against the final one (benchmarks/bench_rank_agreement.py) on each table.

Results and the decision they led to: docs/tuning.md, "Which search is the default: the evidence".

Writes benchmarks/results/default_search_TABLE.json and prints Markdown tables.

    .venv/bin/python -m benchmarks.bench_default_search [--table DIR ...] [--jobs N]

Tables: every directory under benchmarks/tables/, or the ones given, named as bench_search_sim names them (an
experiment's own table by its experiment). The simulator's searches run in ``--jobs`` processes (at least 1;
default: one per core), through bench_search_sim's pool. A bad value or a directory that is not a readable
table is refused in one paragraph with exit status 2.

``--smoke`` (not with ``--table``) runs the same on bench_search_sim's in-memory synthetic table with 4 seeds,
24 trials and 8 workers, in seconds, without Ray; the test suite runs it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_rank_agreement import REPLAY_REDUCTION_FACTOR, rank_agreement, replay_rungs
from benchmarks.bench_search_sim import TABLES, run_grid, synthetic_table
from benchmarks.machine import RESULTS, load_note, machine_description
from benchmarks.table_args import add_jobs_option, output_directory, read_tables

CANDIDATE = "bohb+asha"
# Each baseline with the factor the candidate must beat it by (issue #15, point 4).
GOALS = {"random+fifo": 5.0, "random+asha": 1.5, "hyperopt+asha": 1.3}
BASELINE = "hyperopt+asha"
PROMOTION_GOAL = 1.2  # promotion is worth building only at >= 1.2x fewer tokens to the target (point 3)
STOPPING = "random+asha"
WORKERS = (8, 32)
SEEDS, TRIALS = 50, 100
TOLERANCE = 0.02
# Regret is compared at these budgets, in full trials' tokens (x max_tokens): from one trial to the whole search.
BUDGET_TRIALS = (1, 2, 4, 8, 16, 32, 64, 100)
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class _Paused:
    """A promotion-ASHA trial: its configuration and the next evaluation it runs (an index into the evaluation
    token counts)."""

    index: int
    config: dict[str, Any]
    evaluation: int = 0


@dataclass
class _Rungs:
    """Per rung: (metric with the sign that makes lower better, trial index) recorded, and those promoted."""

    recorded: list[list[tuple[float, int]]]
    promoted: list[set[int]] = field(default_factory=list)

    def promotable(self, factor: float) -> tuple[int, int] | None:
        """(rung, trial) to promote: the highest rung whose top 1/factor holds a trial not promoted yet."""
        for rung in reversed(range(len(self.recorded))):
            top = sorted(self.recorded[rung])[: int(len(self.recorded[rung]) / factor)]
            waiting = [index for _, index in top if index not in self.promoted[rung]]
            if waiting:
                return rung, waiting[0]
        return None


def _never_run(config: dict[str, Any]) -> None:
    """The trainable named in the replayed Experiment; proposals are all it is used for."""
    raise RuntimeError("a replayed search never runs its trainable")


def promotion_search(spec: Any, lookup: Any, workers: int, seed: int, trials: int, overhead: Any = None) -> Any:
    """Promotion-type ASHA with the spec's seeded random proposals, replayed as tune_jobs.replay.simulator does.

    ``spec``: a ``random`` + ``asha`` strategy spec (tune_jobs.replay.strategies.strategy_spec); its proposals are
    drawn from the same BasicVariantGenerator with the same seed as the simulator's, so seed k proposes the same
    configurations in the same order. A trial reports at every evaluation (as recorded in ``lookup``), pauses at
    each rung, and when promoted resumes from its checkpoint there; a resume costs ``overhead.trial_start_s``
    like any trial start, a slot's first trial ``overhead.slot_start_s`` more. A non-finite metric ends the
    trial. Returns a ``SimulatedSearch`` whose ``progress`` has the simulator's layout (clock_s, tokens,
    device_s, best), for tune_jobs.replay.compare's statistics, and whose ``trials`` has a row per started trial
    in proposal order: ``config/<name>`` and ``tokens`` (trained when the search ended).
    """
    from ray.tune.experiment import Experiment

    from tune_jobs.replay.simulator import Overhead, SimulatedSearch, evaluation_tokens
    from tune_jobs.results.table import CONFIG_PREFIX
    from tune_jobs.search import build_search_alg, rung_milestones
    from tune_jobs.space import to_param_space

    overhead = overhead or Overhead()
    started_at = time.perf_counter()
    points = evaluation_tokens(spec)
    milestones = [m for m in rung_milestones(spec) if m < points[-1]]
    # The rung a trial waits at: the index of the first evaluation at or past each milestone, as ASHA records it.
    pause_at = {next(k for k, tokens in enumerate(points) if tokens >= m): rung for rung, m in enumerate(milestones)}
    search_alg = build_search_alg(spec, [], max_concurrent=trials)
    param_space = to_param_space(spec.space)
    search_alg.set_search_properties(None, None, param_space)
    with tempfile.TemporaryDirectory(prefix="textune-promotion-") as storage:
        search_alg.add_configurations(
            [Experiment("promotion", _never_run, config=param_space, num_samples=trials, storage_path=storage)]
        )
        proposed = [search_alg.next_trial() for _ in range(trials)]
    configs = [{name: trial.config[name] for name in spec.space} for trial in proposed if trial is not None]
    sign = 1.0 if spec.mode == "min" else -1.0
    devices = spec.resources.gpu if spec.resources.gpu > 0 else spec.resources.cpu
    rungs = _Rungs([[] for _ in milestones], [set() for _ in milestones])
    started: list[_Paused] = []
    free, warm, queue = list(range(workers)), set(), []
    clock = device_s = 0.0
    tokens_total, best, sequence = 0, math.inf, 0
    progress: list[tuple[float, int, float, float]] = []

    def run_next(trial: _Paused, worker: int, at: float) -> None:
        nonlocal sequence
        step = lookup.evaluation(trial.config, points[trial.evaluation], seed)
        heapq.heappush(queue, (at + step.wall_s, sequence, trial, worker, step))
        sequence += 1

    while True:
        while free:
            job = rungs.promotable(spec.scheduler.reduction_factor)
            if job is not None:
                rung, index = job
                rungs.promoted[rung].add(index)
                trial = started[index]
            elif len(started) < len(configs):
                trial = _Paused(len(started), configs[len(started)])
                started.append(trial)
            else:
                break
            worker = heapq.heappop(free)
            start_cost = overhead.trial_start_s + (0.0 if worker in warm else overhead.slot_start_s)
            warm.add(worker)
            device_s += start_cost * devices
            run_next(trial, worker, clock + start_cost)
        if not queue:
            break
        clock, _, trial, worker, step = heapq.heappop(queue)
        tokens_total += points[trial.evaluation] - (points[trial.evaluation - 1] if trial.evaluation else 0)
        device_s += step.wall_s * devices
        finite = math.isfinite(step.metric)
        if finite:
            best = min(best, sign * step.metric)
        progress.append((clock, tokens_total, device_s, sign * best))
        rung = pause_at.get(trial.evaluation)
        trial.evaluation += 1
        if not finite or trial.evaluation == len(points):
            heapq.heappush(free, worker)  # diverged or completed
        elif rung is not None:
            rungs.recorded[rung].append((sign * step.metric, trial.index))
            heapq.heappush(free, worker)  # paused until promoted
        else:
            run_next(trial, worker, clock)
    frame = pd.DataFrame(progress, columns=["clock_s", "tokens", "device_s", "best"])
    trials_frame = pd.DataFrame(
        [
            {
                **{CONFIG_PREFIX + name: value for name, value in trial.config.items()},
                "tokens": points[trial.evaluation - 1] if trial.evaluation else 0,
            }
            for trial in started
        ]
    )
    return SimulatedSearch(trials_frame, pd.DataFrame(), frame, [], clock, 0.0, time.perf_counter() - started_at)


def tokens_to_target(records: list[dict[str, Any]]) -> np.ndarray:
    """Per seed, tokens until within TOLERANCE of the target; inf where the seed never got there."""
    key = f"tokens_to_{TOLERANCE:g}"
    return np.array([math.inf if r[key] is None else float(r[key]) for r in records])


def paired_ci(statistic: Callable[..., float], *samples: np.ndarray) -> tuple[float, float]:
    """Percentile-bootstrap 95% CI of ``statistic(*samples)``, resampling seeds jointly (the samples are paired).

    tune_jobs.replay.compare.iqm_ci resamples one sample and drops non-finite values; a ratio of two paired
    strategies, and costs censored at inf, need the seeds resampled together and kept. Quantiles are taken
    without interpolation, so an infinite statistic stays a bound rather than becoming NaN.
    """
    rng = np.random.default_rng(0)
    size = len(samples[0])
    values = np.array(
        [statistic(*(s[picks] for s in samples)) for picks in rng.integers(0, size, (BOOTSTRAP_RESAMPLES, size))]
    )
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    low, high = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


def ratio(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """IQM of the baseline's tokens over the candidate's: how many times fewer the candidate needs."""
    from tune_jobs.replay.compare import iqm

    a, b = iqm(baseline), iqm(candidate)
    return math.nan if math.isinf(a) and math.isinf(b) else (math.inf if math.isinf(a) else a / b)


def cost_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    from tune_jobs.replay.compare import iqm

    tokens = tokens_to_target(records)
    low, high = paired_ci(iqm, tokens)
    share_low, share_high = paired_ci(lambda t: float(np.isfinite(t).mean()), tokens)
    return {
        "iqm": iqm(tokens),
        "low": low,
        "high": high,
        "reached_share": float(np.isfinite(tokens).mean()),
        "reached_low": share_low,
        "reached_high": share_high,
        "median": float(np.median(tokens)),
    }


def ratio_summary(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], goal: float) -> dict[str, Any]:
    a, b = tokens_to_target(baseline), tokens_to_target(candidate)
    low, high = paired_ci(ratio, a, b)
    value = ratio(a, b)
    return {"ratio": value, "low": low, "high": high, "goal": goal, "goal_met": bool(value >= goal)}


def regret_at(search: Any, target: float, mode: str, budget: float) -> float:
    """Regret of the best found within ``budget`` tokens; NaN before the search's first result."""
    seen = search.progress[search.progress["tokens"] <= budget]
    if seen.empty:
        return math.nan
    best = float(seen["best"].iloc[-1])
    return best - target if mode == "min" else target - best


def regret_comparison(candidate: Any, baseline: Any, target: float, mode: str, max_tokens: int) -> list[dict]:
    """Per budget: IQM regret of both (tune_jobs.replay.compare.iqm_ci) and their paired difference's IQM and CI
    (candidate minus baseline: positive when the candidate is worse)."""
    from tune_jobs.replay.compare import iqm, iqm_ci

    rows = []
    for full_trials in BUDGET_TRIALS:
        budget = full_trials * max_tokens
        mine = np.array([regret_at(s, target, mode, budget) for s in candidate.searches])
        theirs = np.array([regret_at(s, target, mode, budget) for s in baseline.searches])
        both = ~np.isnan(mine) & ~np.isnan(theirs)
        difference = mine[both] - theirs[both]
        low, high = paired_ci(iqm, difference) if both.sum() >= 2 else (math.nan, math.nan)
        rows.append(
            {
                "budget_trials": full_trials,
                "budget_tokens": budget,
                "paired_seeds": int(both.sum()),
                "candidate": iqm_ci(mine[~np.isnan(mine)].tolist()),
                "baseline": iqm_ci(theirs[~np.isnan(theirs)].tolist()),
                "difference": {"iqm": iqm(difference) if len(difference) else math.nan, "low": low, "high": high},
                "worse_beyond_ci": bool(low > 0),
            }
        )
    return rows


def bench_table(table: Any, seeds: int, trials: int, workers: tuple[int, ...], jobs: int) -> list[dict[str, Any]]:
    from tune_jobs.replay.compare import StrategyRuns, search_record
    from tune_jobs.replay.lookup import CurveLookup
    from tune_jobs.replay.strategies import parse_strategies, strategy_spec

    spec = table.spec
    names = [CANDIDATE, *GOALS]
    strategies = parse_strategies(names, spec, [spec.budget.eval_every_tokens], [REPLAY_REDUCTION_FACTOR])
    lookup = CurveLookup(table, "nearest")
    target = table.best_value()
    results = []
    for count, (runs, seconds) in run_grid(table, lookup, strategies, seeds, trials, workers, target, jobs).items():
        by_name = {f"{r.strategy.algorithm}+{r.strategy.scheduler}": r for r in runs}
        stopping = by_name[STOPPING]
        promotion = [
            promotion_search(strategy_spec(table, stopping.strategy, seed, trials), lookup, count, seed, trials)
            for seed in range(seeds)
        ]
        promoted = StrategyRuns(stopping.strategy, [search_record(s, target, table.mode) for s in promotion], promotion)
        results.append(
            {
                "workers": count,
                "target": target,
                "seeds": seeds,
                "trials": trials,
                "extrapolated_share": {
                    name: float(np.mean([r["extrapolated_share"] for r in runs_.records]))
                    for name, runs_ in by_name.items()
                },
                "tokens_to_2pct": {name: cost_summary(r.records) for name, r in by_name.items()},
                "ratios": {
                    name: ratio_summary(by_name[name].records, by_name[CANDIDATE].records, goal)
                    for name, goal in GOALS.items()
                },
                "regret": regret_comparison(
                    by_name[CANDIDATE], by_name[BASELINE], target, table.mode, spec.budget.max_tokens
                ),
                "promotion": {
                    "promotion": cost_summary(promoted.records),
                    "stopping": cost_summary(stopping.records),
                    "regret": regret_comparison(promoted, stopping, target, table.mode, spec.budget.max_tokens),
                    "stopping_over_promotion": ratio_summary(stopping.records, promoted.records, PROMOTION_GOAL),
                    "tokens_per_search": {
                        "promotion": float(np.median([r["tokens"] for r in promoted.records])),
                        "stopping": float(np.median([r["tokens"] for r in stopping.records])),
                    },
                },
                "simulator_seconds": seconds,
            }
        )
    return results


def rank_agreement_of(table: Any) -> list[dict[str, Any]]:
    """Kendall τ at the replayed ASHA rungs (un-annealed: tables keep the cosine schedule's val_bpc only)."""
    return rank_agreement(table.curves, replay_rungs(table), table.metric, table.metric)


def _tokens(value: float) -> str:
    return "never" if math.isinf(value) else f"{value / 1e6:.2f}M"


def _share(cost: dict[str, Any]) -> str:
    return f"{100 * cost['reached_share']:.0f}% [{100 * cost['reached_low']:.0f}, {100 * cost['reached_high']:.0f}]"


def _ratio(r: dict[str, Any]) -> str:
    if math.isnan(r["ratio"]):
        return "undefined (both IQMs never)"
    return f"{r['ratio']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]"


def _regret_lines(title: str, rows_per_workers: list[tuple[int, list[dict[str, Any]]]]) -> list[str]:
    lines = [
        "",
        f"Regret IQM at budgets (in full trials' tokens), {title}: paired difference [95% CI]",
        "",
        "| workers | budget | first | second | difference [CI] | first worse beyond CI |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for workers, rows in rows_per_workers:
        for row in rows:
            d = row["difference"]
            lines.append(
                f"| {workers} | {row['budget_trials']} | {row['candidate']['iqm']:.4f} | "
                f"{row['baseline']['iqm']:.4f} | {d['iqm']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] | "
                f"{'yes' if row['worse_beyond_ci'] else 'no'} |"
            )
    return lines


def markdown(label: str, results: list[dict[str, Any]], taus: list[dict[str, Any]]) -> str:
    lines = [
        f"### {label}",
        "",
        f"| workers | strategy | tokens to 2% IQM [95% CI] | reached | {CANDIDATE} ratio [CI] (goal) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for name, cost in result["tokens_to_2pct"].items():
            r = result["ratios"].get(name)
            cell = _ratio(r) + f" (>= {r['goal']:g}x: {'met' if r['goal_met'] else 'not met'})" if r else "candidate"
            lines.append(
                f"| {result['workers']} | {name} | {_tokens(cost['iqm'])} [{_tokens(cost['low'])}, "
                f"{_tokens(cost['high'])}] | {_share(cost)} | {cell} |"
            )
    lines += _regret_lines(f"{CANDIDATE} vs {BASELINE}", [(r["workers"], r["regret"]) for r in results])
    lines += _regret_lines(
        "promotion vs stopping ASHA (random proposals)", [(r["workers"], r["promotion"]["regret"]) for r in results]
    )
    lines += [
        "",
        "Promotion vs stopping ASHA (random proposals): tokens to 2% IQM [CI], stopping/promotion ratio",
        "",
        "| workers | stopping | promotion | ratio [CI] | median tokens per search (stop / promo) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        p = result["promotion"]
        r = p["stopping_over_promotion"]
        lines.append(
            f"| {result['workers']} | {_tokens(p['stopping']['iqm'])} [{_tokens(p['stopping']['low'])}, "
            f"{_tokens(p['stopping']['high'])}] ({_share(p['stopping'])}) | "
            f"{_tokens(p['promotion']['iqm'])} [{_tokens(p['promotion']['low'])}, "
            f"{_tokens(p['promotion']['high'])}] ({_share(p['promotion'])}) | {_ratio(r)} | "
            f"{_tokens(p['tokens_per_search']['stopping'])} / "
            f"{_tokens(p['tokens_per_search']['promotion'])} |"
        )
    lines += [
        "",
        "Rank agreement (Kendall τ, rung vs final, un-annealed): "
        + ", ".join(f"{row['rung']:,.0f} tokens: {row['tau']:.2f} (n={row['curves']})" for row in taus),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--table", type=Path, action="append", default=[], help="A table directory (repeatable).")
    source.add_argument("--smoke", action="store_true", help="bench_search_sim's synthetic table, 4 seeds, 8 workers.")
    parser.add_argument("--out", type=Path, default=None, help="Where the JSON goes (default: benchmarks/results).")
    add_jobs_option(parser)
    args = parser.parse_args()
    workers: tuple[int, ...]
    if args.smoke:
        tables = [("synthetic-smoke", synthetic_table())]
        seeds, trials, workers = 4, 24, (8,)
    else:
        directories = args.table or sorted(p.parent for p in TABLES.glob("*/manifest.json"))
        if not directories:
            parser.error("no tables: record one with benchmarks/record_table.py, or give --table DIR")
        tables = read_tables(parser, directories)
        seeds, trials, workers = SEEDS, TRIALS, WORKERS
    out = output_directory(parser, args.out or RESULTS)
    print(f"bench_default_search on {machine_description()}, {load_note()}", flush=True)
    for label, table in tables:
        started = time.perf_counter()
        results = bench_table(table, seeds, trials, workers, args.jobs)
        taus = rank_agreement_of(table)
        elapsed = time.perf_counter() - started
        path = out / f"default_search_{label}.json"
        path.write_text(
            json.dumps(
                {
                    "table": label,
                    "manifest": table.manifest,
                    "seconds": elapsed,
                    "results": results,
                    "rank_agreement": taus,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(markdown(label, results, taus))
        print(f"\n{label}: {elapsed:.0f} s; written {path}", flush=True)


if __name__ == "__main__":
    main()
