"""The CLI itself: version, help on every command, one-paragraph errors."""

from __future__ import annotations

import pydantic
import pytest

from conftest import run_textune
from textune import __version__
from textune.config import StrictModel, apply_overrides, validate
from textune.errors import TextuneError
from tune_jobs.cli.main import COMMANDS


def test_version() -> None:
    result = run_textune("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = run_textune(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_unknown_command_suggests_the_closest() -> None:
    result = run_textune("dta") if "data" in COMMANDS else run_textune("zzz")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no command" in result.stderr


class Inner(StrictModel):
    max_tokens: int
    eval_every_tokens: int = 10


class Outer(StrictModel):
    name: str
    budget: Inner


def test_unknown_key_gets_did_you_mean() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Outer, {"name": "x", "budget": {"max_tokens": 5, "eval_every_token": 3}}, "job spec j.yaml")
    text = info.value.paragraph()
    assert "budget.eval_every_token" in text
    assert 'Did you mean "eval_every_tokens"?' in text
    assert "\n" not in text


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Outer, {"name": "x", "budget": {"max_tokens": "lots"}}, "job spec j.yaml")
    assert '"budget.max_tokens"' in info.value.paragraph()


def test_overrides_set_nested_keys_and_parse_values() -> None:
    data = apply_overrides({"budget": {"max_tokens": 1}}, ["budget.max_tokens=200", "name=run-a", "x.y=[1, 2]"])
    assert data == {"budget": {"max_tokens": 200}, "name": "run-a", "x": {"y": [1, 2]}}
    with pytest.raises(TextuneError):
        apply_overrides({}, ["novalue"])


class Split(StrictModel):
    train: float
    val: float

    @pydantic.model_validator(mode="after")
    def _sums_to_one(self) -> "Split":
        if self.train + self.val != 1:
            raise ValueError("train + val must sum to 1")
        return self


def test_cross_key_check_reads_as_one_sentence() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Split, {"train": 0.5, "val": 0.2}, "job spec j.yaml")
    assert info.value.paragraph().startswith("job spec j.yaml: train + val must sum to 1.")
