"""Pre-flight: everything a spec can get wrong is refused before Ray starts, naming the key.

Points to evaluate, every value a dimension produces, block sizes against the prepared dataset, warm-start
configs, numbers out of range, ASHA rung counts, small budgets, grid x num_samples; and a config the trainer
refuses inside a trial is not retried. Most tests call load_spec or tune_jobs.preflight directly (no Ray).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT
from data_pipeline.prepare import prepare_dataset
from support.jobs import tiny_job, write_job
from textune.errors import TextuneError
from tune_jobs.preflight import check_dataset, warm_start_points
from tune_jobs.space import Dimension
from tune_jobs.spec import MAX_RUNGS, JobSpec, load_spec

QUICKSTART = REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"
# tiny_job's model without the keys these tests search.
MODEL = {"block_size": 32, "batch_size": 8, "eval_max_blocks": 4, "sample_tokens": 0}
LR = {"loguniform": [1.0e-3, 3.0e-2]}
HEADS = {"choice": [2, 4]}


def refusal(tmp_path: Path, overrides: tuple[str, ...] = (), **changes: Any) -> str:
    """The paragraph load_spec refuses tiny_job (with ``changes`` and ``--set overrides``) with."""
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path, **changes))
    with pytest.raises(TextuneError) as info:
        load_spec(path, overrides)
    text = info.value.paragraph()
    assert str(path) in text
    return text


def points_spec(
    points: list[dict[str, Any]], algorithm: str = "hyperopt", space: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "model": MODEL,
        "space": space or {"lr": LR, "n_heads": HEADS},
        "search": {"algorithm": algorithm, "points_to_evaluate": points},
    }


@pytest.mark.parametrize(
    "points, fragments",
    [
        # Issue 13.A.1: Ray's "Did not find category with value 3".
        ([{"lr": 0.003, "n_heads": 3}], ["search.points_to_evaluate[0].n_heads = 3", "choice values [2, 4]"]),
        # Issue 13.A.2: HyperOpt's "GarbageCollected switch argument".
        ([{"lr": 0.003}], ["search.points_to_evaluate[0].n_heads is missing"]),
        ([{"lr": 0.003, "n_heads": 2}, {"n_heads": 2}], ["search.points_to_evaluate[1].lr is missing"]),
        ([{"lr": 0.3, "n_heads": 2}], ["search.points_to_evaluate[0].lr = 0.3", "lies outside loguniform"]),
        ([{"lr": "fast", "n_heads": 2}], ["search.points_to_evaluate[0].lr = 'fast'", "is not a number"]),
        ([{"lr": 0.003, "n_heads": True}], ["search.points_to_evaluate[0].n_heads = True", "choice values"]),
        (
            [{"lr": 0.003, "n_head": 2}],
            ["search.points_to_evaluate[0].n_head is not a searched key", 'Did you mean "n_heads"?'],
        ),
        (
            [{"lr": 0.003, "n_heads": 2, "dropout": 0.1}],
            ["points_to_evaluate[0].dropout is not a searched key", "set it under model:"],
        ),
    ],
)
def test_points_to_evaluate_the_space_cannot_produce_are_refused(
    tmp_path: Path, points: list[dict[str, Any]], fragments: list[str]
) -> None:
    text = refusal(tmp_path, **points_spec(points))
    for fragment in fragments:
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize(
    "space, point, fragment",
    [
        ({"n_layers": {"randint": [1, 4]}}, {"n_layers": 2.5}, "n_layers = 2.5 is not a whole number"),
        ({"n_layers": {"randint": [1, 4]}}, {"n_layers": 5}, "n_layers = 5 lies outside randint [1, 4]"),
        ({"weight_decay": {"quniform": [0.0, 0.1, 0.02]}}, {"weight_decay": 0.03}, "is not a multiple of q = 0.02"),
        ({"weight_decay": {"uniform": [0.0, 0.1]}}, {"weight_decay": -0.01}, "lies outside uniform [0.0, 0.1]"),
    ],
)
def test_points_are_checked_against_every_kind(
    tmp_path: Path, space: dict[str, Any], point: dict[str, Any], fragment: str
) -> None:
    assert fragment in refusal(tmp_path, **points_spec([point], "random", space))


def test_points_the_space_produces_pass_and_may_leave_grid_keys_out(tmp_path: Path) -> None:
    space = {
        "lr": LR,
        "n_layers": {"randint": [1, 4]},
        "weight_decay": {"quniform": [0.0, 0.1, 0.01]},
        "n_heads": {"grid": [2, 4]},
    }
    # Values as they come back from a results table: whole floats for integers, products of q.
    points = [
        {"lr": 0.03, "n_layers": 4.0, "weight_decay": 3 * 0.01, "n_heads": 4},
        {"lr": 1.0e-3, "n_layers": 1, "weight_decay": 0.07},
    ]  # n_heads left out: crossed with its grid
    spec = load_spec(write_job(tmp_path / "job.yaml", tiny_job(tmp_path, **points_spec(points, "random", space))))
    assert spec.search.points_to_evaluate == points


def test_every_value_a_dimension_produces_is_checked(tmp_path: Path) -> None:
    # Issue 13.A.3: the bounds 1 and 3 are whole, but quniform [1, 3, 0.5] gives trials n_layers = 1.5.
    text = refusal(tmp_path, model=MODEL, space={"lr": LR, "n_layers": {"quniform": [1, 3, 0.5]}})
    assert "space.n_layers = 1.5 (quniform [1.0, 3.0, 0.5])" in text and '"n_layers" = 1.5 is invalid' in text
    # A whole step produces whole numbers only.
    load_spec(
        write_job(
            tmp_path / "ok.yaml", tiny_job(tmp_path, model=MODEL, space={"lr": LR, "n_layers": {"quniform": [1, 3, 1]}})
        )
    )
    text = refusal(tmp_path, model=MODEL, space={"n_layers": {"uniform": [1, 3]}})
    assert "space.n_layers = 1.74 (uniform [1.0, 3.0])" in text
    # HyperOpt rounds to the nearest multiple of q, here 0.0 below the lower bound: lr must be above 0.
    text = refusal(tmp_path, space={"lr": {"quniform": [0.05, 0.3, 0.1]}})
    assert "space.lr = 0.0" in text and '"lr" = 0.0 is invalid' in text
    # A rule between two keys: rotary positions need an even head_dim, and randint [16, 33] gives 17.
    text = refusal(
        tmp_path,
        model={**MODEL, "n_heads": 2},
        space={"positions": {"choice": ["learned", "rotary"]}, "head_dim": {"randint": [16, 33]}},
    )
    assert "space.head_dim = 17" in text and "space.positions = 'rotary'" in text


@pytest.mark.parametrize(
    "dimension, produced",
    [
        ({"quniform": [1, 3, 0.5]}, [1.0, 1.5, 2.0, 2.5, 3.0]),
        ({"quniform": [0.05, 0.3, 0.1]}, [0.0, 0.1, 0.2, 0.30000000000000004]),
        ({"randint": [1, 4]}, [1, 2, 3, 4]),
        ({"randint": [0, 10**9]}, [0, 1, 10**9 - 1, 10**9]),
        ({"uniform": [1, 3]}, [1.0, 1.74, 3.0]),
        ({"loguniform": [1e-4, 1e-2]}, [1e-4, 0.0005495, 1e-2]),
        ({"choice": ["a", None]}, ["a", None]),
    ],
)
def test_produced_values(dimension: dict[str, Any], produced: list[Any]) -> None:
    assert Dimension.model_validate(dimension).produced_values() == produced


@pytest.mark.parametrize(
    "values, fragment",
    [
        # Issue 14.C: all trials ran, then results.parquet could not be written (ArrowInvalid).
        ([1, "two", 3.5, None, True, [1, 2], {"k": "v"}], "choice value [1, 2] is a list"),
        ([1, "two", 3.5, None, True], "choice values mix boolean and number and string"),
        ([1, True], "mix boolean and number"),
        ([{"k": "v"}], "is a mapping"),
        ([0.1, float("nan")], "choice value nan is not a finite number"),
    ],
)
def test_a_choice_of_mixed_types_is_refused(tmp_path: Path, values: list[Any], fragment: str) -> None:
    text = refusal(tmp_path, space={"lr": LR, "ignored_x": {"choice": values}})
    assert '"space.ignored_x"' in text and fragment in text, text


@pytest.mark.parametrize("values", [[1, 2.5], [None, 8], [True, False], ["a", None]])
def test_a_choice_of_one_type_and_null_is_fine(values: list[Any]) -> None:
    assert Dimension.model_validate({"choice": values}).values == values


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ("resources.cpu=.inf", '"resources.cpu" = inf is invalid: expected a finite number'),
        ("resources.gpu=.inf", '"resources.gpu" = inf is invalid: expected a finite number'),
        ("resources.cpu=100000", '"resources.cpu" = 100000'),
        ("seed=-1", '"seed" = -1 is invalid: expected a number >= 0'),
        ("seed=4294967296", '"seed" = 4294967296 is invalid: expected a number <= 4294967295'),
        ("budget.time_budget_s=.nan", '"budget.time_budget_s" = nan'),
        ("budget.max_tokens=10000000000000000", '"budget.max_tokens"'),
        ("scheduler.reduction_factor=.inf", '"scheduler.reduction_factor" = inf'),
        ("num_samples=1000000", '"num_samples" = 1000000'),
        ("max_failures=-1", '"max_failures" = -1'),
        ("model.weight_decay=.inf", '"model.weight_decay" = inf is invalid: expected a finite number'),
        ("space.seed={grid: [1, -1]}", '"seed" = -1'),
        ("model.n_layers=100000", '"model.n_layers" = 100000 is invalid: expected a number <= 1024'),
        ("space.grad_accum={choice: [1, 99999999999]}", '"grad_accum" = 99999999999'),
    ],
)
def test_numbers_out_of_range_are_refused(tmp_path: Path, setting: str, fragment: str) -> None:
    assert fragment in refusal(tmp_path, overrides=(setting,))


def test_the_largest_seed_and_a_fractional_cpu_are_fine(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path / "job.yaml", tiny_job(tmp_path)), ["seed=4294967295", "resources.cpu=0.5"])
    assert (spec.seed, spec.resources.cpu, spec.resources.threads) == (2**32 - 1, 0.5, 1)


@pytest.mark.parametrize("length, accepted", [(1, True), (100, True), (101, False), (300, False)])
def test_experiment_names_follow_the_whole_rule(tmp_path: Path, length: int, accepted: bool) -> None:
    path = write_job(tmp_path / "job.yaml", tiny_job(tmp_path))
    if accepted:
        assert load_spec(path, name="n" * length).name == "n" * length
        return
    with pytest.raises(TextuneError) as info:
        load_spec(path, name="n" * length)
    assert "1 to 100 characters" in info.value.message and f"(this one has {length})" in info.value.message


def test_asha_rungs_are_bounded(tmp_path: Path) -> None:
    # Issue 14.B.6: 1.0000001 made about 13.9 million rungs, minutes of set-up and 1.5 MB/s of output.
    started = time.monotonic()
    text = refusal(tmp_path, overrides=("scheduler.kind=asha", "scheduler.reduction_factor=1.0000001"))
    assert time.monotonic() - started < 1
    assert "scheduler.reduction_factor (1.0000001) gives ASHA 21,972,247 rungs" in text
    assert f"at most {MAX_RUNGS} are allowed: set reduction_factor to 1.123 or more" in text
    # grace 1024, factor 2: 2**19 * 1.5 times the grace period is 20 rungs, twice that 21.
    asha = {"kind": "asha", "grace_period_tokens": 1024, "reduction_factor": 2}
    largest = 1024 * 2**19 * 3 // 2
    spec = JobSpec.model_validate(tiny_job(tmp_path, scheduler=asha, budget={"max_tokens": largest}))
    assert spec.rung_count == MAX_RUNGS
    assert "gives ASHA 21 rungs" in refusal(tmp_path, scheduler=asha, budget={"max_tokens": 2 * largest})
    # FIFO has no rungs to count.
    JobSpec.model_validate(tiny_job(tmp_path, scheduler={"kind": "fifo", "reduction_factor": 1.0000001}))


def test_a_small_budget_reports_every_violated_constraint_at_once() -> None:
    # Issue 14.F: shrinking the quickstart's budget took three failed runs, one error each.
    with pytest.raises(TextuneError) as info:
        load_spec(QUICKSTART, ["budget.max_tokens=20000"])
    text = info.value.message
    assert "2 problems: (1) budget.eval_every_tokens (50000) exceeds budget.max_tokens (20000)" in text
    assert "(2) scheduler.grace_period_tokens (50000) exceeds budget.max_tokens (20000)" in text
    assert "leave it out and it follows budget.max_tokens" in text


def test_evaluation_and_first_rung_follow_max_tokens_unless_set(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(tiny_job(tmp_path, budget={"max_tokens": 20000}, scheduler={"kind": "asha"}))
    assert (spec.budget.eval_every_tokens, spec.grace_period_tokens) == (1250, 1250)  # 20000 / 16
    spec = JobSpec.model_validate(tiny_job(tmp_path, budget={"max_tokens": 20001}))
    assert spec.budget.eval_every_tokens == 1251  # rounded up: never more than 16 evaluations
    spec = JobSpec.model_validate(tiny_job(tmp_path, budget={"max_tokens": 5}))
    assert spec.budget.eval_every_tokens == 1
    spec = JobSpec.model_validate(tiny_job(tmp_path, budget={"max_tokens": 20000, "eval_every_tokens": 5000}))
    assert spec.budget.eval_every_tokens == 5000


def test_grid_times_num_samples_is_refused_with_the_seed_grid_to_use(tmp_path: Path) -> None:
    # Issue 13.D.12: every grid point ran twice, bit-identically.
    grid = {"lr": {"grid": [0.01, 0.02]}}
    text = refusal(tmp_path, space=grid, search={"algorithm": "grid"}, num_samples=2)
    assert "num_samples (2) would run every grid point 2 times with the same training seed" in text
    assert "add seed: {grid: [0, 1, ...]} to space:" in text
    assert "num_samples (3)" in refusal(tmp_path, space=grid, search={"algorithm": "random"}, num_samples=3)
    seeds = JobSpec.model_validate(
        tiny_job(tmp_path, space={**grid, "seed": {"grid": [0, 1]}}, search={"algorithm": "grid"}, num_samples=1)
    )
    assert "add more seeds to space.seed's grid" in refusal(
        tmp_path, space={**grid, "seed": {"grid": [0, 1]}}, search={"algorithm": "grid"}
    )
    assert seeds.expected_trials == 4
    # A sampled dimension makes every sample differ; each point to evaluate counts as one sample.
    sampled = JobSpec.model_validate(
        tiny_job(
            tmp_path, space={**grid, "dropout": {"uniform": [0.0, 0.1]}}, search={"algorithm": "random"}, num_samples=2
        )
    )
    assert sampled.expected_trials == 4
    JobSpec.model_validate(
        tiny_job(
            tmp_path, space=grid, num_samples=2, search={"algorithm": "grid", "points_to_evaluate": [{"lr": 0.01}]}
        )
    )


def test_a_val_split_shorter_than_one_block_is_refused_before_ray(tmp_path: Path) -> None:
    # Issue 13.A.4: a 300-character corpus with block_size 32; every trial failed and was retried.
    corpus = tmp_path / "small.txt"
    corpus.write_text(("To be, or not to be, that is the question. " * 8)[:300], encoding="utf-8")
    spec = JobSpec.model_validate(tiny_job(tmp_path, data={"source": str(corpus)}))
    with pytest.raises(TextuneError) as info:
        check_dataset(spec, prepare_dataset(spec.data))
    text = info.value.paragraph()
    assert text.startswith('model.block_size = 32 does not fit the prepared dataset: the "val" split of')
    assert "too few for one block of block_size=32" in text


def test_a_searched_block_size_is_checked_at_its_largest(tmp_path: Path) -> None:
    # Issue 13.A.4: block_size {choice: [32, 4096]} on a 40 KB corpus.
    model = {key: value for key, value in tiny_job(tmp_path)["model"].items() if key != "block_size"}
    job = tiny_job(
        tmp_path,
        data={"source": "synthetic", "synthetic": {"characters": 40000}},
        model=model,
        space={"lr": LR, "block_size": {"choice": [32, 4096]}},
    )
    spec = JobSpec.model_validate(job)
    dataset = prepare_dataset(spec.data)
    with pytest.raises(TextuneError) as info:
        check_dataset(spec, dataset)
    assert info.value.message.startswith("space.block_size = 4096 (choice [32, 4096]) does not fit")
    assert "has 2000 tokens, too few for one block of block_size=4096" in info.value.message
    check_dataset(JobSpec.model_validate({**job, "space": {"lr": LR, "block_size": {"choice": [32, 1024]}}}), dataset)
    split = {"train": 0.996, "val": 0.002, "test": 0.002}  # 80 validation tokens
    unset = JobSpec.model_validate({**job, "space": {"lr": LR}, "data": {**job["data"], "split": split}})
    with pytest.raises(TextuneError, match=r"^block_size = 128 \(the trial default; set model.block_size\)"):
        check_dataset(unset, prepare_dataset(unset.data))


def test_every_searched_fold_is_checked(tmp_path: Path) -> None:
    # 3800 train+val tokens in 10 chunks of about 380; the last chunk straddles the train/val shard edge, so
    # fold 9's validation part holds at most 200 contiguous tokens: a block of 300 fits fold 0 but not fold 9.
    job = tiny_job(
        tmp_path,
        data={"source": "synthetic", "synthetic": {"characters": 4000}},
        model={**MODEL, "block_size": 300, "num_folds": 10},
        space={"lr": LR, "fold": {"grid": [0, 9]}},
    )
    spec = JobSpec.model_validate(job)
    dataset = prepare_dataset(spec.data)
    with pytest.raises(TextuneError) as info:
        check_dataset(spec, dataset)
    assert info.value.message.startswith("model.block_size = 300 does not fit the prepared dataset: fold 9 of 10")
    check_dataset(JobSpec.model_validate({**job, "space": {"lr": LR, "fold": {"grid": [0, 1]}}}), dataset)


def test_warm_start_configs_are_checked(finished_experiment: Path, tmp_path: Path) -> None:
    spec = load_spec(QUICKSTART)
    previous = {"warm_start_from": str(finished_experiment), "warm_start_top_k": 2}
    warm = spec.model_copy(update={"search": spec.search.model_copy(update=previous)})
    points = warm_start_points(warm)
    assert len(points) == 2 and all(set(point) == set(spec.space) for point in points)
    narrow = warm.model_copy(update={"space": {**spec.space, "lr": Dimension(loguniform=[1.0e-5, 1.0e-4])}})
    with pytest.raises(TextuneError) as info:
        warm_start_points(narrow)
    text = info.value.paragraph()
    assert text.startswith("search.warm_start_from[0].lr = ") and "lies outside loguniform [1e-05, 0.0001]" in text
    assert f"{finished_experiment}'s best trial number 1" in text and "widen space:" in text


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_a_trial_whose_config_the_trainer_refuses_ends_once_without_retries(tmp_path: Path) -> None:
    """The net behind pre-flight (a dataset changed after it, a spec built in code): Ray must not retry.

    Starts a one-CPU Ray for one trial (the only way to see Ray's retry decision), so it runs under make test.
    """
    from ray import tune

    from cluster.connection import EMBEDDED, connect
    from tune_jobs.experiment import experiment_at
    from tune_jobs.results.collect import collect
    from tune_jobs.space import to_param_space
    from tune_jobs.spec import fixed_trial_params
    from tune_jobs.trainable import build_trainable

    # 60,000 characters hold 3,000 validation tokens: no block of 4096 fits (run_job would refuse it before Ray).
    spec = JobSpec.model_validate(
        tiny_job(tmp_path, name="refused", model={**MODEL, "block_size": 4096}, num_samples=1, max_failures=2)
    )
    trainable = build_trainable(
        fixed_trial_params(spec, str(prepare_dataset(spec.data))), {"cpu": 1}, spec.storage_options
    )
    with connect(EMBEDDED, num_cpus=1, log_to_driver=False):
        tune.Tuner(
            trainable,
            param_space=to_param_space(spec.space),
            tune_config=tune.TuneConfig(num_samples=1, metric="val_bpc", mode="min"),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=str(tmp_path), verbose=0, failure_config=tune.FailureConfig(max_failures=2)
            ),
        ).fit()
    trial = collect(experiment_at(spec.storage, spec.name), spec).trials.iloc[0]
    assert (trial["status"], trial["failures"], trial["evaluations"]) == ("errored", 0, 1)
    assert "too few for one block of block_size=4096" in trial["error"]


def test_a_trial_asked_for_cuda_where_pytorch_sees_no_gpu_is_refused_like_a_config(tmp_path: Path) -> None:
    """The net behind the spec check (model.device cuda needs resources.gpu): a trial on a node whose PyTorch
    sees no GPU gets the trainer's device refusal from refused_config, so it reports once and Ray does not retry
    it (the path the test above runs through Ray)."""
    import torch

    from tune_jobs.spec import fixed_trial_params
    from tune_jobs.trainable import refused_config

    spec = JobSpec.model_validate(tiny_job(tmp_path, model=MODEL, resources={"cpu": 1, "gpu": 1}))
    config = {**fixed_trial_params(spec, str(prepare_dataset(spec.data))), "lr": 1e-3, "device": "cuda"}
    message = refused_config(config)
    if torch.cuda.is_available():
        assert message is None  # the same config trains where there is a GPU
    else:
        assert message is not None and 'trial config key "device" asks for cuda' in message, message
        assert "no CUDA device" in message and "Use cpu" in message
