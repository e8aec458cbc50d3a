"""The wsd schedule and annealed rung evaluations: the lr curve, the exact cooldown branch, its costs, its
checkpoints, the rungs a spec derives, and the bad inputs refused before Ray starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT, assert_user_error, run_textune
from models.checkpoint import ANNEALED_MODEL, load_checkpoint
from models.config import TrialConfig, parse_trial_config
from models.generate import load_model
from models.optim import lr_at
from models.run_dir import checkpoint_to_resume, train_in_run_dir
from models.trial import check_resumable, run_trial
from support.models import FAMILIES, RecordingReporter, read_metrics, tiny_config
from textune.errors import TextuneError
from tune_jobs.search import rung_milestones
from tune_jobs.spec import fixed_trial_params, load_spec

QUICKSTART = REPO_ROOT / "tune_jobs" / "configs" / "quickstart.yaml"


class StateReporter(RecordingReporter):
    """Also keeps every checkpoint's state and metadata (read before the trial deletes the directory)."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        super().report(metrics, checkpoint_dir)
        if checkpoint_dir is not None:
            self.checkpoints.append(load_checkpoint(checkpoint_dir))


def schedule(**changes: Any) -> TrialConfig:
    """A config whose steps are 1 token, so lr_at is read at every token count."""
    return parse_trial_config(
        {
            "dataset_dir": "d",
            "batch_size": 1,
            "block_size": 2,
            "max_tokens": 1000,
            "lr": 1.0,
            "warmup_tokens": 0,
            **changes,
        }
    )


@pytest.mark.parametrize(
    "shape, tokens, lr",
    [
        ("linear", 0, 1.0),
        ("linear", 799, 1.0),  # the stable phase, up to the cooldown
        ("linear", 800, 1.0),
        ("linear", 900, 0.5),
        ("linear", 950, 0.25),  # the last 20% fall in a line
        ("1-sqrt", 850, 0.5),
        ("1-sqrt", 900, 1 - math.sqrt(0.5)),
        ("1-sqrt", 1000, 0.0),  # 1 - sqrt(progress)
    ],
)
def test_wsd_holds_the_lr_then_cools_down_to_zero_over_the_last_cooldown_fraction(
    shape: str, tokens: int, lr: float
) -> None:
    assert math.isclose(
        lr_at(tokens, schedule(lr_schedule="wsd", cooldown_fraction=0.2, cooldown_shape=shape)), lr, abs_tol=1e-12
    )


def test_wsd_warms_up_like_cosine_and_cosine_stays_the_default() -> None:
    wsd, cosine = schedule(lr_schedule="wsd", warmup_tokens=100), schedule(warmup_tokens=100)
    assert cosine.lr_schedule == "cosine"
    # a step is 2 tokens: warmup reaches lr at its last step
    assert (
        [lr_at(t, wsd) for t in range(100)]
        == [lr_at(t, cosine) for t in range(100)]
        == [(t + 2) / 102 for t in range(100)]
    )
    # cosine: halfway through its decay it is halfway between lr and the floor (min_lr_ratio 0.1).
    assert math.isclose(lr_at(100 + 450, cosine), 0.55)
    assert lr_at(550, wsd) == 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_a_cooldown_branch_leaves_the_run_bit_identical_and_costs_tokens_but_no_progress(
    shakespeare_dataset: str, family: str
) -> None:
    # Dropout and grad accumulation make every RNG and counter matter.
    config = tiny_config(
        shakespeare_dataset, family, lr_schedule="wsd", cooldown_fraction=0.25, dropout=0.1, grad_accum=2, batch_size=4
    )
    branched, plain = StateReporter(), StateReporter()
    run_trial({**config, "anneal_at_tokens": [2048, 4096]}, branched)
    run_trial(config, plain)

    assert [r["tokens"] for r in branched.reports] == [2048, 4096, 6144, 8192]  # progress leaves cooldowns out
    assert [r["cooldown_tokens"] for r in branched.reports] == [512, 1536, 1536, 1536]  # 25% of 2048, of 4096
    assert [r["cooldown_tokens"] for r in plain.reports] == [0, 0, 0, 0]
    for with_branch, without in zip(branched.reports, plain.reports, strict=True):
        assert with_branch["train_loss"] == without["train_loss"]
        assert (
            with_branch["flops"]
            == without["flops"] * (with_branch["tokens"] + with_branch["cooldown_tokens"]) / with_branch["tokens"]
        )
    # The rungs report the cooled model, better than the stable one beside it; the rest are untouched.
    for rung in branched.reports[:2]:
        assert rung["stable_val_bpc"] < math.inf and rung["val_bpc"] < rung["stable_val_bpc"]
    assert [r["stable_val_bpc"] for r in branched.reports[:2]] == [r["val_bpc"] for r in plain.reports[:2]]
    assert [r["val_bpc"] for r in branched.reports[2:]] == [r["val_bpc"] for r in plain.reports[2:]]
    assert not any("stable_val_bpc" in r for r in branched.reports[2:] + plain.reports)
    # Weights, optimiser and every RNG of the continued run equal those of the run without branches.
    (final, _), (final_plain, _) = branched.checkpoints[-1], plain.checkpoints[-1]
    for name, tensor in final_plain["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    for index, moments in final_plain["optimizer"]["state"].items():
        for key, tensor in moments.items():
            assert torch.equal(final["optimizer"]["state"][index][key], tensor), (index, key)
    assert torch.equal(final["rng"]["torch"], final_plain["rng"]["torch"])
    assert final["rng"]["sampler"] == final_plain["rng"]["sampler"]


def test_each_rung_leaves_an_annealed_checkpoint_that_generation_uses(shakespeare_dataset: str, tmp_path: Path) -> None:
    config = tiny_config(shakespeare_dataset, "transformer", lr_schedule="wsd", anneal_at_tokens=[2048])
    train_in_run_dir(config, tmp_path / "run", None)
    rung = tmp_path / "run" / "checkpoints" / "tokens_2048"
    state, meta = load_checkpoint(rung)
    reported = read_metrics(tmp_path / "run")[0]
    assert meta["val_bpc"] == reported["val_bpc"]
    assert meta["annealed"] == {"cooldown_tokens": 410, "stable_val_bpc": reported["stable_val_bpc"]}  # 20% of 2048
    loaded = load_model(rung, torch.device("cpu"))
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[ANNEALED_MODEL][name]), name
    assert any(not torch.equal(state[ANNEALED_MODEL][n], t) for n, t in state["model"].items())
    # The evaluations that are no rung hold no second model.
    assert ANNEALED_MODEL not in load_checkpoint(tmp_path / "run" / "checkpoints" / "tokens_4096")[0]


def test_a_run_resumed_from_an_annealed_checkpoint_continues_exactly(shakespeare_dataset: str, tmp_path: Path) -> None:
    config = tiny_config(shakespeare_dataset, "lstm", lr_schedule="wsd", anneal_at_tokens=[2048, 4096], dropout=0.1)
    train_in_run_dir(config, tmp_path / "whole", None)
    with pytest.raises(RuntimeError, match="injected fault"):
        train_in_run_dir({**config, "fault_at_tokens": 5000}, tmp_path / "interrupted", None)
    resume_from = checkpoint_to_resume(tmp_path / "interrupted", resume=True)
    assert resume_from.name == "tokens_4096"
    train_in_run_dir({**config, "fault_at_tokens": 5000}, tmp_path / "interrupted", resume_from)
    keys = ("tokens", "train_loss", "val_bpc", "stable_val_bpc", "cooldown_tokens", "flops", "lr")
    assert [[m.get(k) for k in keys] for m in read_metrics(tmp_path / "interrupted")] == [
        [m.get(k) for k in keys] for m in read_metrics(tmp_path / "whole")
    ]


def test_a_rung_between_evaluations_is_annealed_at_the_first_evaluation_past_it(shakespeare_dataset: str) -> None:
    reporter = RecordingReporter()
    run_trial(
        tiny_config(
            shakespeare_dataset, "lstm", lr_schedule="wsd", cooldown_fraction=0.5, anneal_at_tokens=[3000, 3500, 8192]
        ),
        reporter,
    )
    # Both rungs in (2048, 4096] share one branch; at max_tokens the run has cooled down itself.
    assert [r["cooldown_tokens"] for r in reporter.reports] == [0, 2048, 2048, 2048]
    assert ["stable_val_bpc" in r for r in reporter.reports] == [False, True, False, False]


def test_cosine_ignores_the_rungs(shakespeare_dataset: str) -> None:
    with_rungs, without = RecordingReporter(), RecordingReporter()
    config = tiny_config(shakespeare_dataset, "lstm", max_tokens=4096)
    run_trial({**config, "anneal_at_tokens": [2048]}, with_rungs)
    run_trial(config, without)
    assert with_rungs.reports[0].keys() == without.reports[0].keys()
    assert [(r["val_bpc"], r["flops"], r["cooldown_tokens"]) for r in with_rungs.reports] == [
        (r["val_bpc"], r["flops"], 0) for r in without.reports
    ]


@pytest.mark.parametrize(
    "changes, rungs",
    [
        ({"model.lr_schedule": "wsd"}, [50_000, 200_000]),  # quickstart: grace 50k, factor 4, max 800k
        ({"space.lr_schedule": {"choice": ["cosine", "wsd"]}}, [50_000, 200_000]),
        ({}, None),  # cosine: no rungs to anneal at
        ({"model.lr_schedule": "wsd", "scheduler.kind": "fifo"}, None),  # no rungs at all
        # the top rung lies inside the final cooldown (from 640k on): it branches from the decaying lr
        ({"model.lr_schedule": "wsd", "scheduler.reduction_factor": 2.5}, [50_000, 125_000, 312_500, 781_250]),
    ],
)
def test_the_spec_derives_the_rungs_to_anneal_at(changes: dict[str, Any], rungs: list[int] | None) -> None:
    import yaml

    spec = load_spec(
        QUICKSTART,
        [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}" for key, value in changes.items()],
    )
    assert fixed_trial_params(spec, "d").get("anneal_at_tokens") == rungs
    assert rung_milestones(spec) == spec.rung_milestones


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"anneal_at_tokens": [500]}, None),  # the rung where the cooldown starts is still stable
        (
            {"anneal_at_tokens": [501, 900]},
            ["longer than the budget after the first rung at 501 tokens", "at most 0.499"],
        ),
        ({"anneal_at_tokens": [400, 900]}, None),  # a later rung may lie inside the cooldown
        ({"anneal_at_tokens": [501], "lr_schedule": "cosine"}, None),  # cosine has no cooldown to overlap
        ({"anneal_at_tokens": [1000]}, None),  # max_tokens is no branch
        ({"cooldown_fraction": 1.0}, ['"cooldown_fraction" = 1.0', "expected a number < 1"]),
        ({"cooldown_fraction": 0.0}, ['"cooldown_fraction" = 0.0', "expected a number > 0"]),
    ],
)
def test_the_cooldown_must_not_reach_back_over_the_first_rung(
    changes: dict[str, Any], fragments: list[str] | None
) -> None:
    config = {"dataset_dir": "d", "max_tokens": 1000, "lr_schedule": "wsd", "cooldown_fraction": 0.5, **changes}
    if fragments is None:
        parse_trial_config(config)
        return
    with pytest.raises(TextuneError) as raised:
        parse_trial_config(config)
    for fragment in fragments:
        assert fragment in raised.value.message


def test_a_checkpoint_from_before_the_schedule_keys_still_resumes() -> None:
    config = parse_trial_config({"dataset_dir": "d"})
    older = {
        k: v
        for k, v in config.model_dump().items()
        if k not in ("lr_schedule", "cooldown_fraction", "cooldown_shape", "anneal_at_tokens")
    }
    check_resumable(config, older, "ckpt")
    with pytest.raises(TextuneError, match="lr_schedule: 'cosine' -> 'wsd'"):
        check_resumable(parse_trial_config({"dataset_dir": "d", "lr_schedule": "wsd"}), older, "ckpt")


@pytest.mark.parametrize(
    "settings, fragments",
    [
        (["model.cooldown_fraction=1.5"], ['"model.cooldown_fraction" = 1.5', "< 1", "Fix model.cooldown_fraction"]),
        (["model.cooldown_fraction=0"], ['"model.cooldown_fraction" = 0', "expected a number > 0"]),
        (
            ["model.lr_schedule=wsd", "model.cooldown_fraction=0.95"],
            ["wsd's final cooldown", "first rung at 50000 tokens", "set cooldown_fraction to at most 0.9375"],
        ),
        (
            ["model.lr_schedule=wsd", "space.cooldown_fraction={uniform: [0.1, 0.99]}"],
            ["space.cooldown_fraction = 0.99", "wsd's final cooldown"],
        ),
        (["model.anneal_at_tokens=[1000]"], ["anneal_at_tokens cannot be set under model:", "ASHA's rungs"]),
    ],
)
def test_bad_schedules_are_refused_before_ray_starts(tmp_path: Path, settings: list[str], fragments: list[str]) -> None:
    storage = tmp_path / "runs"
    result = run_textune(
        "run", str(QUICKSTART), f"--set=storage={storage}", *(f"--set={setting}" for setting in settings)
    )
    assert_user_error(result, f"job spec {QUICKSTART}", *fragments)
    assert not storage.exists()


def test_rank_agreement_compares_each_rung_with_the_final_ranking() -> None:
    from benchmarks.bench_rank_agreement import rank_agreement

    rows = []
    for config, (early, late, final) in enumerate([(1.0, 3.0, 3.0), (2.0, 2.0, 2.0), (3.0, 1.0, 1.0)]):
        rows += [
            {"config_id": str(config), "seed": 0, "tokens": tokens, "val_bpc": value, "stable_val_bpc": -value}
            for tokens, value in ((100, early), (200, late), (400, final))
        ]
    # Stopped before the end: left out at every rung.
    rows.append({"config_id": "stopped", "seed": 0, "tokens": 100, "val_bpc": 0.0, "stable_val_bpc": 0.0})
    curves = pd.DataFrame(rows)
    # 150 lies between evaluations: judged at 200, as ASHA records it; 400 is the end, no rung.
    assert rank_agreement(curves, [100, 150, 400]) == [
        {"rung": 100.0, "tau": pytest.approx(-1.0), "curves": 3},
        {"rung": 150.0, "tau": pytest.approx(1.0), "curves": 3},
    ]
    assert rank_agreement(curves, [200], rung_metric="stable_val_bpc")[0]["tau"] == pytest.approx(-1.0)


def test_cooldown_tokens_are_a_cost_column_of_trials_and_of_the_experiment() -> None:
    from tune_jobs.cost import experiment_cost, trial_cost
    from tune_jobs.spec import Resources

    rows = [
        trial_cost({"tokens": tokens, "cooldown_tokens": cooldown, "flops": 1.0, "time_total_s": 1.0}, Resources())
        for tokens, cooldown in ((9216, 819), (1024, 205))
    ]
    assert [(row["tokens"], row["cooldown_tokens"]) for row in rows] == [(9216, 819), (1024, 205)]
    assert trial_cost({"tokens": 10}, Resources())["cooldown_tokens"] == 0  # a cosine trial's reports
    assert experiment_cost(pd.DataFrame(rows))["cooldown_tokens"] == 1024
    # The results table of an experiment from before annealed evaluations has no such column.
    assert experiment_cost(pd.DataFrame(rows).drop(columns="cooldown_tokens"))["cooldown_tokens"] == 0
