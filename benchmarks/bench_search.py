"""Search efficiency on the synthetic corpus: best val_bpc against total training tokens, per strategy.

Four strategies, each run with the same seeds (the seed fixes the searcher's proposals and every trial's
training, so seed k of one strategy is paired with seed k of the others), the same trial count, the same
per-trial budget and the same space:

- ``hyperopt+asha`` (textune's default), ``random+asha``, ``random+fifo``: lr, head_dim, batch_size sampled;
- ``grid+fifo``: 2 x 2 x 2 grid points over the same ranges.

For every search the evaluations are put in the order they happened and the training tokens summed, giving
the best val_bpc seen after N tokens. Reported per strategy, averaged over seeds: the final best val_bpc,
the total tokens spent, and the tokens needed to get within 2% of the best value any strategy reached on
that seed. One plot (best val_bpc vs tokens, one line per strategy and seed) goes to
docs/search-efficiency.png.

    .venv/bin/python -m benchmarks.bench_search [--seeds 0 1 2 --trials 8 --max-tokens 200000]

Run it in a loopback-only network namespace (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "search-efficiency.png"
WITHIN = 0.02
DATA = {"source": "synthetic", "synthetic": {"characters": 300_000, "words": 30, "branching": 4}}
MODEL = {"n_layers": 2, "n_heads": 2, "block_size": 64, "eval_max_blocks": 8, "sample_tokens": 0,
         "warmup_tokens": 2048}
SAMPLED = {"lr": {"loguniform": [2e-3, 3e-2]}, "head_dim": {"choice": [8, 32]}, "batch_size": {"choice": [8, 16]}}
GRID = {"lr": {"grid": [4e-3, 1.5e-2]}, "head_dim": {"grid": [8, 32]}, "batch_size": {"grid": [8, 16]}}
STRATEGIES = {
    "hyperopt+asha": ("hyperopt", "asha", SAMPLED),
    "random+asha": ("random", "asha", SAMPLED),
    "random+fifo": ("random", "fifo", SAMPLED),
    "grid+fifo": ("grid", "fifo", GRID),
}


def best_curve(evaluations: pd.DataFrame, metric: str = "val_bpc") -> pd.DataFrame:
    """(cumulative training tokens, best metric so far) in the order the evaluations happened."""
    ordered = evaluations.sort_values("timestamp", kind="stable")
    spent = ordered.groupby("trial_id")["tokens"].diff().fillna(ordered["tokens"])
    return pd.DataFrame({"tokens": spent.cumsum().to_numpy(), "best": ordered[metric].cummin().to_numpy()})


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float:
    reached = curve[curve["best"] <= target]
    return float(reached["tokens"].iloc[0]) if not reached.empty else math.inf


def run_search(strategy: str, seed: int, trials: int, max_tokens: int, storage: str) -> pd.DataFrame:
    from tune_jobs.results import collect
    from tune_jobs.runner import run_job
    from tune_jobs.spec import JobSpec

    algorithm, scheduler, space = STRATEGIES[strategy]
    eval_every = max_tokens // 5
    spec = JobSpec.model_validate({
        "name": f"{strategy.replace('+', '-')}-seed{seed}", "data": DATA, "model": MODEL, "space": space,
        "budget": {"max_tokens": max_tokens, "eval_every_tokens": eval_every},
        "search": {"algorithm": algorithm, "n_initial_points": max(2, trials // 3)},
        "scheduler": {"kind": scheduler, "grace_period_tokens": eval_every, "reduction_factor": 3},
        "num_samples": 1 if algorithm == "grid" else trials, "max_concurrent_trials": 2, "seed": seed,
        "storage": storage, "keep_checkpoints": 1})
    return collect(run_job(spec), spec).evaluations


def _millions(tokens: float) -> str:
    return f"{tokens / 1e6:.2f}M" if math.isfinite(tokens) else "never"


def plot(curves: dict[tuple[str, int], pd.DataFrame]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colors = dict(zip(STRATEGIES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for (strategy, seed), curve in curves.items():
        axes.step(curve["tokens"] / 1e6, curve["best"], where="post", color=colors[strategy], alpha=0.8,
                  label=strategy if seed == min(s for _, s in curves) else None)
    axes.set_xlabel("total training tokens (millions)")
    axes.set_ylabel("best val_bpc so far")
    axes.set_title("Search efficiency on the synthetic corpus (one line per seed)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # 8 trials: the grid has 2 x 2 x 2 points, so every strategy gets the same number of trials.
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=200_000)
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    curves: dict[tuple[str, int], pd.DataFrame] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as storage:
            for seed in args.seeds:
                for strategy in STRATEGIES:
                    evaluations = run_search(strategy, seed, args.trials, args.max_tokens, storage)
                    curves[strategy, seed] = best_curve(evaluations)
    finally:
        ray.shutdown()
    summary: dict[str, Any] = {}
    for strategy in STRATEGIES:
        rows = []
        for seed in args.seeds:
            best_of_seed = min(curves[s, seed]["best"].iloc[-1] for s in STRATEGIES)
            curve = curves[strategy, seed]
            rows.append({"best_val_bpc": float(curve["best"].iloc[-1]), "tokens": float(curve["tokens"].iloc[-1]),
                         "tokens_to_within_2pct": tokens_to_reach(curve, best_of_seed * (1 + WITHIN))})
        frame = pd.DataFrame(rows)
        summary[strategy] = {"per_seed": rows, "mean_best_val_bpc": frame["best_val_bpc"].mean(),
                             "mean_tokens": frame["tokens"].mean(),
                             "seeds_within_2pct": int(frame["tokens_to_within_2pct"].map(math.isfinite).sum()),
                             "median_tokens_to_within_2pct": frame["tokens_to_within_2pct"].median()}
    plot(curves)
    result = {"seeds": args.seeds, "trials": args.trials, "max_tokens": args.max_tokens, "strategies": summary,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "ray": ray.__version__}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_search.json").write_text(json.dumps(result, indent=2))
    baseline = summary["random+fifo"]["mean_tokens"]
    for strategy, figures in summary.items():
        print(f"| search efficiency, {strategy} ({len(args.seeds)} seeds x {args.trials} trials x "
              f"{args.max_tokens // 1000}k tokens) | best val_bpc {figures['mean_best_val_bpc']:.3f}, "
              f"{figures['mean_tokens'] / 1e6:.2f}M tokens, within 2% of the best on {figures['seeds_within_2pct']}"
              f"/{len(args.seeds)} seeds (median {_millions(figures['median_tokens_to_within_2pct'])} tokens) | "
              f"random+fifo: {baseline / 1e6:.2f}M tokens (x{figures['mean_tokens'] / baseline:.2f}) | "
              f"`.venv/bin/python -m benchmarks.bench_search` | {result['machine']} |")


if __name__ == "__main__":
    main()
