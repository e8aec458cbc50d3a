"""How often ASHA's rung rankings agree with the final ranking (Kendall τ), with and without annealed evaluations.

For configurations trained to the whole budget, each rung's ranking (by the metric at the first evaluation at or
past the rung, as ASHA records it) is compared with the ranking at max_tokens, per variant:

- ``cosine``: val_bpc at the rung of a cosine run: today's rung evaluations, mid-schedule, not annealed;
- ``wsd-stable``: the stable wsd model at the rung (``stable_val_bpc``), not annealed;
- ``wsd-annealed``: the cooled-down branch at the rung (the annealed evaluation's ``val_bpc``).

Each against its own schedule's final ranking. τ = 1 means the rung ranks exactly as the end does; the
short-horizon bias (Wu et al. 2018) lowers it. ``--table DIR`` measures a recorded learning-curve table
(tune_jobs.replay.table; recorded with cosine, so un-annealed) at the rungs a replayed ASHA strategy has there
(grace period = eval_every_tokens, reduction factor 3, as bench_search_sim replays it).

``--smoke`` records a tiny real set with ``textune train`` (6 configurations x cosine and wsd on a small
synthetic corpus, about a minute on 2 cores; no Ray) and measures it. ``--paired`` records the set the
with-and-without-annealing figure is read from: 20 configurations (5 learning rates x 2 depths x 2 batch sizes,
the recorded tables' grid at their fixed width) x cosine and wsd, 49,152 tokens each, rungs at 4,096, 12,288 and
36,864 tokens (grace 4,096, reduction factor 3), about 10 minutes on 2 cores. Writes
benchmarks/results/rank_agreement_{smoke,paired,table-TABLE}.json (TABLE: the directory's name, or for an
experiment's own table, EXPERIMENT/replay/table, the experiment's) and prints a Markdown table. A ``--table`` that
is not a readable table is refused in one paragraph with exit status 2.

    .venv/bin/python -m benchmarks.bench_rank_agreement --smoke
    .venv/bin/python -m benchmarks.bench_rank_agreement --paired
    .venv/bin/python -m benchmarks.bench_rank_agreement --table benchmarks/tables/synthetic
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from scipy.stats import kendalltau

from benchmarks.machine import RESULTS, load_note, machine_description
from benchmarks.table_args import read_tables

CURVE_KEYS = ("config_id", "seed")
# The smoke: rungs 1024, 2048, 4096 of an 8192-token budget (grace 1024, reduction factor 2).
SMOKE_RUNGS = (1024, 2048, 4096)
REPLAY_REDUCTION_FACTOR = 3.0
SMOKE_CONFIGS = [{"lr": lr, "n_layers": layers} for lr in (1e-3, 4e-3, 1.6e-2) for layers in (1, 2)]
PAIRED_RUNGS = (4096, 12288, 36864)
PAIRED_CONFIGS = [
    {"lr": lr, "n_layers": layers, "batch_size": batch}
    for lr in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
    for layers in (1, 2)
    for batch in (8, 16)
]
SMOKE_BASE = {
    "data": {"source": "synthetic", "tokenizer": {"kind": "char"}, "synthetic": {"characters": 60_000}},
    "n_heads": 2,
    "head_dim": 8,
    "block_size": 32,
    "batch_size": 8,
    "max_tokens": 8192,
    "eval_every_tokens": 1024,
    "eval_max_blocks": 16,
    "sample_tokens": 0,
    "warmup_tokens": 512,
    "device": "cpu",
    "num_threads": 1,
    "cooldown_fraction": 0.2,
}
# The recorded tables' fixed width (2 heads of 16) and block, on the synthetic corpus; a budget long enough for
# three rungs of a reduction factor 3 before wsd's final cooldown (the last 20%, from 39,322 tokens on).
PAIRED_BASE = {
    **SMOKE_BASE,
    "data": {"source": "synthetic", "tokenizer": {"kind": "char"}, "synthetic": {"characters": 400_000}},
    "head_dim": 16,
    "block_size": 64,
    "max_tokens": 49_152,
    "eval_every_tokens": 4096,
    "warmup_tokens": 2048,
}


def rank_agreement(
    curves: pd.DataFrame, rungs: Sequence[float], rung_metric: str = "val_bpc", final_metric: str = "val_bpc"
) -> list[dict[str, Any]]:
    """Kendall τ between the ranking by ``rung_metric`` at each rung and by ``final_metric`` at the last tokens.

    ``curves``: a row per evaluation, a curve per (config_id, seed), with ``tokens`` and the metric columns. A
    curve counts at a rung when it reached the final tokens and both values are finite. Returns a dict per rung
    below the final tokens: ``rung`` (tokens), ``tau`` (NaN with fewer than 2 curves) and ``curves``.
    """
    final_tokens = curves["tokens"].max()
    ordered = curves.sort_values("tokens", kind="stable")
    finals = ordered[ordered["tokens"] == final_tokens].groupby(list(CURVE_KEYS)).head(1)
    finals = finals.set_index(list(CURVE_KEYS))[final_metric].rename("final")
    rows = []
    for rung in (r for r in rungs if r < final_tokens):
        at_rung = ordered[ordered["tokens"] >= rung].groupby(list(CURVE_KEYS)).head(1)  # as ASHA records it
        paired = at_rung.set_index(list(CURVE_KEYS))[rung_metric].rename("rung").to_frame().join(finals, how="inner")
        paired = paired[paired["rung"].map(_finite) & paired["final"].map(_finite)]
        tau = float(kendalltau(paired["rung"], paired["final"]).statistic) if len(paired) >= 2 else math.nan
        rows.append({"rung": float(rung), "tau": tau, "curves": len(paired)})
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def record_set(
    workdir: Path, base: dict[str, Any], configs: list[dict[str, Any]], rungs: Sequence[int]
) -> dict[str, pd.DataFrame]:
    """Train every configuration with cosine and with wsd (annealed at the rungs) through ``textune train``; the
    curves of each schedule, a row per evaluation."""
    curves: dict[str, list[dict[str, Any]]] = {"cosine": [], "wsd": []}
    for index, params in enumerate(configs):
        for schedule in curves:
            extra = {"lr_schedule": "wsd", "anneal_at_tokens": list(rungs)} if schedule == "wsd" else {}
            config = workdir / f"{schedule}-{index}.yaml"
            config.write_text(yaml.safe_dump({**base, **params, **extra}), encoding="utf-8")
            run_dir = workdir / "runs" / config.stem
            done = subprocess.run(
                [sys.executable, "-m", "tune_jobs.cli.main", "train", str(config), "--run-dir", str(run_dir)],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parents[1],
            )
            if done.returncode != 0:
                sys.exit(f"textune train {config} failed:\n{done.stderr}")
            for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
                curves[schedule].append({"config_id": str(index), "seed": 0, **json.loads(line)})
    return {schedule: pd.DataFrame(rows) for schedule, rows in curves.items()}


def measure_set(base: dict[str, Any], configs: list[dict[str, Any]], rungs: Sequence[int]) -> dict[str, Any]:
    """τ per rung of the cosine runs, of the wsd runs' stable models and of their annealed branches."""
    with tempfile.TemporaryDirectory(prefix="textune-rank-") as workdir:
        curves = record_set(Path(workdir), base, configs, rungs)
    return {
        "cosine": rank_agreement(curves["cosine"], rungs),
        "wsd-stable": rank_agreement(curves["wsd"], rungs, rung_metric="stable_val_bpc"),
        "wsd-annealed": rank_agreement(curves["wsd"], rungs),
    }


def measure_table(table: Any) -> dict[str, list[dict[str, Any]]]:
    """τ per replayed ASHA rung of a recorded table (tune_jobs.replay.table.CurveTable; cosine, un-annealed)."""
    return {"cosine": rank_agreement(table.curves, replay_rungs(table), table.metric, table.metric)}


def replay_rungs(table: Any) -> list[float]:
    """The rungs a replayed ASHA strategy has on ``table`` (grace period = eval_every_tokens, reduction factor 3,
    as benchmarks/bench_search_sim.py replays it): a table is recorded with FIFO, so its own spec has none."""
    from tune_jobs.replay.strategies import Strategy, strategy_spec
    from tune_jobs.search import rung_milestones

    asha = Strategy("random", "asha", table.spec.budget.eval_every_tokens, REPLAY_REDUCTION_FACTOR)
    return rung_milestones(strategy_spec(table, asha, 0, 1))


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    rungs = sorted({row["rung"] for rows in results.values() for row in rows})
    lines = ["| variant | " + " | ".join(f"τ at {rung:,.0f}" for rung in rungs) + " |", "|---|" + "---|" * len(rungs)]
    for variant, rows in results.items():
        by_rung = {row["rung"]: row for row in rows}
        cells = [f"{by_rung[r]['tau']:.2f} (n={by_rung[r]['curves']})" if r in by_rung else "" for r in rungs]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--smoke", action="store_true", help="Record a tiny real set with textune train.")
    source.add_argument("--paired", action="store_true", help="Record 20 configurations x cosine and wsd (10 min).")
    source.add_argument("--table", type=Path, help="A recorded learning-curve table directory.")
    args = parser.parse_args()
    if args.table is not None:
        ((label, table),) = read_tables(parser, [args.table])
    started = time.perf_counter()
    if args.smoke:
        label, results = "smoke", measure_set(SMOKE_BASE, SMOKE_CONFIGS, SMOKE_RUNGS)
    elif args.paired:
        label, results = "paired", measure_set(PAIRED_BASE, PAIRED_CONFIGS, PAIRED_RUNGS)
    else:
        # "table-" keeps a table's results apart from the smoke's and the paired set's, whatever its name.
        label, results = f"table-{label}", measure_table(table)
    record = {
        "source": label if args.table is None else str(args.table),
        "results": results,
        "machine": machine_description(),
        "load": load_note(),
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"rank_agreement_{label}.json"
    out.write_text(json.dumps(record, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\n{record['seconds']:.0f} s; written to {out}")


if __name__ == "__main__":
    main()
