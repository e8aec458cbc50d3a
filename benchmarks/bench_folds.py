"""What reading through a validation fold costs: batch throughput of fold 1 of 5 against the plain splits.

A fold's training split is three memory-mapped segments (the chunks before and after the validation chunk,
and the stored val shard after them), so drawing a batch maps each start to its segment first. The plain
reader, measured in the same run on the same dataset, is the baseline. Also timed: one pass over every
evaluation block of the val split, and the one-off count of the fold's validation characters (a decode of the
chunk, done on the first bits-per-character). What matters is the extra time per batch next to a training
step on that batch (seconds on a CPU, milliseconds on a GPU).

    .venv/bin/python -m benchmarks.bench_folds [--megabytes 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import RESULTS, load_note, machine_description
from data_pipeline.config import DataConfig, SyntheticConfig
from data_pipeline.folds import Fold
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset

BATCH, BLOCK = 64, 256


def batches_per_second(dataset: TokenDataset, seconds: float) -> float:
    rng = np.random.default_rng(0)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        dataset.sample_batch("train", BATCH, BLOCK, rng)
        count += 1
    return count / (time.perf_counter() - started)


def eval_pass_seconds(dataset: TokenDataset) -> float:
    started = time.perf_counter()
    for _ in dataset.eval_batches("val", BLOCK, BATCH):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=20.0, help="size of the synthetic corpus")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of plain and fold")
    args = parser.parse_args()
    load = load_note()
    with tempfile.TemporaryDirectory(prefix="bench-folds-") as out:
        path = prepare_dataset(DataConfig(synthetic=SyntheticConfig(characters=int(args.megabytes * 1e6))), Path(out))
        plain, fold = TokenDataset.open(path), TokenDataset.open(path, Fold(1, 5))
        # Alternating rounds, best of each: the machine may be shared, and the slower rounds are its noise.
        plain_rates, fold_rates = [], []
        for _ in range(args.rounds):
            plain_rates.append(batches_per_second(plain, args.seconds))
            fold_rates.append(batches_per_second(fold, args.seconds))
        started = time.perf_counter()
        fold.chars_per_token("val")
        count_seconds = time.perf_counter() - started
        result = {
            "machine": machine_description(),
            "load": load,
            "corpus_mb": args.megabytes,
            "train_segments": len(fold.segments["train"]),
            "val_tokens": fold.num_tokens("val"),
            "plain_batches_per_s": max(plain_rates),
            "fold_batches_per_s": max(fold_rates),
            "ratio": max(fold_rates) / max(plain_rates),
            "extra_us_per_batch": 1e6 * (1 / max(fold_rates) - 1 / max(plain_rates)),
            "plain_eval_pass_s": eval_pass_seconds(plain),
            "fold_eval_pass_s": eval_pass_seconds(fold),
            "fold_char_count_s": count_seconds,
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_folds.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| reader through validation fold 1 of 5 ({result['train_segments']} training segments), "
        f"{args.megabytes:g} MB synthetic corpus, char tokenizer, batches of {BATCH} x {BLOCK} | "
        f"{result['fold_batches_per_s']:,.0f} batches/s = {result['ratio']:.2f}x plain "
        f"({result['extra_us_per_batch']:.0f} µs more per batch); one-off count of the "
        f"{result['val_tokens']:,} validation tokens' characters {result['fold_char_count_s']:.2f} s; full val "
        f"pass {result['fold_eval_pass_s']:.2f} s | plain splits {result['plain_batches_per_s']:,.0f} batches/s, "
        f"val pass {result['plain_eval_pass_s']:.2f} s (another val split) | "
        f"`.venv/bin/python -m benchmarks.bench_folds` | {result['machine']}, {load} |"
    )


if __name__ == "__main__":
    main()
