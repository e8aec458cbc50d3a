"""Fidelity of the replay to real two-worker searches whose evaluations take seconds.

For each strategy (hyperopt+asha, random+asha, grid+fifo), ``--runs`` real searches of one spec and one seed
run through ``textune run`` (the synthetic corpus and quickstart.yaml's model and space, 16 trials, 2 trials at a
time, 8 evaluations of ``--eval-tokens`` tokens: about 2 s each on one core; ASHA with a grace period of one
evaluation and reduction factor 2). Each real search is then replayed with 2 simulated workers on its own recorded
curves with its own seed (:func:`tune_jobs.replay.simulator.simulate`), and compared (:func:`compare_searches`):

- **decisions**: a decision is a trial's continue or stop at an ASHA rung, keyed by its configuration and the
  rung; a configuration only one of the two searches ran counts as a disagreement for each of its decisions;
- **proposals**: the configurations both searches ran;
- **real against real**: the runs of one strategy compared pairwise the same way, which says how much real
  searches of one spec and seed disagree with each other.

Every disagreement gets a cause (:func:`explain`):

- ``arrival order``: the results the rung had seen before this trial's differ (in the real search in the order
  the trials sent them, ``reported_at``; in the replay in simulated time), or another trial's real result came
  within ``NEAR_TIE_S`` of this one, too close to know which the scheduler saw first; the real gap is given;
- ``lower rung``: the same trial was decided differently at a lower rung;
- ``learned``: an adaptive searcher proposed a configuration the other search never ran, and when each first did
  so it had seen other trials end (it had learned from other results);
- ``unexplained``: none of these.

    .venv/bin/python -m benchmarks.bench_replay_fidelity [--runs 3] [--eval-tokens 160000]

Finished real searches are kept under ``benchmarks/results/fidelity-runs/`` and not run again (delete it to
measure anew). JSON in ``benchmarks/results/replay_fidelity_EVAL-TOKENS.json``; a Markdown summary on stdout.
Run it in a loopback-only network namespace (as ``make bench`` does), with nothing else loading the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmarks.machine import RESULTS, load_note, machine_description
from models.status import TrialStatus

ROOT = Path(__file__).resolve().parents[1]
RUNS = RESULTS / "fidelity-runs"
WORKERS = 2
EVALUATIONS = 8
ADAPTIVE = ("hyperopt", "bohb")
# Results two trials sent this close together (``reported_at``, each from its own process) may reach the driver,
# and so the scheduler, in either order: a real order within it is not known.
NEAR_TIE_S = 0.05
# Evaluations of about 12 s on one core: 16-trial searches of 8 such evaluations take 10 minutes and more.
MAX_EVAL_TOKENS = 1_000_000
# Each strategy's changes to quickstart.yaml (whose space is lr, n_heads, head_dim, batch_size).
STRATEGIES: dict[str, dict[str, Any]] = {
    "hyperopt+asha": {"search": {"algorithm": "hyperopt", "n_initial_points": 5}, "scheduler": {"kind": "asha"}},
    "random+asha": {"search": {"algorithm": "random"}, "scheduler": {"kind": "asha"}},
    # A 4-point grid, each point to its budget: proposals and order only, no stop decisions.
    "grid+fifo": {
        "search": {"algorithm": "grid"},
        "scheduler": {"kind": "fifo"},
        "num_samples": 1,
        "space": {
            "lr": {"grid": [4.0e-3, 1.6e-2]},
            "n_heads": {"grid": [2]},
            "head_dim": {"grid": [32]},
            "batch_size": {"grid": [8, 16]},
        },
    },
}

Key = tuple[Any, ...]


def job_spec(strategy: str, eval_tokens: int) -> dict[str, Any]:
    """quickstart.yaml with 8 evaluations of ``eval_tokens``, 16 trials on 2 workers, no time budget."""
    spec = yaml.safe_load((ROOT / "tune_jobs" / "configs" / "quickstart.yaml").read_text())
    spec["budget"] = {"max_tokens": EVALUATIONS * eval_tokens, "eval_every_tokens": eval_tokens}
    spec["scheduler"] = {"grace_period_tokens": eval_tokens, "reduction_factor": 2}
    spec.update(num_samples=16, max_concurrent_trials=WORKERS, keep_checkpoints=1)
    changes = STRATEGIES[strategy]
    spec["search"] = {**spec["search"], **changes["search"]}
    spec["scheduler"].update(changes["scheduler"])
    spec.update({key: changes[key] for key in ("num_samples", "space") if key in changes})
    return spec


def real_search(strategy: str, run: int, eval_tokens: int) -> Path:
    """A finished real search, through ``textune run JOB --resume``: started, continued after an interruption, or
    found finished by an earlier run of this benchmark (then nothing runs)."""
    storage = RUNS / f"{eval_tokens}-tokens"
    name = f"{strategy.replace('+', '-')}-run{run}"
    experiment = storage / name
    storage.mkdir(parents=True, exist_ok=True)
    # Kept beside the experiment: a resume checks the spec against it.
    job = storage / f"{name}.yaml"
    job.write_text(yaml.safe_dump({**job_spec(strategy, eval_tokens), "storage": str(storage), "name": name}))
    command = [sys.executable, "-m", "tune_jobs.cli.main", "run", str(job), "--resume"]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, env=dict(os.environ))
    if done.returncode != 0:
        raise SystemExit(
            f"the real search {experiment} failed: textune run exited {done.returncode} (its message is above). "
            f"Rerun this command to continue it, or delete {experiment} to start it again."
        )
    if (pd.read_parquet(experiment / "results.parquet")["status"] == TrialStatus.UNFINISHED).any():
        raise SystemExit(f"the real search {experiment} was interrupted; rerun this command to continue it.")
    return experiment


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, before any search runs, what would fail or run for hours: each strategy's job is checked as
    ``textune run`` checks it (an evaluation interval below one batch is refused there)."""
    from textune.config import validate
    from textune.errors import TextuneError
    from tune_jobs.spec import JobSpec, check_budget_holds_a_batch

    if args.runs < 1:
        parser.error("--runs must be at least 1 (2 or more also compare the real runs with each other)")
    if args.eval_tokens > MAX_EVAL_TOKENS:
        parser.error(
            f"--eval-tokens {args.eval_tokens:,} is above {MAX_EVAL_TOKENS:,} (evaluations of about 12 s on one "
            "core): the searches would take hours. The default, 160,000, gives evaluations of about 2 s."
        )
    for strategy in args.strategies:
        where = f"--eval-tokens {args.eval_tokens} ({strategy})"
        try:
            spec = validate(JobSpec, {**job_spec(strategy, args.eval_tokens), "name": "fidelity"}, where)
            check_budget_holds_a_batch(spec, where)
        except TextuneError as exc:
            parser.error(exc.paragraph())


def _key(row: pd.Series, columns: list[str]) -> Key:
    return tuple(round(v, 10) if isinstance(v, float) else v for v in row[columns])


class Search:
    """One search's decisions, rung arrivals, trial starts and ends, keyed by configuration.

    ``trials``: results.parquet's layout; ``evaluations``: evaluations.parquet's, with ``order`` (real:
    ``reported_at``; replay: simulated ``clock_s``) saying when the scheduler saw each result, in seconds. A
    trial started at its first result's time less its ``time_total_s`` (the searcher proposed it then) and ended
    at its last result (HyperOpt learns from it then).
    """

    def __init__(self, trials: pd.DataFrame, evaluations: pd.DataFrame, order: str, rungs: list[float]) -> None:
        columns = sorted(c for c in trials.columns if c.startswith("config/"))
        self.keys = {row["trial_id"]: _key(row, columns) for _, row in trials.iterrows()}
        self.proposed = set(self.keys.values())
        self.rungs = rungs
        self.decisions: dict[tuple[Key, float], str] = {}
        for _, row in trials.iterrows():
            for rung in rungs:
                if row["tokens"] > rung:
                    self.decisions[self.keys[row["trial_id"]], rung] = "continue"
                elif row["tokens"] == rung and row["status"] == "early_stopped":
                    self.decisions[self.keys[row["trial_id"]], rung] = "stop"
        # Per rung, (time, configuration) of each trial's result there, in the order the scheduler saw them.
        self.arrivals: dict[float, list[tuple[float, Key]]] = {
            rung: sorted(
                (float(row[order]), self.keys[row["trial_id"]])
                for _, row in evaluations[evaluations["tokens"] == rung].iterrows()
            )
            for rung in rungs
        }
        by_trial = evaluations[evaluations["trial_id"].isin(self.keys)].sort_values(order).groupby("trial_id")
        first, last = by_trial.first(), by_trial.last()
        self.starts = sorted(
            (float(row[order] - row["time_total_s"]), self.keys[trial_id]) for trial_id, row in first.iterrows()
        )
        self.ends = {self.keys[trial_id]: float(row[order]) for trial_id, row in last.iterrows()}

    def ended_before(self, at: float) -> set[Key]:
        return {key for key, ended in self.ends.items() if ended < at}

    def seen_before(self, key: Key, rung: float) -> set[Key] | None:
        """The configurations whose result reached ``rung`` before ``key``'s did (None: it never got there)."""
        keys = [k for _, k in self.arrivals[rung]]
        return set(keys[: keys.index(key)]) if key in keys else None


def _arrived_otherwise(key: Key, rung: float, a: Search, b: Search) -> set[Key]:
    """The configurations one search's rung had seen before ``key``'s result and the other's had not."""
    before_a, before_b = a.seen_before(key, rung), b.seen_before(key, rung)
    return before_a ^ before_b if before_a is not None and before_b is not None else set()


def _learned_otherwise(a: Search, b: Search) -> bool:
    """Whether each search had seen other trials end when it first proposed a configuration the other never ran."""
    first_a = next((t for t, key in a.starts if key not in b.proposed), None)
    first_b = next((t for t, key in b.starts if key not in a.proposed), None)
    if first_a is None or first_b is None:
        return False
    return a.ended_before(first_a) != b.ended_before(first_b)


def explain(key: Key, rung: float, a: Search, b: Search, adaptive: bool, disagreed: set[tuple[Key, float]]) -> dict:
    """The cause of a disagreement on (configuration, rung) between searches ``a`` (real) and ``b``."""
    if key not in a.proposed or key not in b.proposed:
        # Only an adaptive searcher's proposals depend on results: explained when, at the first proposal where
        # the two searches differ, each had seen other trials end (so its model had learned from other results).
        return {"cause": "learned" if adaptive and _learned_otherwise(a, b) else "unexplained"}
    others = _arrived_otherwise(key, rung, a, b)
    if others:
        times = {k: t for t, k in a.arrivals[rung]}
        gaps = [abs(times[k] - times[key]) for k in others if k in times and key in times]
        return {"cause": "arrival order", "real_gap_s": round(min(gaps), 3) if gaps else None}
    times = {k: t for t, k in a.arrivals[rung]}
    near = [abs(t - times[key]) for k, t in times.items() if key in times and k != key]
    if near and min(near) < NEAR_TIE_S:
        return {"cause": "arrival order", "real_gap_s": round(min(near), 3), "near_tie": True}
    if any(r < rung and (key, r) in disagreed for r in a.rungs):
        return {"cause": "lower rung"}
    return {"cause": "unexplained"}


def compare_searches(a: Search, b: Search, adaptive: bool) -> dict[str, Any]:
    """Decision and proposal agreement of two searches of one spec, every disagreement with its cause."""
    union = set(a.decisions) | set(b.decisions)
    disagreed = {item for item in union if a.decisions.get(item) != b.decisions.get(item)}
    return {
        "decisions": len(union),
        "agree": len(union) - len(disagreed),
        "share": (len(union) - len(disagreed)) / len(union) if union else 1.0,
        "proposals": len(a.keys),
        "same_proposals": len(a.proposed & b.proposed),
        "disagreements": [
            {
                "config": list(key),
                "rung": rung,
                "real": a.decisions.get((key, rung)),
                "other": b.decisions.get((key, rung)),
                **explain(key, rung, a, b, adaptive, disagreed),
            }
            for key, rung in sorted(disagreed, key=lambda item: (item[1], str(item[0])))
        ],
    }


def real_and_replay(experiment_dir: Path) -> tuple[Search, Search, str, float]:
    """The real search in ``experiment_dir``, its replay on its own curves, its algorithm, and the share of replayed
    evaluations the real search never made (a trial the replay kept past a rung where the real search stopped it)."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.replay.lookup import CurveLookup
    from tune_jobs.replay.simulator import simulate
    from tune_jobs.replay.table import table_from_experiment

    table = table_from_experiment(open_experiment(experiment_dir))
    spec = table.spec
    rungs = [r for r in spec.rung_milestones if r < spec.budget.max_tokens]
    real = Search(
        pd.read_parquet(experiment_dir / "results.parquet"),
        pd.read_parquet(experiment_dir / "evaluations.parquet"),
        "reported_at",
        rungs,
    )
    replayed = simulate(spec, CurveLookup(table), workers=WORKERS, seed=spec.seed)
    replay = Search(replayed.trials, replayed.evaluations, "clock_s", rungs)
    return real, replay, spec.search.algorithm, replayed.extrapolated_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="real searches per strategy (same spec and seed)")
    parser.add_argument("--eval-tokens", type=int, default=160_000, help="tokens per evaluation interval")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    args = parser.parse_args()
    check_arguments(parser, args)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = f"{machine_description()}, {load_note()}"
    try:
        summary = {strategy: measure(strategy, args.runs, args.eval_tokens) for strategy in args.strategies}
    except KeyboardInterrupt:
        print("interrupted: rerun the same command; finished searches are kept, an interrupted one continues")
        raise SystemExit(130) from None
    result = {"runs": args.runs, "eval_tokens": args.eval_tokens, "workers": WORKERS, "machine": machine}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"replay_fidelity_{args.eval_tokens}.json"
    path.write_text(json.dumps({**result, "strategies": summary}, indent=2, default=str) + "\n")
    print(f"replay fidelity, {WORKERS} workers, {args.runs} real runs per strategy; {machine}\n")
    print("| strategy | evaluation s (median) | replay vs real: decisions agreeing | same proposals | real vs real |")
    print("|---|---|---|---|---|")
    for strategy, row in summary.items():
        print(
            f"| {strategy} | {row['median_evaluation_s']:.3f} | {_agreement(row['replay_vs_real'])}, extrapolated "
            f"{row['replay_vs_real']['extrapolated_share']:.0%} | {row['replay_vs_real']['same_proposals']}/"
            f"{row['replay_vs_real']['proposals']} | "
            + (_agreement(row["real_vs_real"]) if args.runs > 1 else "n/a (one run)")
            + " |"
        )
    print(f"\nevery disagreement with its cause: {path}")


def measure(strategy: str, runs: int, eval_tokens: int) -> dict[str, Any]:
    """One strategy's real searches, their replays, and their agreement (replay vs real, real vs real)."""
    experiments = [real_search(strategy, run, eval_tokens) for run in range(runs)]
    searches = [real_and_replay(experiment) for experiment in experiments]
    adaptive = searches[0][2] in ADAPTIVE
    replays = [
        {**compare_searches(real, replay, adaptive), "extrapolated_share": extrapolated}
        for real, replay, _, extrapolated in searches
    ]
    pairs = [compare_searches(a[0], b[0], adaptive) for a, b in itertools.combinations(searches, 2)]
    evaluations = pd.concat(pd.read_parquet(experiment / "evaluations.parquet") for experiment in experiments)
    return {
        "replay_vs_real": _total(replays),
        "real_vs_real": _total(pairs),
        # The first evaluation of a trial also holds its start (model build, first batches): left out.
        "median_evaluation_s": float(evaluations.groupby("trial_id")["time_total_s"].diff().median()),
        "runs": replays,
        "real_pairs": pairs,
    }


def _agreement(total: dict[str, Any]) -> str:
    causes = ", ".join(f"{n} {cause}" for cause, n in sorted(total["causes"].items()))
    return f"{total['agree']}/{total['decisions']} ({total['share']:.0%})" + (f" [{causes}]" if causes else "")


def _total(comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    decisions = sum(c["decisions"] for c in comparisons)
    agree = sum(c["agree"] for c in comparisons)
    causes: dict[str, int] = {}
    for comparison in comparisons:
        for item in comparison["disagreements"]:
            causes[item["cause"]] = causes.get(item["cause"], 0) + 1
    return {
        "decisions": decisions,
        "agree": agree,
        "share": agree / decisions if decisions else 1.0,
        "proposals": sum(c["proposals"] for c in comparisons),
        "same_proposals": sum(c["same_proposals"] for c in comparisons),
        "causes": causes,
        "extrapolated_share": max((c.get("extrapolated_share", 0.0) for c in comparisons), default=0.0),
    }


if __name__ == "__main__":
    main()
