"""A budget or an evaluation interval below one batch (batch_size x block_size tokens) is refused where a run
starts: `textune run` for the largest batch the space can sample, `textune train` for its one config. No Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.config import parse_trial_config
from support.jobs import tiny_job, write_job
from textune.errors import TextuneError
from tune_jobs.spec import JobSpec, load_spec

LR = {"loguniform": [1.0e-3, 3.0e-2]}


def refusal(tmp_path: Path, **changes: Any) -> str:
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path, **changes))
    with pytest.raises(TextuneError) as info:
        load_spec(path)
    return info.value.paragraph()


@pytest.mark.parametrize(
    "batch_size, largest",
    [
        ({"choice": [4, 16, 8]}, 16),
        ({"randint": [2, 12]}, 12),  # both ends included
        ({"quniform": [4, 20, 4]}, 20),
        ({"grid": [8, 24]}, 24),
    ],
)
def test_every_batch_size_the_space_can_sample_is_checked(
    tmp_path: Path, batch_size: dict[str, Any], largest: int
) -> None:
    model = {key: value for key, value in tiny_job(tmp_path)["model"].items() if key != "batch_size"}  # block 32
    job = {"model": model, "search": {"algorithm": "random"}, "space": {"lr": LR, "batch_size": batch_size}}
    tokens = largest * 32
    text = refusal(tmp_path, budget={"max_tokens": tokens - 1, "eval_every_tokens": tokens - 1}, **job)
    assert (
        f"budget.max_tokens ({tokens - 1}) is less than one batch, batch_size {largest} (the largest of "
        f"space.batch_size) x block_size 32 (model.block_size) = {tokens} tokens" in text
    )
    assert f"set budget.max_tokens to at least {tokens}" in text
    text = refusal(tmp_path, budget={"max_tokens": 10 * tokens, "eval_every_tokens": tokens - 1}, **job)
    assert f"budget.eval_every_tokens ({tokens - 1}) is less than one batch" in text
    assert f"every step would be cut to {tokens - 1} tokens" in text
    assert f"set budget.eval_every_tokens to at least {tokens}" in text
    write_job(
        tmp_path / "ok.yaml", tiny_job(tmp_path, budget={"max_tokens": tokens, "eval_every_tokens": tokens}, **job)
    )
    assert load_spec(tmp_path / "ok.yaml").budget.max_tokens == tokens


def test_a_searched_block_size_and_the_trial_default_count_too(tmp_path: Path) -> None:
    model = {key: value for key, value in tiny_job(tmp_path)["model"].items() if key != "block_size"}  # batch 8
    text = refusal(tmp_path, model=model, space={"lr": LR, "block_size": {"choice": [32, 256]}})
    assert "batch_size 8 (model.batch_size) x block_size 256 (the largest of space.block_size) = 2048" in text
    assert "budget.eval_every_tokens (1024)" in text  # tiny_job evaluates every 1024 tokens
    fits = write_job(tmp_path / "fits.yaml", tiny_job(tmp_path, model=model))  # 8 x the default 128 = 1024
    assert load_spec(fits).budget.eval_every_tokens == 1024
    text = refusal(tmp_path, model={**model, "batch_size": 9})
    assert "batch_size 9 (model.batch_size) x block_size 128 (the trial default) = 1152 tokens" in text


def test_a_misspelt_size_is_named_before_the_default_is_blamed(tmp_path: Path) -> None:
    text = refusal(tmp_path, model={"batch_sze": 8, "block_size": 32})
    assert 'unknown key "model.batch_sze"' in text and 'Did you mean "batch_size"?' in text
    assert "less than one batch" not in text


def test_an_experiment_saved_before_the_check_stays_readable(tmp_path: Path) -> None:
    # load_saved_spec validates the spec model only: specs of finished experiments and replayed tables still load.
    spec = JobSpec.model_validate(tiny_job(tmp_path, budget={"max_tokens": 100, "eval_every_tokens": 100}))
    assert spec.budget.max_tokens == 100


def test_a_trial_config_says_what_is_below_one_batch() -> None:
    def problems(**config: Any) -> list[str]:
        return parse_trial_config(
            {"dataset_dir": "d", "batch_size": 8, "block_size": 32, **config}
        ).budget_below_a_batch()

    assert problems(max_tokens=256, eval_every_tokens=256) == []
    assert problems(max_tokens=255) == [
        "max_tokens (255) is less than one batch, batch_size 8 x block_size 32 = 256 tokens, so training would be "
        "a single step on part of a batch; set max_tokens to at least 256"
    ]
    (eval_problem,) = problems(max_tokens=10_000, eval_every_tokens=100)
    assert eval_problem.startswith("eval_every_tokens (100) is less than one batch") and "at least 256" in eval_problem
