"""``textune analyze``: functional ANOVA against functions whose decomposition is known, the analysis of a
trials table, the real CLI on a real finished search, and bad input."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.fs
import pytest
import yaml
from sklearn.ensemble import RandomForestRegressor

from conftest import assert_user_error, run_textune
from textune.errors import TextuneError
from tune_jobs.analysis.fanova import ForestAnova
from tune_jobs.analysis.importance import ImportanceReport, analyze_importance
from tune_jobs.experiment import SPEC_FILE
from tune_jobs.results import CONFIG_PREFIX, ExperimentResults, write_tables
from tune_jobs.spec import JobSpec

# y of 4 features with the shares worked out by hand, and how close a forest of 400 points gets to the pairs.
# Over [0, 1]^4: Var(x0) = 1/12; x1*x2 has variance 1/9 - 1/16 = 7/144, of which each main effect (x/2) holds
# 1/48. Over [-1, 1]^4, x0*x1 has no main effects at all; a forest approximates a product coarsely and puts a
# little of it into splits on the other features, hence the wider tolerance there.
ANALYTIC = {
    "linear in one feature": (lambda x: 3 * x[:, 0], [0, 1], [1.0, 0.0, 0.0, 0.0], {}, 0.0),
    "sum and product": (lambda x: x[:, 0] + x[:, 1] * x[:, 2], [0, 1],
                        [12 / 19, 3 / 19, 3 / 19, 0.0], {(1, 2): 1 / 19, (0, 1): 0.0}, 0.03),
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


SPACE = {"lr": {"loguniform": [1e-4, 1e-1]}, "batch_size": {"choice": [8, 16, 32]},
         "n_layers": {"randint": [1, 4]}, "ignored_knob": {"uniform": [0.0, 1.0]}}


def spec_for(storage: Path) -> JobSpec:
    return JobSpec.model_validate({
        "name": "table", "data": {"source": "synthetic"}, "space": SPACE, "storage": str(storage),
        "budget": {"max_tokens": 400_000, "eval_every_tokens": 100_000}})


def known_trials(n: int, statuses: Callable[[int], str] = lambda i: "completed") -> pd.DataFrame:
    """Trials of a known function: lr (a parabola in log10 lr, best at 10^-2.5) >> batch_size > n_layers; the
    knob adds nothing. Every fourth trial stopped early at a quarter of the budget, a worse result."""
    rng = np.random.default_rng(1)
    lr, batch = 10 ** rng.uniform(-4, -1, n), rng.choice([8, 16, 32], n)
    layers, knob = rng.integers(1, 5, n), rng.uniform(0, 1, n)
    stopped = np.arange(n) % 4 == 3
    value = 1 + (np.log10(lr) + 2.5) ** 2 + 0.3 * (batch == 8) + 0.05 * layers + 0.3 * stopped
    return pd.DataFrame({
        "trial_id": [f"t{i:03d}" for i in range(n)],
        "status": ["early_stopped" if stopped[i] else statuses(i) for i in range(n)],
        CONFIG_PREFIX + "lr": lr, CONFIG_PREFIX + "batch_size": batch, CONFIG_PREFIX + "n_layers": layers,
        CONFIG_PREFIX + "ignored_knob": knob,
        "tokens": np.where(stopped, 100_000, 400_000), "best_metric": value,
    })


def write_experiment(storage: Path, trials: pd.DataFrame) -> Path:
    """An experiment directory as the run leaves it, as far as analyze reads it: the spec and results.parquet."""
    spec = spec_for(storage)
    root = storage / spec.name
    root.mkdir(parents=True)
    (root / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    write_tables(ExperimentResults(trials, pd.DataFrame({"trial_id": trials["trial_id"]})),
                 str(root / "results.parquet"), str(root / "evaluations.parquet"), pyarrow.fs.LocalFileSystem())
    return root


def test_ranking_shares_and_curves_follow_the_known_function(tmp_path: Path) -> None:
    report = analyze_importance(known_trials(120), spec_for(tmp_path))
    assert [share.param for share in report.importance] == ["lr", "batch_size", "n_layers", "ignored_knob"]
    shares = {share.param: share.share for share in report.importance}
    chance = {share.param: share.chance_share for share in report.importance}
    assert shares["lr"] > 0.7 and shares["ignored_knob"] < 0.02
    assert shares["lr"] > chance["lr"] > 0
    assert [share.param for share in report.importance if share.beyond_chance] == ["lr", "batch_size", "n_layers"]
    assert all(share.share_above_chance == pytest.approx(max(0.0, share.share - share.chance_share))
               for share in report.importance)
    assert 0.9 < sum(shares.values()) <= 1.0  # an additive function: next to nothing in interactions
    assert report.n_trials == 120 and report.oob_r2 > 0.5 and "tokens / 400,000" in report.budget_rule
    lr = report.main_effects["lr"]
    assert lr.kind == "numeric" and lr.log and min(lr.x) == pytest.approx(1e-4) and max(lr.x) == pytest.approx(0.1)
    assert abs(math.log10(lr.x[int(np.argmin(lr.y))]) + 2.5) < 0.4  # the parabola's minimum
    batch = report.main_effects["batch_size"]
    assert batch.kind == "categorical" and batch.x == [8, 16, 32] and batch.y[0] > max(batch.y[1:])
    assert report.main_effects["n_layers"].x == [1, 2, 3, 4]
    assert sorted(sorted(pair.params) for pair in report.interactions) == sorted(
        sorted(pair) for pair in combinations(["lr", "batch_size", "n_layers"], 2))
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


@pytest.mark.parametrize("statuses, count", [
    (lambda i: "completed" if i == 0 else "errored", 1),  # crashes and unfinished trials say nothing
    (lambda i: "diverged" if i < 2 else "unfinished", 0),  # failures alone have no result to rank against
], ids=["one completed, the rest errored", "only diverged and unfinished"])
def test_fewer_than_two_finished_trials_is_a_user_error(tmp_path: Path, statuses: Callable[[int], str],
                                                        count: int) -> None:
    trials = known_trials(3, statuses)
    with pytest.raises(TextuneError, match=f"at least 2 finished trials .* has {count} finished"):
        analyze_importance(trials, spec_for(tmp_path))


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


def test_cli_bad_input_changes_nothing(tmp_path: Path) -> None:
    root = write_experiment(tmp_path, known_trials(3, lambda i: "errored"))
    assert_user_error(run_textune("analyze", str(root)), "at least 2 finished trials", "3 errored",
                      "textune resume")
    assert not (root / "analysis").exists()
    assert_user_error(run_textune("analyze", str(tmp_path / "missing")), "is not a textune experiment")


def test_cli_json_on_a_real_search_with_a_control_knob(experiment_copy: Path) -> None:
    result = run_textune("analyze", str(experiment_copy), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == json.loads((experiment_copy / "analysis" / "importance.json").read_text())
    assert set(document) == {"metric", "mode", "n_trials", "budget_rule", "oob_r2", "importance", "main_effects",
                             "interactions"}
    report = ImportanceReport.model_validate(document)
    trials = pd.read_parquet(experiment_copy / "results.parquet")
    searched = {column[len(CONFIG_PREFIX):] for column in trials if column.startswith(CONFIG_PREFIX)}
    assert {share.param for share in report.importance} == searched == set(report.main_effects)
    assert "ignored_knob" in searched  # sampled and recorded like any other hyperparameter, never trained with
    assert "ignored_knob" not in json.loads((experiment_copy / "best" / "meta.json").read_text())["config"]
    assert 0 <= sum(share.share for share in report.importance) <= 1 + 1e-9
    assert all(0 <= share.chance_share <= 1 and 0 <= share.share_above_chance <= share.share
               for share in report.importance)
    assert report.n_trials == trials["status"].isin(["completed", "early_stopped", "diverged", "oom"]).sum()
    assert len(report.interactions) == 3
