"""Pieces of the models tests: small prepared datasets, tiny trial configs, a recording reporter.

The session's prepared tinyshakespeare excerpt is the ``shakespeare_dataset`` fixture in tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_pipeline.config import DataConfig
from data_pipeline.prepare import prepare_dataset
from textune.config import validate

FAMILIES = ["transformer", "lstm"]

# Tiny models: every test trains in a second or two on one core.
TINY = {
    "transformer": {"family": "transformer", "n_layers": 2, "n_heads": 2, "head_dim": 16, "block_size": 32},
    "lstm": {"family": "lstm", "n_layers": 2, "lstm_hidden": 48, "block_size": 32},
}


def prepare(source: Path, out_dir: Path, **data: Any) -> str:
    config = validate(DataConfig, {"source": str(source), "tokenizer": {"kind": "char"}, **data}, "test data")
    return str(prepare_dataset(config, out_dir=out_dir))


def tiny_config(dataset_dir: str, family: str, **overrides: Any) -> dict[str, Any]:
    """A trial config that trains a tiny model for 4 evaluations of 2,048 tokens each."""
    return {
        "dataset_dir": dataset_dir,
        **TINY[family],
        "batch_size": 8,
        "max_tokens": 8192,
        "eval_every_tokens": 2048,
        "eval_max_blocks": 16,
        "sample_tokens": 0,
        "num_threads": 1,
        "device": "cpu",
        "lr": 3e-3,
        "warmup_tokens": 1024,
        **overrides,
    }


class RecordingReporter:
    """Keeps every report's metrics and the files of every checkpoint it was handed."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.checkpoint_files: list[list[str]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.reports.append(dict(metrics))
        self.checkpoint_files.append(sorted(p.name for p in Path(checkpoint_dir).iterdir()) if checkpoint_dir else [])


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


# Tiny Hugging Face configs (built with random weights, nothing downloaded), for the family tests.
HF_GPT2 = {"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2}
HF_LLAMA = {
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
