"""Search efficiency on real searches: best val_bpc against total training tokens, per strategy.

Five strategies, each run with the same seeds (the seed fixes the searcher's proposals and every trial's
training, so seed k of one strategy is paired with seed k of the others), the same trial count, the same
per-trial budget and the same space:

- ``hyperopt+asha`` (textune's default, with the spec's default ``n_initial_points``), ``bohb+asha``, ``random+asha``,
  ``random+fifo``: lr, head_dim, batch_size sampled;
- ``grid+fifo``: (trials / 4) learning rates x 2 head_dims x 2 batch sizes over the same ranges, so the grid
  has as many trials as the others.

For every search the evaluations are put in the order they happened and the training tokens summed, giving
the best val_bpc seen after N tokens. Reported per strategy, averaged over seeds: the final best val_bpc,
the total tokens spent, and the tokens needed to get within 2% of the best value any strategy reached on
that seed. One plot (best val_bpc vs tokens, one line per strategy and seed) goes to
docs/search-efficiency.png.

    .venv/bin/python -m benchmarks.bench_search [--seeds 0 1 2 3 4 --trials 16 --max-tokens 100000]
        [--strategies hyperopt+asha bohb+asha ...] [--corpus synthetic|shakespeare]

``--corpus shakespeare`` searches char-level tinyshakespeare (``../shared/data/tinyshakespeare.txt``) instead of
the synthetic corpus, whose entropy floor the plot (docs/search-efficiency.png, synthetic only) shows.

Each finished search keeps its evaluations in ``benchmarks/results/search-runs/`` and is not run again: an
interrupted benchmark continues where it stopped (delete that folder to measure everything anew).

Run it in a loopback-only network namespace (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.machine import RESULTS, load_note, machine_description

PLOT = Path(__file__).resolve().parents[1] / "docs" / "search-efficiency.png"
RUNS = RESULTS / "search-runs"
WITHIN = 0.02
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
CORPORA = {
    "synthetic": {"source": "synthetic", "synthetic": {"characters": 300_000, "words": 30, "branching": 4}},
    "shakespeare": {"source": str(SHAKESPEARE), "tokenizer": {"kind": "char"}},
}
MODEL = {"n_layers": 2, "n_heads": 2, "block_size": 64, "eval_max_blocks": 8, "sample_tokens": 0, "warmup_tokens": 2048}
LR_RANGE = (2e-3, 3e-2)
SAMPLED = {"lr": {"loguniform": list(LR_RANGE)}, "head_dim": {"choice": [8, 32]}, "batch_size": {"choice": [8, 16]}}
STRATEGIES = {
    "hyperopt+asha": ("hyperopt", "asha"),
    "bohb+asha": ("bohb", "asha"),
    "random+asha": ("random", "asha"),
    "random+fifo": ("random", "fifo"),
    "grid+fifo": ("grid", "fifo"),
}


def grid_space(trials: int) -> dict[str, Any]:
    """A grid of ``trials`` points: learning rates at the centres of equal log-width bins of LR_RANGE."""
    count = max(1, trials // 4)
    low, high = np.log(LR_RANGE)
    lrs = np.exp(low + (np.arange(count) + 0.5) / count * (high - low))
    return {
        "lr": {"grid": [float(f"{lr:.3g}") for lr in lrs]},
        "head_dim": {"grid": [8, 32]},
        "batch_size": {"grid": [8, 16]},
    }


def best_curve(evaluations: pd.DataFrame, metric: str = "val_bpc") -> pd.DataFrame:
    """(cumulative training tokens, best metric so far) in the order the evaluations happened."""
    ordered = evaluations.sort_values("timestamp", kind="stable")
    spent = ordered.groupby("trial_id")["tokens"].diff().fillna(ordered["tokens"])
    return pd.DataFrame({"tokens": spent.cumsum().to_numpy(), "best": ordered[metric].cummin().to_numpy()})


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    reached = curve[curve["best"] <= target]
    return float(reached["tokens"].iloc[0]) if not reached.empty else math.inf


def search_evaluations(strategy: str, seed: int, trials: int, max_tokens: int, corpus: str) -> pd.DataFrame:
    """The evaluations of one search: kept from an earlier run of this benchmark, else run now and kept."""
    storage = RUNS / f"{trials}-trials-{max_tokens}-tokens" / ("" if corpus == "synthetic" else corpus)
    name = f"{strategy.replace('+', '-')}-seed{seed}"
    kept = storage / f"{name}.evaluations.parquet"
    if kept.is_file():
        return pd.read_parquet(kept)
    shutil.rmtree(storage / name, ignore_errors=True)  # a search interrupted before it finished starts over
    evaluations = run_search(strategy, seed, trials, max_tokens, name, str(storage), corpus)
    evaluations.to_parquet(kept)
    shutil.rmtree(storage / name)  # its checkpoints are not needed once the evaluations are kept
    return evaluations


def run_search(
    strategy: str, seed: int, trials: int, max_tokens: int, name: str, storage: str, corpus: str
) -> pd.DataFrame:
    from tune_jobs.results.collect import collect
    from tune_jobs.runner import run_job
    from tune_jobs.spec import JobSpec

    algorithm, scheduler = STRATEGIES[strategy]
    space = grid_space(trials) if algorithm == "grid" else SAMPLED
    eval_every = max_tokens // 5
    spec = JobSpec.model_validate(
        {
            "name": name,
            "data": CORPORA[corpus],
            "model": MODEL,
            "space": space,
            "budget": {"max_tokens": max_tokens, "eval_every_tokens": eval_every},
            "search": {"algorithm": algorithm},
            "scheduler": {"kind": scheduler, "grace_period_tokens": eval_every, "reduction_factor": 3},
            "num_samples": 1 if algorithm == "grid" else trials,
            "max_concurrent_trials": 2,
            "seed": seed,
            "storage": storage,
            "keep_checkpoints": 1,
        }
    )
    return collect(run_job(spec), spec).evaluations


def _millions(tokens: float) -> str:
    return f"{tokens / 1e6:.2f}M" if math.isfinite(tokens) else "never"


def plot(curves: dict[tuple[str, int], pd.DataFrame], floor_bpc: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colors = dict(zip(STRATEGIES, ("tab:blue", "tab:purple", "tab:orange", "tab:green", "tab:red"), strict=True))
    for (strategy, seed), curve in curves.items():
        axes.step(
            curve["tokens"] / 1e6,
            curve["best"],
            where="post",
            color=colors[strategy],
            alpha=0.8,
            label=strategy if seed == min(s for _, s in curves) else None,
        )
    axes.axhline(floor_bpc, color="black", linestyle="--", linewidth=1, label="entropy floor")
    axes.set_yscale("log")  # the differences that matter are near the floor, far below the first evaluations
    axes.set_xlabel("total training tokens (millions)")
    axes.set_ylabel("best val_bpc so far (log scale)")
    axes.set_title("Search efficiency on the synthetic corpus (one line per seed)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    # A multiple of 4, so the grid (trials / 4 learning rates x 2 x 2) has as many trials as the others.
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=100_000)
    parser.add_argument("--corpus", choices=list(CORPORA), default="synthetic")
    parser.add_argument(
        "--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES), help="Default: all of them."
    )
    args = parser.parse_args()
    strategies = args.strategies
    if args.corpus == "shakespeare" and not SHAKESPEARE.is_file():
        raise SystemExit(f"tinyshakespeare is not at {SHAKESPEARE}; run --corpus synthetic instead")

    import ray

    from cluster.connection import EMBEDDED, connect

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine = f"{machine_description()}, {load_note()}"
    evaluations: dict[tuple[str, int], pd.DataFrame] = {}
    # A Ray of its own, never another one running on this machine, started as `textune run` starts one.
    with connect(EMBEDDED, num_cpus=2, log_to_driver=False):
        for seed in args.seeds:
            for strategy in strategies:
                evaluations[strategy, seed] = search_evaluations(
                    strategy, seed, args.trials, args.max_tokens, args.corpus
                )
    curves = {key: best_curve(table) for key, table in evaluations.items()}
    first = next(iter(evaluations.values()))
    floor_bpc = float(first["floor_bpc"].iloc[0]) if "floor_bpc" in first else math.nan  # known for synthetic
    summary: dict[str, Any] = {}
    for strategy in strategies:
        rows = []
        for seed in args.seeds:
            best_of_seed = min(curves[s, seed]["best"].iloc[-1] for s in strategies)
            curve = curves[strategy, seed]
            rows.append(
                {
                    "best_val_bpc": float(curve["best"].iloc[-1]),
                    "tokens": float(curve["tokens"].iloc[-1]),
                    "tokens_to_within_2pct": tokens_to_reach(curve, best_of_seed * (1 + WITHIN)),
                }
            )
        frame = pd.DataFrame(rows)
        summary[strategy] = {
            "per_seed": rows,
            "mean_best_val_bpc": frame["best_val_bpc"].mean(),
            "mean_tokens": frame["tokens"].mean(),
            "seeds_within_2pct": int(frame["tokens_to_within_2pct"].map(math.isfinite).sum()),
            "median_tokens_to_within_2pct": frame["tokens_to_within_2pct"].median(),
        }
    if args.corpus == "synthetic":  # the plot shows the gap to the entropy floor, which only this corpus has
        plot(curves, floor_bpc)
    result = {
        "seeds": args.seeds,
        "trials": args.trials,
        "max_tokens": args.max_tokens,
        "corpus": args.corpus,
        "floor_bpc": floor_bpc,
        "strategies": summary,
        "machine": machine,
        "ray": ray.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_search{'' if args.corpus == 'synthetic' else '_' + args.corpus}.json").write_text(
        json.dumps(result, indent=2)
    )
    # The ratio's baseline: random+fifo where it ran, else the first strategy asked for.
    base_name = "random+fifo" if "random+fifo" in summary else strategies[0]
    baseline = summary[base_name]["mean_tokens"]
    for strategy, figures in summary.items():
        print(
            f"| search efficiency, {args.corpus}, {strategy} ({len(args.seeds)} seeds x {args.trials} trials x "
            f"{args.max_tokens // 1000}k tokens) | best val_bpc {figures['mean_best_val_bpc']:.3f}, "
            f"{figures['mean_tokens'] / 1e6:.2f}M tokens, within 2% of the best on {figures['seeds_within_2pct']}"
            f"/{len(args.seeds)} seeds (median tokens to get there: "
            f"{_millions(figures['median_tokens_to_within_2pct'])}) | "
            f"{base_name}: {baseline / 1e6:.2f}M tokens (x{figures['mean_tokens'] / baseline:.2f}) | "
            f"`.venv/bin/python -m benchmarks.bench_search` | {result['machine']} |"
        )


if __name__ == "__main__":
    main()
