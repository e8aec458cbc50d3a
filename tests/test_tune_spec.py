"""Job specs and search spaces: everything that must fail (or compile) before a single trial starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import assert_user_error, run_textune
from support.jobs import CONFIGS, tiny_job, write_job
from textune.errors import TextuneError
from tune_jobs.search import build_search_alg, rung_milestones
from tune_jobs.space import to_param_space
from tune_jobs.spec import JobSpec, load_spec


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(config: Path) -> None:
    spec = load_spec(config)
    assert spec.expected_trials >= 1
    assert to_param_space(spec.space).keys() == spec.space.keys()


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"budgett": {}}, ['unknown key "budgett"', 'Did you mean "budget"?']),
        (
            {"scheduler": {"kind": "asha", "grace_period": 10}},
            ['"scheduler.grace_period"', 'Did you mean "grace_period_tokens"?'],
        ),
        ({"num_samples": "many"}, ['"num_samples"']),
        ({"space": {"lr": {"uniform": [0.1, 0.01]}}}, ["space.lr", "empty or inverted"]),
        ({"space": {"lr": {"uniform": [0.1, 0.1]}}}, ["space.lr", "empty or inverted"]),
        ({"space": {"lr": {"loguniform": [0.0, 0.1]}}}, ["space.lr", "must lie above 0"]),
        ({"space": {"lr": {"quniform": [0.0, 1.0]}}}, ["space.lr", "[low, high, q]"]),
        ({"space": {"lr": {"choice": []}}}, ["space.lr", "at least one value"]),
        ({"space": {"lr": {"uniform": [0.1, 0.2], "choice": [1]}}}, ["space.lr", "exactly one of"]),
        ({"space": {"lr": {"normal": [0, 1]}}}, ['unknown key "space.lr.normal"']),
        ({"space": {}}, ["search space is empty"]),
        ({"name": "../escape"}, ['"name"', "no '/', '..'"]),
        ({"name": "/abs/path"}, ['"name"', "no '/', '..'"]),
        (
            {"budget": {"max_tokens": 100, "eval_every_tokens": 1000}},
            ["budget.eval_every_tokens (1000) exceeds budget.max_tokens"],
        ),
        ({"resources": {"cpu": 1, "gpu": 1.5}}, ["resources.gpu", "whole number"]),
        ({"search": {"algorithm": "hyperopt"}, "space": {"lr": {"grid": [0.1, 0.2]}}}, ["hyperopt cannot search grid"]),
        ({"search": {"algorithm": "grid"}}, ["grid enumerates grid dimensions only", "lr"]),
        ({"model": {"lr": 0.1, "n_layers": 1}}, ["lr: fixed under model: and searched under space:"]),
        ({"model": {"max_tokens": 5}}, ["max_tokens cannot be set under model:"]),
        ({"model": {"n_layer": 2}}, ['unknown key "model.n_layer"', 'Did you mean "n_layers"?']),
        ({"space": {"grad_accum": {"randint": [0, 2]}}}, ['"grad_accum" = 0', "expected a number >= 1"]),
        ({"space": {"family": {"choice": ["transformer", "rnn"]}}}, ['"family"', "rnn"]),
    ],
)
def test_bad_specs_fail_naming_the_field(tmp_path: Path, change: dict[str, Any], fragments: list[str]) -> None:
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path, **change))
    with pytest.raises(TextuneError) as info:
        load_spec(path)
    text = info.value.paragraph()
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_set_overrides_any_key_and_is_validated(tmp_path: Path) -> None:
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path))
    spec = load_spec(
        path, ["budget.max_tokens=4096", "scheduler.kind=asha", "space.lr.loguniform=[0.01, 0.1]"], name="renamed"
    )
    assert (spec.budget.max_tokens, spec.scheduler.kind, spec.name) == (4096, "asha", "renamed")
    assert spec.space["lr"].values == [0.01, 0.1]
    with pytest.raises(TextuneError, match="num_sample"):
        load_spec(path, ["num_sample=3"])


@pytest.mark.parametrize(
    "space, samples, expected",
    [
        ({"lr": {"grid": [0.1, 0.2, 0.3]}, "dropout": {"grid": [0.0, 0.1]}, "seed": {"grid": [0, 1]}}, 1, 12),
        ({"lr": {"loguniform": [0.001, 0.1]}}, 5, 5),
        ({"lr": {"loguniform": [0.001, 0.1]}, "dropout": {"grid": [0.0, 0.1]}}, 3, 6),
    ],
)
def test_expected_trial_counts(tmp_path: Path, space: dict[str, Any], samples: int, expected: int) -> None:
    job = tiny_job(tmp_path, space=space, num_samples=samples)
    assert JobSpec.model_validate({**job, "search": {"algorithm": "random"}}).expected_trials == expected


def test_every_kind_compiles_to_a_space_hyperopt_accepts(tmp_path: Path) -> None:
    space = {
        "lr": {"loguniform": [1e-3, 1e-1]},
        "dropout": {"uniform": [0.0, 0.2]},
        "weight_decay": {"quniform": [0.0, 0.1, 0.01]},
        "grad_accum": {"randint": [1, 3]},
        "mlp_ratio": {"choice": [2, 4]},
    }
    spec = JobSpec.model_validate(tiny_job(tmp_path, space=space, search={"algorithm": "hyperopt"}))
    searcher = build_search_alg(spec, points_to_evaluate=[], max_concurrent=2).searcher
    assert searcher.set_search_properties(spec.metric, spec.mode, to_param_space(spec.space))
    suggested = [searcher.suggest(f"t{i}") for i in range(20)]
    assert {s["grad_accum"] for s in suggested} <= {1, 2, 3}
    assert 3 in {s["grad_accum"] for s in suggested}, "randint's upper bound is inclusive"
    assert all(1e-3 <= s["lr"] <= 1e-1 and s["mlp_ratio"] in (2, 4) for s in suggested)
    assert all(abs(s["weight_decay"] / 0.01 - round(s["weight_decay"] / 0.01)) < 1e-9 for s in suggested)


def test_the_space_grammar_example_is_a_space_a_job_accepts(tmp_path: Path) -> None:
    """tune_jobs/space.py's docstring example (issue 16: it once used keys the trial config refuses)."""
    import tune_jobs.space

    example = tune_jobs.space.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    space = yaml.safe_load(example)
    assert list(space) == ["lr", "dropout", "weight_decay", "n_layers", "head_dim", "batch_size"]
    model = {key: value for key, value in tiny_job(tmp_path)["model"].items() if key not in space}
    job = tiny_job(tmp_path, model=model, space=space, search={"algorithm": "random"})
    spec = load_spec(write_job(tmp_path / "job.yaml", job))  # every value checked against the trial config
    assert set(to_param_space(spec.space)) == set(space)


def test_asha_rungs_are_token_counts(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(tiny_job(tmp_path, scheduler={"kind": "asha", "reduction_factor": 3}))
    assert rung_milestones(spec) == [1024, 3072, 9216]


@pytest.mark.slow
def test_cli_rejects_a_bad_spec_before_starting_anything(tmp_path: Path) -> None:
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path, num_samples=0))
    result = run_textune("run", str(path))
    assert_user_error(result, "num_samples", str(path))
    assert not (tmp_path / "tiny").exists()
    missing = run_textune("run", str(tmp_path / "nope.yaml"))
    assert_user_error(missing, "does not exist")
    assert_user_error(run_textune("run", str(path), "--set", "num_samples=2", "--name", "../up"), "name")
    assert_user_error(run_textune("best", str(tmp_path)), "not a textune experiment")


@pytest.mark.slow
def test_gpu_job_on_a_machine_without_gpus_fails_fast(tmp_path: Path) -> None:
    spec_file = write_job(
        tmp_path / "gpu-job.yaml", tiny_job(tmp_path / "results", name="needs-gpu", resources={"cpu": 1, "gpu": 1})
    )
    started = time.monotonic()
    result = run_textune("run", str(spec_file), timeout=120)
    # Found before an embedded Ray starts: the error is the only output.
    assert_user_error(result, "1 GPU(s)", "the largest node has 0 GPU(s)", "resources.gpu")
    assert time.monotonic() - started < 60
    assert not (tmp_path / "results" / "needs-gpu" / "results.parquet").exists()
