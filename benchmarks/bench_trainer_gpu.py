"""GPU trainer efficiency: bf16 tokens/s and MFU of a ~25M-parameter Transformer, trial vs hand-written loop.

The same comparison as bench_trainer (same batches, same process, alternating) on CUDA with bf16 autocast,
TF32 and ``torch.compile``, for 8 layers x 8 heads x 64 (d_model 512, 25.2M parameters) at block_size 512.
MFU is reported against the bf16 matmul peak measured in the same run and against the card's datasheet dense
bf16 peak when known (H100 SXM: 989 TFLOP/s). Needs a CUDA GPU.

    .venv/bin/python -m benchmarks.bench_trainer_gpu [--chunks 10 --chunk-steps 20 --corpus PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.bench_trainer import SHAKESPEARE, default_trial_config, measure, write_result

DATASHEET_BF16_DENSE = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
MODEL = {
    "n_layers": 8,
    "n_heads": 8,
    "head_dim": 64,
    "block_size": 512,
    "batch_size": 32,
    "compile": True,
    "device": "cuda",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks per loop (plus one of warm-up)")
    parser.add_argument("--chunk-steps", type=int, default=20)
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_trainer_gpu needs a CUDA GPU; on CPU run benchmarks.bench_trainer.")
    result = measure(default_trial_config(args.corpus, **MODEL), args.chunks, args.chunk_steps, torch.bfloat16)
    rate = result["tokens_per_s"]["trainer"]["wall"]
    datasheet = next((v for k, v in DATASHEET_BF16_DENSE.items() if k in result["device"]), None)
    if datasheet is not None:
        result["mfu_trainer_datasheet"] = result["flops_per_token"] * rate / datasheet
    write_result("bench_trainer_gpu", result)
    vs_datasheet = f", {result['mfu_trainer_datasheet']:.1%} of datasheet bf16 peak" if datasheet is not None else ""
    print(
        f"| GPU trainer throughput, {result['params'] / 1e6:.1f}M-param Transformer, bf16 + compile | "
        f"{rate:,.0f} tokens/s = {result['ratio_wall']:.3f}x hand-written loop; MFU {result['mfu_trainer']:.1%} of "
        f"measured bf16 matmul peak {result['matmul_peak_flops'] / 1e12:.0f} TFLOP/s{vs_datasheet} | "
        f"hand-written loop {result['tokens_per_s']['handwritten']['wall']:,.0f} tokens/s | "
        f"`.venv/bin/python -m benchmarks.bench_trainer_gpu` | {result['device']} |"
    )


if __name__ == "__main__":
    main()
