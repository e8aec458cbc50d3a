"""Trainer efficiency: tokens/s of textune's trainer against a minimal hand-written loop, plus MFU.

Both train the same model (the default small config, models/configs/shakespeare-char.yaml) from the same
initial weights on the same batches (the same seeded sampler over the same prepared tinyshakespeare), in the
same process, in alternating chunks of steps, so that load from other processes hits both alike. The textune
side is ``models.trainer.Trainer.train_until``, the loop every trial runs between evaluations (schedule,
accumulation, clipping, divergence check, weight-decay groups). Rates are given per wall-clock second and per
CPU-second of this process (the latter is robust to other processes on a shared machine). MFU = (6·N +
attention) FLOPs per token x tokens/s over this machine's matmul peak, measured in the same run.

    .venv/bin/python -m benchmarks.bench_trainer [--chunks 10 --chunk-steps 20 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.machine import machine_description
from data_pipeline.config import DataConfig
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from models.config import TrialConfig, parse_trial_config
from models.families import build_model
from models.metrics import flops_per_token
from models.trainer import Trainer, resolve_device, use_tensor_cores
from textune.config import load_yaml, validate

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
DEFAULT_CONFIG = REPO / "models" / "configs" / "shakespeare-char.yaml"


def default_trial_config(corpus: Path = SHAKESPEARE, **overrides: Any) -> dict[str, Any]:
    """The default small config with its data: section prepared from ``corpus`` (the shared tinyshakespeare)."""
    raw = load_yaml(DEFAULT_CONFIG)
    data = validate(DataConfig, {**raw.pop("data"), "source": str(corpus)}, "benchmark data")
    return {**raw, "dataset_dir": str(prepare_dataset(data)), **overrides}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best observed FLOP/s of a square matmul: the machine's practical peak for this dtype."""
    size = 8192 if device.type == "cuda" else 2048  # large enough to saturate each
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
    return best


class HandwrittenLoop:
    """The smallest loop that trains the same model on the same batches: nanoGPT's train.py, stripped."""

    def __init__(self, config: TrialConfig, dataset: TokenDataset, device: torch.device) -> None:
        self.config, self.dataset, self.device = config, dataset, device
        torch.manual_seed(config.seed)
        self.model = build_model(config, dataset.tokenizer.vocab_size).to(device)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
        )
        self.rng = np.random.default_rng(config.seed)

    def train_steps(self, steps: int) -> None:
        config = self.config
        for _ in range(steps):
            x, y = self.dataset.sample_batch("train", config.batch_size, config.block_size, self.rng)
            x, y = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = self.forward(x)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def timed(work: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent in ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(config: dict[str, Any], chunks: int, chunk_steps: int, peak_dtype: torch.dtype) -> dict[str, Any]:
    """Both loops in alternating chunks of ``chunk_steps`` steps (the first chunk of each is warm-up)."""
    cfg = parse_trial_config(config)
    device = resolve_device(cfg.device)
    dataset = TokenDataset.open(cfg.dataset_dir)
    peak = matmul_peak_flops(device, peak_dtype)
    use_tensor_cores()  # as a trial's process does (after the peak, which is measured as it always was)
    trainer = Trainer(cfg, dataset, device)
    handwritten = HandwrittenLoop(cfg, dataset, device)
    chunk_tokens = cfg.tokens_per_step * chunk_steps
    totals = {"trainer": [0.0, 0.0], "handwritten": [0.0, 0.0]}  # [wall, cpu] seconds after warm-up
    for chunk in range(chunks + 1):
        spent = {
            "trainer": timed(lambda: trainer.train_until(trainer.tokens + chunk_tokens, on_step=lambda tokens: None)),
            "handwritten": timed(lambda: handwritten.train_steps(chunk_steps)),
        }
        if chunk > 0:
            for name, (wall, cpu) in spent.items():
                totals[name][0] += wall
                totals[name][1] += cpu
    tokens = chunk_tokens * chunks
    rate = {name: {"wall": tokens / wall, "cpu": tokens / cpu} for name, (wall, cpu) in totals.items()}
    per_token = flops_per_token(cfg, trainer.model)
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "chunks": chunks,
        "chunk_steps": chunk_steps,
        "tokens_per_s": rate,
        "ratio_wall": rate["trainer"]["wall"] / rate["handwritten"]["wall"],
        "ratio_cpu": rate["trainer"]["cpu"] / rate["handwritten"]["cpu"],
        "flops_per_token": per_token,
        "matmul_peak_flops": peak,
        "mfu_trainer": per_token * rate["trainer"]["wall"] / peak,
        "mfu_handwritten": per_token * rate["handwritten"]["wall"] / peak,
        "load_average": os.getloadavg(),
        "machine": machine_description(),
    }


def write_result(name: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks per loop (plus one of warm-up)")
    parser.add_argument("--chunk-steps", type=int, default=20, help="optimiser steps per chunk")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = measure(default_trial_config(device="cpu"), args.chunks, args.chunk_steps, torch.float32)
    write_result("bench_trainer", result)
    rate = result["tokens_per_s"]
    print(
        f"| trainer throughput, default small config ({result['params'] / 1e6:.2f}M params, CPU fp32, "
        f"{result['threads']} thread(s)) | {rate['trainer']['wall']:,.0f} tokens/s = {result['ratio_wall']:.3f}x "
        f"hand-written loop ({result['ratio_cpu']:.3f}x per CPU-second); MFU {result['mfu_trainer']:.1%} of measured "
        f"matmul peak {result['matmul_peak_flops'] / 1e9:.0f} GFLOP/s | hand-written loop "
        f"{rate['handwritten']['wall']:,.0f} tokens/s, MFU {result['mfu_handwritten']:.1%} | "
        f"`.venv/bin/python -m benchmarks.bench_trainer` | {result['machine']}, load average "
        f"{result['load_average'][0]:.1f} |"
    )


if __name__ == "__main__":
    main()
