"""Searches on a real Ray: ASHA stopping at token rungs, HyperOpt learning from failed trials, trial counts of
every search algorithm, the results (best/, Parquet, CLI) and TensorBoard's HParams API on a real server.

One Ray session serves the whole module; one ASHA + HyperOpt experiment serves the result tests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune
from support.jobs import tiny_job
from support.tensorboard import hparams_experiment, session_groups, tensorboard
from textune.errors import TextuneError
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, Experiment
from tune_jobs.finish import finish_experiment
from tune_jobs.results.table import ExperimentResults
from tune_jobs.results.warm_start import top_configs
from tune_jobs.runner import run_job
from tune_jobs.search import rung_milestones
from tune_jobs.spec import JobSpec

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("shared_module_cache")]

DIVERGING_LR = 1000.0  # plain SGD without clipping overflows at this rate within the first evaluation
FAULT_AT = 512  # an injected exception before the first evaluation: the trial errors out


def run_and_finish(spec: JobSpec) -> tuple[Experiment, ExperimentResults]:
    experiment = run_job(spec)
    return experiment, finish_experiment(experiment, spec)


@pytest.fixture(scope="module")
def asha_search(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobSpec, Experiment, ExperimentResults]:
    """HyperOpt + ASHA over SGD learning rates; the first two points diverge and error out on purpose."""
    job = tiny_job(
        tmp_path_factory.mktemp("storage"),
        name="asha",
        model={**tiny_job(Path())["model"], "optimizer": "sgd", "grad_clip": 0.0},
        space={"lr": {"loguniform": [0.05, 5.0]}, "fault_at_tokens": {"choice": [10**9, FAULT_AT]}},
        search={
            "algorithm": "hyperopt",
            "n_initial_points": 4,
            "points_to_evaluate": [
                {"lr": DIVERGING_LR, "fault_at_tokens": 10**9},
                {"lr": 0.5, "fault_at_tokens": FAULT_AT},
            ],
        },
        scheduler={"kind": "asha", "reduction_factor": 3},
        num_samples=10,
        max_failures=0,
    )  # the injected fault fires before any checkpoint: retries would only repeat it
    spec = JobSpec.model_validate(job)
    return (spec, *run_and_finish(spec))


def test_asha_stops_trials_at_token_rungs(asha_search: tuple[JobSpec, Experiment, ExperimentResults]) -> None:
    spec, _, results = asha_search
    milestones = rung_milestones(spec)
    assert milestones == [1024, 3072, 9216]
    trials = results.trials
    stopped = trials[trials["status"] == "early_stopped"]
    assert len(stopped) >= 1, trials[["status", "tokens"]]
    # A stopped trial's last report is the evaluation at which it reached a rung below the full budget.
    assert set(stopped["tokens"]) <= set(milestones[:-1]), stopped["tokens"]
    assert (trials[trials["status"] == "completed"]["tokens"] == spec.budget.max_tokens).all()


def test_failed_trials_are_recorded_and_the_search_goes_on(
    asha_search: tuple[JobSpec, Experiment, ExperimentResults],
) -> None:
    spec, _, results = asha_search
    trials = results.trials
    assert len(trials) == spec.num_samples
    diverged = trials[trials["config/lr"] == DIVERGING_LR]
    assert list(diverged["status"]) == ["diverged"] and math.isinf(diverged["last_val_bpc"].iloc[0])
    errored = trials[trials["config/fault_at_tokens"] == FAULT_AT]
    assert (errored["status"] == "errored").all() and len(errored) >= 1
    # Everything after the two failures still ran and was scored.
    assert trials["best_metric"].map(math.isfinite).sum() >= spec.num_samples - len(errored) - 1


def test_results_layout_and_best_checkpoint(asha_search: tuple[JobSpec, Experiment, ExperimentResults]) -> None:
    spec, experiment, results = asha_search
    root = Path(experiment.root)
    trials = pd.read_parquet(root / RESULTS_FILE)
    evaluations = pd.read_parquet(root / EVALUATIONS_FILE)
    assert len(trials) == spec.num_samples and trials["best_metric"].is_monotonic_increasing
    assert len(evaluations) == trials["evaluations"].sum()
    assert {"trial_id", "tokens", "val_bpc", "val_ppl", "status"} <= set(evaluations.columns)
    best = results.best()
    assert best["best_metric"] == evaluations[evaluations["trial_id"] == best["trial_id"]]["val_bpc"].min()
    saved = json.loads((root / BEST_DIR / "meta.json").read_text())
    assert math.isclose(saved["val_bpc"], best["best_metric"])
    assert (root / Path(best["trial_dir"]).name).is_dir()


def test_best_export_and_generate_through_the_cli(
    asha_search: tuple[JobSpec, Experiment, ExperimentResults], tmp_path: Path
) -> None:
    _, experiment, results = asha_search
    shown = run_textune("best", experiment.root, "--json")
    assert shown.returncode == 0, shown.stderr
    best = json.loads(shown.stdout)
    assert best["trial_id"] == results.best()["trial_id"] and best["gap_to_floor"] > 0

    out = tmp_path / "export" / "trials.parquet"
    exported = run_textune("export", experiment.root, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(pd.read_parquet(out)) == len(results.trials)
    assert len(pd.read_parquet(out.with_suffix(".evaluations.parquet"))) == len(results.evaluations)
    assert_user_error(run_textune("export", experiment.root, "--out", str(out)), "already exist", "--force")

    sampled = run_textune("generate", experiment.root, "--max-new-tokens", "20")
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.strip()) >= 10


def test_warm_start_takes_the_top_configs_of_a_previous_experiment(
    asha_search: tuple[JobSpec, Experiment, ExperimentResults],
) -> None:
    spec, experiment, results = asha_search
    top = top_configs(experiment.root, 2, list(spec.space))
    expected = results.trials.head(2)
    assert top == [
        {"lr": row["config/lr"], "fault_at_tokens": row["config/fault_at_tokens"]} for _, row in expected.iterrows()
    ]
    assert top_configs(experiment.root, 2, ["lr", "not_searched_there"]) == []


def test_rerunning_an_experiment_refuses_to_overwrite(
    asha_search: tuple[JobSpec, Experiment, ExperimentResults],
) -> None:
    spec, experiment, _ = asha_search
    with pytest.raises(TextuneError) as info:
        run_job(spec)
    assert f"textune resume {experiment.root}" in info.value.paragraph()
    assert len(pd.read_parquet(Path(experiment.root) / RESULTS_FILE)) == spec.num_samples


@pytest.mark.parametrize(
    "algorithm, space, num_samples, expected",
    [
        ("grid", {"lr": {"grid": [0.003, 0.01, 0.03]}, "dropout": {"grid": [0.0, 0.1]}}, 1, 6),
        ("random", {"lr": {"loguniform": [0.003, 0.03]}, "dropout": {"grid": [0.0, 0.1]}}, 2, 4),
    ],
)
def test_grid_and_random_run_the_expected_trials(
    ray_session: None, tmp_path: Path, algorithm: str, space: dict[str, Any], num_samples: int, expected: int
) -> None:
    job = tiny_job(
        tmp_path,
        name=algorithm,
        space=space,
        num_samples=num_samples,
        search={"algorithm": algorithm},
        budget={"max_tokens": 1024, "eval_every_tokens": 1024},
    )
    spec = JobSpec.model_validate(job)
    assert spec.expected_trials == expected
    _, results = run_and_finish(spec)
    assert len(results.trials) == expected
    assert (results.trials["status"] == "completed").all()
    configs = {
        tuple(sorted((k, v) for k, v in row.items() if k.startswith("config/"))) for _, row in results.trials.iterrows()
    }
    assert len(configs) == expected, "every trial got its own configuration"


@pytest.fixture()
def tensorboard_url(asha_search: tuple[JobSpec, Experiment, ExperimentResults]) -> Iterator[str]:
    with tensorboard(Path(asha_search[1].root)) as url:
        yield url


def test_hparams_dashboard_lists_every_trial_with_status(
    asha_search: tuple[JobSpec, Experiment, ExperimentResults], tensorboard_url: str
) -> None:
    spec, _, results = asha_search
    deadline = time.monotonic() + 60
    while True:  # TensorBoard loads the event files in the background after it starts serving
        experiment = hparams_experiment(tensorboard_url)
        groups = session_groups(tensorboard_url, [*spec.space, "trial_status"], ("val_bpc", "val_ppl", "best_val_bpc"))
        if len(groups) >= len(results.trials) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {info["name"] for info in experiment["hparamInfos"]} == {*spec.space, "trial_status", "trial_error"}
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} == {"val_bpc", "val_ppl", "best_val_bpc"}
    # A session is the run TRIAL_DIR/hparams-STATUS (tune_jobs.hparams): keyed by its trial's directory.
    sessions = {Path(group["name"]).parent.name: group for group in groups}
    expected = {
        Path(d).name: status for d, status in zip(results.trials["trial_dir"], results.trials["status"], strict=True)
    }
    assert set(sessions) == set(expected)
    for name, group in sessions.items():
        assert group["hparams"]["trial_status"] == expected[name]
        assert group["name"] == f"{name}/hparams-{expected[name]}"
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        if expected[name] in ("completed", "early_stopped"):
            assert metrics["best_val_bpc"] <= metrics["val_bpc"] and metrics["val_ppl"] > 1
        session_status = group["sessions"][0]["status"]
        assert session_status == ("STATUS_FAILURE" if expected[name] in ("diverged", "errored") else "STATUS_SUCCESS")
