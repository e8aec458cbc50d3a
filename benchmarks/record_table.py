"""Record a learning-curve table with textune itself, for replays (docs/replay.md).

Two textune experiments, both grid searches with FIFO, so every configuration trains its whole budget and every
evaluation is kept:

- ``NAME``: the grid over learning rate, batch size, head width, attention heads, depth and optimizer
  (5 x 2 x 2 x 2 x 2 x 3 = 240 configurations), seed 0, 8 evaluations per curve;
- ``NAME-seeds``: 20 of those configurations (the 5 learning rates x 2 depths x 2 optimizers at batch 16,
  head width 16, 2 heads) again with seeds 1 and 2, so the table states its own seed noise.

Their curves are merged into one table (``curves.parquet`` + ``manifest.json``, tune_jobs.replay.table) under
``--out`` (default: benchmarks/tables/CORPUS, committed, where bench_search_sim and bench_default_search look;
a ``--smoke`` table goes to benchmarks/results/tables/, which they leave alone). Recording is resumable: each
experiment is a textune experiment run with ``textune run --resume``, so an interrupted recording continues where
it stopped. The
curves are sized to record in about 20 (synthetic, 262k tokens) and 40 (shakespeare, 524k tokens) minutes
on 2 cores (docs/replay.md has the measured times).

    .venv/bin/python -m benchmarks.record_table [--corpus synthetic|shakespeare] [--smoke]

``--smoke`` records a tiny version (4 configurations, 3 evaluations, 2 more seeds of 2 of them) in about a
minute. Run it in a loopback-only network namespace (as ``make bench`` does): it starts Ray.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmarks.machine import RESULTS, load_note, machine_description

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
MODEL = {
    "family": "transformer",
    "block_size": 64,
    "eval_max_blocks": 8,
    "sample_tokens": 0,
    "warmup_tokens": 2048,
    "dropout": 0.0,
}
FULL = {
    "grid": {
        "lr": [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2],
        "batch_size": [8, 16],
        "head_dim": [8, 16],
        "n_heads": [1, 2],
        "n_layers": [1, 2],
        "optimizer": ["adamw", "rmsprop", "sgd"],
    },
    "seeded": {"lr": [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2], "n_layers": [1, 2], "optimizer": ["adamw", "rmsprop"]},
    "fixed_for_seeds": {"batch_size": 16, "head_dim": 16, "n_heads": 2},
    # Shakespeare's models learn more slowly than the synthetic corpus's, so its curves run twice as long.
    "eval_every_tokens": {"synthetic": 32_768, "shakespeare": 65_536},
    "evaluations": 8,
}
SMOKE = {
    "grid": {"lr": [4e-3, 1.6e-2], "batch_size": [8, 16]},
    "seeded": {"lr": [4e-3, 1.6e-2]},
    "fixed_for_seeds": {"batch_size": 16},
    "eval_every_tokens": {"synthetic": 1024, "shakespeare": 1024},
    "evaluations": 3,
}
SEEDS = [1, 2]


def data_config(corpus: str, smoke: bool) -> dict[str, Any]:
    if corpus == "shakespeare":
        if not SHAKESPEARE.is_file():
            sys.exit(f"tinyshakespeare is not at {SHAKESPEARE}; record --corpus synthetic instead")
        return {"source": str(SHAKESPEARE), "tokenizer": {"kind": "char"}}
    characters = 60_000 if smoke else 400_000
    return {
        "source": "synthetic",
        "tokenizer": {"kind": "char"},
        "synthetic": {"characters": characters, "words": 30, "branching": 4},
    }


def job(
    name: str,
    corpus: str,
    smoke: bool,
    plan: dict[str, Any],
    space: dict[str, list[Any]],
    fixed: dict[str, Any],
    storage: Path,
) -> dict[str, Any]:
    every = plan["eval_every_tokens"][corpus]
    model = {**MODEL, **fixed, **({"n_layers": 1, "n_heads": 2, "head_dim": 8, "block_size": 32} if smoke else {})}
    model = {key: value for key, value in model.items() if key not in space}
    return {
        "name": name,
        "data": data_config(corpus, smoke),
        "model": model,
        "budget": {"max_tokens": every * plan["evaluations"], "eval_every_tokens": every},
        "space": {key: {"grid": values} for key, values in space.items()},
        "search": {"algorithm": "grid"},
        "scheduler": {"kind": "fifo"},
        "num_samples": 1,
        "max_concurrent_trials": 2,
        "resources": {"cpu": 1, "gpu": 0},
        "storage": str(storage),
        "seed": 0,
        "keep_checkpoints": 1,
    }


def record(spec: dict[str, Any], storage: Path) -> Path:
    """Run (or continue) one recording experiment through the real CLI; return its directory."""
    path = storage / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "tune_jobs.cli.main", "run", str(path), "--resume"], check=True)
    return storage / spec["name"]


def merged_table(main_dir: Path, seeds_dir: Path, fixed: dict[str, Any], model: dict[str, Any]):
    """One table of both experiments: the seed experiment's rows get the main grid's columns and config ids."""
    from tune_jobs.experiment import open_experiment
    from tune_jobs.replay.table import config_id, make_table, table_from_experiment
    from tune_jobs.results.table import CONFIG_PREFIX

    main, extra = table_from_experiment(open_experiment(main_dir)), table_from_experiment(open_experiment(seeds_dir))
    curves = extra.curves.copy()
    for name in main.params:
        if CONFIG_PREFIX + name not in curves:
            curves[CONFIG_PREFIX + name] = fixed.get(name, model.get(name))
    curves["config_id"] = [
        config_id({name: row[CONFIG_PREFIX + name] for name in main.params}) for _, row in curves.iterrows()
    ]
    curves = curves[main.curves.columns]
    source = {
        "source": [str(main_dir), str(seeds_dir)],
        "source_evaluations_sha256": [
            main.manifest["source_evaluations_sha256"],
            extra.manifest["source_evaluations_sha256"],
        ],
    }
    return make_table(pd.concat([main.curves, curves], ignore_index=True), main.spec, source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["synthetic", "shakespeare"], default="synthetic")
    parser.add_argument("--smoke", action="store_true", help="A tiny table in about a minute.")
    parser.add_argument("--out", type=Path, default=None, help="Table directory (default: benchmarks/tables/CORPUS).")
    parser.add_argument("--storage", type=Path, default=None, help="Where the recording experiments live.")
    args = parser.parse_args()
    from tune_jobs.replay.table import write_table

    label = f"{args.corpus}{'-smoke' if args.smoke else ''}"
    out = args.out or (RESULTS / "tables" if args.smoke else Path(__file__).resolve().parent / "tables") / label
    storage = (args.storage or RESULTS / "recordings").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    plan = SMOKE if args.smoke else FULL
    print(f"recording table {label} on {machine_description()}, {load_note()}", flush=True)
    main_spec = job(f"table-{label}", args.corpus, args.smoke, plan, plan["grid"], {}, storage)
    seeds_space = {**plan["seeded"], "seed": SEEDS}
    seeds_spec = job(
        f"table-{label}-seeds", args.corpus, args.smoke, plan, seeds_space, plan["fixed_for_seeds"], storage
    )
    main_dir, seeds_dir = record(main_spec, storage), record(seeds_spec, storage)
    table = merged_table(main_dir, seeds_dir, plan["fixed_for_seeds"], main_spec["model"])
    write_table(table, out)
    curves = table.curves
    lengths = curves.groupby("source_trial").size()
    print(
        f"table {out}: {table.manifest['configs']} configurations, {table.manifest['curves']} curves, "
        f"{lengths.min()}-{lengths.max()} evaluations each, {len(table.params)} hyperparameters "
        f"({', '.join(table.params)}); {curves['wall_s'].sum():.0f} s of recorded evaluation time"
    )


if __name__ == "__main__":
    main()
