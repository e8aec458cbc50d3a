"""Job specs for tests: the shipped quickstart, the tiny job every Ray test starts from, and hostile YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "tune_jobs" / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"

# Nine levels of nine aliases each: 9**9 (387 million) leaves once expanded (issue 14, B.5).
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def tiny_job(storage: Path, **changes: Any) -> dict[str, Any]:
    """A job whose trials train for about a second: the shape every Ray test starts from."""
    job: dict[str, Any] = {
        "name": "tiny",
        "data": {"source": "synthetic", "synthetic": {"characters": 60000}},
        "model": {
            "n_layers": 1,
            "n_heads": 2,
            "head_dim": 8,
            "block_size": 32,
            "batch_size": 8,
            "eval_max_blocks": 4,
            "sample_tokens": 0,
        },
        "budget": {"max_tokens": 9216, "eval_every_tokens": 1024},
        "space": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}},
        "search": {"algorithm": "random"},
        "scheduler": {"kind": "fifo"},
        "num_samples": 2,
        "max_concurrent_trials": 2,
        "storage": str(storage),
    }
    for key, value in changes.items():
        job[key] = value
    return job


def write_job(path: Path, job: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path
