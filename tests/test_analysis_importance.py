"""``textune analyze``: functional ANOVA against functions whose decomposition is known, the analysis of a
trials table, the real CLI on a real finished search, and bad input."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs
import pytest
import yaml
from sklearn.ensemble import RandomForestRegressor

from conftest import assert_user_error, run_textune
from textune.errors import TextuneError
from tune_jobs.analysis.fanova import ForestAnova
from tune_jobs.analysis.importance import ImportanceReport, analyze_importance, no_ranking_reason
from tune_jobs.cost import trial_cost
from tune_jobs.experiment import SPEC_FILE
from tune_jobs.results.parquet import write_tables
from tune_jobs.results.table import CONFIG_PREFIX, ExperimentResults
from tune_jobs.spec import JobSpec

# y of 4 features with the shares worked out by hand, and how close a forest of 400 points gets to the pairs.
# Over [0, 1]^4: Var(x0) = 1/12; x1*x2 has variance 1/9 - 1/16 = 7/144, of which each main effect (x/2) holds
# 1/48. Over [-1, 1]^4, x0*x1 has no main effects at all; a forest approximates a product coarsely and puts a
# little of it into splits on the other features, hence the wider tolerance there.
ANALYTIC = {
    "linear in one feature": (lambda x: 3 * x[:, 0], [0, 1], [1.0, 0.0, 0.0, 0.0], {}, 0.0),
    "sum and product": (
        lambda x: x[:, 0] + x[:, 1] * x[:, 2],
        [0, 1],
        [12 / 19, 3 / 19, 3 / 19, 0.0],
        {(1, 2): 1 / 19, (0, 1): 0.0},
        0.03,
    ),
    "pure interaction": (lambda x: x[:, 0] * x[:, 1], [-1, 1], [0.0, 0.0, 0.0, 0.0], {(0, 1): 1.0}, 0.2),
}


@pytest.mark.parametrize("name", ANALYTIC)
def test_fanova_recovers_known_decompositions(name: str) -> None:
    function, (low, high), main_shares, pair_shares, pair_tolerance = ANALYTIC[name]
    x = np.random.default_rng(0).uniform(low, high, size=(400, 4))
    forest = RandomForestRegressor(n_estimators=32, random_state=0).fit(x, function(x))
    anova = ForestAnova(forest, np.array([[low, high]] * 4))
    assert anova.main_effect_shares() == pytest.approx(main_shares, abs=0.05)
    for (first, second), share in pair_shares.items():
        assert anova.interaction_share(first, second) == pytest.approx(share, abs=pair_tolerance)
    if name == "linear in one feature":  # its main effect is the line itself
        grid = np.linspace(0.1, 0.9, 5)
        assert anova.main_effect_curve(0, grid) == pytest.approx(3 * grid, abs=0.15)


SPACE = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "batch_size": {"choice": [8, 16, 32]},
    "n_layers": {"randint": [1, 4]},
    "ignored_knob": {"uniform": [0.0, 1.0]},
}


def spec_for(storage: Path) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "table",
            "data": {"source": "synthetic"},
            "space": SPACE,
            "storage": str(storage),
            "budget": {"max_tokens": 400_000, "eval_every_tokens": 100_000},
        }
    )


def known_trials(n: int, statuses: Callable[[int], str] = lambda i: "completed") -> pd.DataFrame:
    """Trials of a known function: lr (a parabola in log10 lr, best at 10^-2.5) >> batch_size > n_layers; the
    knob adds nothing. Every fourth trial stopped early at a quarter of the budget, a worse result."""
    rng = np.random.default_rng(1)
    lr, batch = 10 ** rng.uniform(-4, -1, n), rng.choice([8, 16, 32], n)
    layers, knob = rng.integers(1, 5, n), rng.uniform(0, 1, n)
    stopped = np.arange(n) % 4 == 3
    value = 1 + (np.log10(lr) + 2.5) ** 2 + 0.3 * (batch == 8) + 0.05 * layers + 0.3 * stopped
    return pd.DataFrame(
        {
            "trial_id": [f"t{i:03d}" for i in range(n)],
            "status": ["early_stopped" if stopped[i] else statuses(i) for i in range(n)],
            CONFIG_PREFIX + "lr": lr,
            CONFIG_PREFIX + "batch_size": batch,
            CONFIG_PREFIX + "n_layers": layers,
            CONFIG_PREFIX + "ignored_knob": knob,
            "tokens": np.where(stopped, 100_000, 400_000),
            "best_metric": value,
        }
    )


def write_experiment(storage: Path, trials: pd.DataFrame) -> Path:
    """An experiment directory as the run leaves it, as far as analyze reads it: the spec and results.parquet
    (with every column a results table has; those analyze does not read hold plain values)."""
    spec = spec_for(storage)
    root = storage / spec.name
    root.mkdir(parents=True)
    (root / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    costs = pd.DataFrame(
        [trial_cost({"tokens": tokens, "time_total_s": 1.0}, spec.resources) for tokens in trials["tokens"]]
    )
    trials = trials.assign(
        best_val_bpc=trials["best_metric"],
        best_val_ppl=math.nan,
        floor_bpc=math.nan,
        **{column: costs[column] for column in ("flops", "wall_time_s", "device_kind", "device_hours")},
        checkpoint=None,
        trial_dir=[str(root / f"trial_{t}") for t in trials["trial_id"]],
    )
    write_tables(
        ExperimentResults(trials, pd.DataFrame({"trial_id": trials["trial_id"], "tokens": trials["tokens"]})),
        str(root / "results.parquet"),
        str(root / "evaluations.parquet"),
        pyarrow.fs.LocalFileSystem(),
    )
    return root


def test_ranking_shares_and_curves_follow_the_known_function(tmp_path: Path) -> None:
    report = analyze_importance(known_trials(120), spec_for(tmp_path))
    assert [share.param for share in report.importance] == ["lr", "batch_size", "n_layers", "ignored_knob"]
    shares = {share.param: share.share for share in report.importance}
    chance = {share.param: share.chance_share for share in report.importance}
    assert shares["lr"] > 0.7 and shares["ignored_knob"] < 0.02
    assert shares["lr"] > chance["lr"] > 0
    assert [share.param for share in report.importance if share.beyond_chance] == ["lr", "batch_size", "n_layers"]
    assert all(
        share.share_above_chance == pytest.approx(max(0.0, share.share - share.chance_share))
        for share in report.importance
    )
    assert 0.9 < sum(shares.values()) <= 1.0  # an additive function: next to nothing in interactions
    assert report.n_trials == 120 and report.oob_r2 > 0.5 and "tokens / 400,000" in report.budget_rule
    assert (report.n_hyperparameters, report.trials_needed, report.no_ranking_reason) == (4, 40, None)
    lr = report.main_effects["lr"]
    assert lr.kind == "numeric" and lr.log and min(lr.x) == pytest.approx(1e-4) and max(lr.x) == pytest.approx(0.1)
    assert abs(math.log10(lr.x[int(np.argmin(lr.y))]) + 2.5) < 0.4  # the parabola's minimum
    batch = report.main_effects["batch_size"]
    assert batch.kind == "categorical" and batch.x == [8, 16, 32] and batch.y[0] > max(batch.y[1:])
    assert report.main_effects["n_layers"].x == [1, 2, 3, 4]
    assert sorted(sorted(pair.params) for pair in report.interactions) == sorted(
        sorted(pair) for pair in combinations(["lr", "batch_size", "n_layers"], 2)
    )
    assert all(0 <= pair.share < 0.05 for pair in report.interactions)


def test_diverged_trials_count_as_the_worst_result(tmp_path: Path) -> None:
    trials = known_trials(60)
    diverged = trials[CONFIG_PREFIX + "lr"] > 0.03
    trials.loc[diverged, "status"] = "diverged"
    trials.loc[diverged, "best_metric"] = math.inf  # what the trainer reports for a diverged trial
    report = analyze_importance(trials, spec_for(tmp_path))
    assert report.n_trials == 60 and diverged.sum() >= 5
    lr = report.main_effects["lr"]
    assert lr.y[-1] == max(lr.y) > trials.loc[~diverged, "best_metric"].median()


@pytest.mark.parametrize(
    "statuses, count",
    [
        (lambda i: "completed" if i == 0 else "errored", 1),  # crashes and unfinished trials say nothing
        (lambda i: "diverged" if i < 2 else "unfinished", 0),  # failures alone have no result to rank against
    ],
    ids=["one completed, the rest errored", "only diverged and unfinished"],
)
def test_fewer_than_two_finished_trials_is_a_user_error(
    tmp_path: Path, statuses: Callable[[int], str], count: int
) -> None:
    trials = known_trials(3, statuses)
    with pytest.raises(TextuneError, match=f"at least 2 finished trials .* has {count} finished"):
        analyze_importance(trials, spec_for(tmp_path))


@pytest.mark.slow
def test_cli_table_and_file(tmp_path: Path) -> None:
    root = write_experiment(tmp_path, known_trials(40))
    table = run_textune("analyze", str(root))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("val_bpc (min) over 40 finished trials")
    lr_row = next(line for line in lines if line.startswith("lr")).split()
    assert lr_row[1].endswith("%") and "(within chance)" not in " ".join(lr_row)
    written = ImportanceReport.model_validate_json((root / "analysis" / "importance.json").read_text())
    assert written.importance[0].param == "lr" and f"{100 * written.importance[0].share:4.1f}%" == lr_row[1]


@pytest.mark.slow
def test_cli_bad_input_changes_nothing(tmp_path: Path) -> None:
    root = write_experiment(tmp_path, known_trials(3, lambda i: "errored"))
    assert_user_error(run_textune("analyze", str(root)), "at least 2 finished trials", "3 errored", "textune resume")
    assert not (root / "analysis").exists()
    assert_user_error(run_textune("analyze", str(tmp_path / "missing")), "is not a textune experiment")


# Issue 13 F.16: a ranking needs 10 finished trials per hyperparameter and a surrogate that beats the mean.
@pytest.mark.parametrize(
    "n_trials, n_params, oob_r2, fragments",
    [
        (
            4,
            5,
            -0.685,
            [
                "4 finished trials for 5 hyperparameters",
                "at least 50 (10 per hyperparameter)",
                "out-of-bag R² -0.69, not above 0",
                "num_samples of at least 50 (46 more trials",
            ],
        ),
        (49, 5, 0.5, ["49 finished trials for 5 hyperparameters", "at least 50 (1 more trial than this one)"]),
        (60, 5, -0.05, ["out-of-bag R² -0.05", "twice as many, 120"]),
        (50, 5, 0.01, None),  # both rules met, just
        (60, 5, 0.6, None),
    ],
    ids=[
        "the issue's 4-trial search",
        "one trial short",
        "enough trials, surrogate no better than the mean",
        "at both thresholds",
        "enough evidence",
    ],
)
def test_no_ranking_reason_states_the_rule_and_the_trials_needed(
    n_trials: int, n_params: int, oob_r2: float, fragments: list[str] | None
) -> None:
    reason = no_ranking_reason(n_trials, n_params, oob_r2)
    if fragments is None:
        assert reason is None
        return
    assert reason is not None and reason.startswith("Importance cannot be read from this search: ")
    assert all(fragment in reason for fragment in fragments), reason
    assert ("out-of-bag" in reason) == (oob_r2 <= 0) and ("at least 50" in reason) == (n_trials < 50)


@pytest.mark.parametrize(
    "n_trials, noise_only",
    [(20, False), (60, True)],
    ids=["too few trials for 4 hyperparameters", "enough trials of pure noise"],
)
def test_a_search_that_cannot_back_a_ranking_gets_none(tmp_path: Path, n_trials: int, noise_only: bool) -> None:
    trials = known_trials(n_trials)
    if noise_only:  # the metric has nothing to do with the config: the surrogate cannot beat the mean
        trials["best_metric"] = np.random.default_rng(5).normal(3.0, 0.1, n_trials)
    report = analyze_importance(trials, spec_for(tmp_path))
    assert (report.n_trials, report.n_hyperparameters, report.trials_needed) == (n_trials, 4, 40)
    if noise_only:
        assert report.oob_r2 <= 0 and "twice as many, 120" in str(report.no_ranking_reason)
    assert report.no_ranking_reason == no_ranking_reason(n_trials, 4, report.oob_r2) is not None
    assert report.importance == [] and report.main_effects == {} and report.interactions == []


def test_a_real_small_search_gets_no_ranking(experiment_copy: Path) -> None:
    """The test suite's real search: 8 trials of 5 hyperparameters (the control knob among them), far from the
    50 a ranking needs. Both outputs say so; neither ranks."""
    table = run_textune("analyze", str(experiment_copy))
    assert table.returncode == 0, table.stderr
    assert "over 8 finished trials of 5 hyperparameters" in table.stdout
    assert (
        "Importance cannot be read from this search: it has 8 finished trials for 5 hyperparameters, and a "
        "ranking needs at least 50 (10 per hyperparameter)" in table.stdout
    )
    assert "num_samples of at least 50 (42 more trials" in table.stdout
    assert "share" not in table.stdout and "(within chance)" not in table.stdout
    result = run_textune("analyze", str(experiment_copy), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == json.loads((experiment_copy / "analysis" / "importance.json").read_text())
    report = ImportanceReport.model_validate(document)
    trials = pd.read_parquet(experiment_copy / "results.parquet")
    assert report.n_trials == trials["status"].isin(["completed", "early_stopped", "diverged", "oom"]).sum() == 8
    assert (report.n_hyperparameters, report.trials_needed) == (5, 50)
    assert report.no_ranking_reason is not None and report.no_ranking_reason in table.stdout
    assert report.importance == [] and report.main_effects == {} and report.interactions == []
    searched = {column[len(CONFIG_PREFIX) :] for column in trials if column.startswith(CONFIG_PREFIX)}
    assert "ignored_knob" in searched and len(searched) == 5  # sampled and recorded like any other hyperparameter
    assert "ignored_knob" not in json.loads((experiment_copy / "best" / "meta.json").read_text())["config"]
