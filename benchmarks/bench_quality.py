"""Quality in 5 minutes: best validation loss (nats/char) of the default small config on tinyshakespeare.

The default config (models/configs/shakespeare-char.yaml: char tokenizer, 90/5/5 split) trains for a token
budget sized to ``--minutes`` of this machine: a 30-second calibration run measures tokens/s first, and the
budget leaves a few percent for evaluations (every tenth of the budget, over the whole val split). The cosine
schedule then ends when the time does. The published nanoGPT CPU figure (shakespeare_char, 4 layers x 128,
about 3 minutes on a laptop CPU) is val loss 1.88 on a 90/10 split.

    .venv/bin/python -m benchmarks.bench_quality [--minutes 5 --threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from benchmarks.bench_trainer import default_trial_config, write_result
from benchmarks.machine import machine_description
from models.config import parse_trial_config
from models.trial import run_trial

NANOGPT_CPU_VAL_LOSS = 1.88
EVALUATION_SHARE = 0.07  # of the wall time, for the ten full val-split evaluations


class Collect:
    def __init__(self) -> None:
        self.reports: list[dict] = []

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        self.reports.append(metrics)


def calibrated_tokens_per_s(config: dict, seconds: float = 30.0) -> float:
    """tokens/s of the config on this machine now (the second half of a short run)."""
    per_step = parse_trial_config(config).tokens_per_step
    tokens = per_step * 2 * max(1, int(seconds * 5_000 / per_step))  # first guess: 10k tokens/s
    collect = Collect()
    run_trial(
        {**config, "max_tokens": tokens, "eval_every_tokens": tokens // 2, "eval_max_blocks": 1, "sample_tokens": 0},
        collect,
    )
    return collect.reports[-1]["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = default_trial_config(device="cpu", eval_max_blocks=None, sample_tokens=0)
    rate = calibrated_tokens_per_s(config)
    budget = int(rate * args.minutes * 60 * (1 - EVALUATION_SHARE))
    collect = Collect()
    started = time.perf_counter()
    result = run_trial({**config, "max_tokens": budget, "eval_every_tokens": max(1, budget // 10)}, collect)
    seconds = time.perf_counter() - started
    best_nats_per_char = result.best_val_bpc * math.log(2)
    figures = {
        "best_val_nats_per_char": best_nats_per_char,
        "best_val_bpc": result.best_val_bpc,
        "tokens": result.tokens,
        "seconds": seconds,
        "calibrated_tokens_per_s": rate,
        "threads": torch.get_num_threads(),
        "nanogpt_cpu_val_loss": NANOGPT_CPU_VAL_LOSS,
        "curve": [(r["tokens"], r["val_loss"]) for r in collect.reports],
        "load_average": os.getloadavg(),
        "machine": machine_description(),
    }
    write_result("bench_quality", figures)
    print(
        f"| quality: best val loss of the default small config on tinyshakespeare (90/5/5 chars) in "
        f"{seconds / 60:.1f} min on CPU ({figures['threads']} thread(s)) | {best_nats_per_char:.3f} nats/char "
        f"({result.best_val_bpc:.3f} bits/char, "
        f"{result.tokens / 1e6:.1f}M tokens) | nanoGPT CPU shakespeare_char: {NANOGPT_CPU_VAL_LOSS} (90/10 split, "
        f"published) | `.venv/bin/python -m benchmarks.bench_quality` | {figures['machine']}, load average "
        f"{figures['load_average'][0]:.1f} |"
    )


if __name__ == "__main__":
    main()
