"""Trainer efficiency on a Hugging Face model: tokens/s of textune's trainer against the minimal hand-written loop,
both training the same randomly initialised GPT-2 (``family: hf``) on the same batches.

The comparison, the loop and the machine's matmul peak are benchmarks/bench_trainer.py's; only the model differs
(a GPT-2 of transformers instead of textune's Transformer), so the figure says what textune's trainer costs around
a model it does not own. The goal: at least 0.95x the hand-written loop.

    .venv/bin/python -m benchmarks.bench_trainer_hf [--chunks 10 --chunk-steps 20 --threads 1 --n-embd 128]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.bench_trainer import default_trial_config, measure, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks per loop (plus one of warm-up)")
    parser.add_argument("--chunk-steps", type=int, default=20, help="optimiser steps per chunk")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    parser.add_argument("--n-embd", type=int, default=128, help="GPT-2 width (4 layers, 4 heads)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    gpt2 = {"model_type": "gpt2", "n_embd": args.n_embd, "n_layer": 4, "n_head": 4}
    result = measure(
        default_trial_config(device="cpu", family="hf", hf=gpt2), args.chunks, args.chunk_steps, torch.float32
    )
    write_result("bench_trainer_hf", result)
    rate = result["tokens_per_s"]
    print(
        f"| trainer throughput, HF GPT-2 from a config ({result['params'] / 1e6:.2f}M params, CPU fp32, "
        f"{result['threads']} thread(s)) | {rate['trainer']['wall']:,.0f} tokens/s = {result['ratio_wall']:.3f}x "
        f"hand-written loop ({result['ratio_cpu']:.3f}x per CPU-second); MFU {result['mfu_trainer']:.1%} | "
        f"hand-written loop {rate['handwritten']['wall']:,.0f} tokens/s | `bench_trainer_hf` | "
        f"{result['machine']}, load average {result['load_average'][0]:.1f} |"
    )


if __name__ == "__main__":
    main()
