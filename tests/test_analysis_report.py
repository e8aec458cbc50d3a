"""``textune report`` on a real finished search, opened in a real headless Chromium; text quality metrics; the
cost columns of ``best`` and ``export``; and the report's bad input.

The analyses the report shows are written by ``textune analyze`` and ``textune confirm``; here they are
documents of the agreed shape written into the experiment's copy, so this module trains nothing beyond the
shared ``finished_experiment``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import assert_user_error, run_textune
from tune_jobs.analysis.importance import ImportanceReport
from tune_jobs.analysis.quality import QualityConfig, repetition_rate, sample_top_configs, text_metrics, word_ids
from tune_jobs.cost import COST_COLUMNS, trial_cost
from tune_jobs.experiment import open_experiment
from tune_jobs.spec import Resources

pytestmark = pytest.mark.timeout(300)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SECTIONS = ("learning-curves", "best-so-far", "parallel-coordinates", "importance", "confirmation", "samples", "cost")
MARKUP_PROMPT = "<b>x</b>"  # model output and prompts are text: the page must show this, not render it
SAMPLING = ("--top-k", "2", "--seeds", "2", "--max-new-tokens", "40")


def importance_document(trials: pd.DataFrame) -> dict[str, Any]:
    """What ``textune analyze`` writes for a search that backs a ranking, in the agreed shape."""
    shares = [
        ("lr", 0.6, 0.05, True),
        ("batch_size", 0.2, 0.02, True),
        ("n_heads", 0.05, 0.03, True),
        ("head_dim", 0.01, 0.02, False),
    ]
    effects = {
        "lr": {"kind": "numeric", "log": True, "x": [0.004, 0.01, 0.04], "y": [3.4, 3.2, 3.6]},
        **{
            name: {"kind": "categorical", "log": False, "x": [8, 16], "y": [3.5, 3.3]}
            for name in ("batch_size", "n_heads", "head_dim")
        },
    }
    document = {
        "metric": "val_bpc",
        "mode": "min",
        "n_trials": 48,
        "n_hyperparameters": 4,
        "trials_needed": 40,
        "budget_rule": "last rung reached",
        "oob_r2": 0.5,
        "no_ranking_reason": None,
        "importance": [
            {
                "param": param,
                "share": share,
                "chance_share": chance,
                "share_above_chance": max(0.0, share - chance),
                "beyond_chance": beyond,
            }
            for param, share, chance, beyond in shares
        ],
        "main_effects": effects,
        "interactions": [{"params": ["lr", "batch_size"], "share": 0.08}],
    }
    ImportanceReport.model_validate(document)
    return document


def confirm_document(trials: pd.DataFrame) -> dict[str, Any]:
    """What ``textune confirm`` writes, in the agreed shape."""
    configs = [
        {
            "rank": rank,
            "trial_id": row["trial_id"],
            "config": {"lr": float(row["config/lr"])},
            "values": [3.1 + rank / 10, 3.2 + rank / 10],
            "mean": 3.15 + rank / 10,
            "std": 0.07,
        }
        for rank, (_, row) in enumerate(trials.head(2).iterrows(), start=1)
    ]
    return {
        "metric": "val_bpc",
        "mode": "min",
        "seeds": 2,
        "folds": None,
        "max_tokens": 8192,
        "configs": configs,
        "paired_test": {
            "best": configs[0]["trial_id"],
            "runner_up": configs[1]["trial_id"],
            "test": "paired t-test",
            "n": 2,
            "mean_diff": -0.1,
            "p_value": 0.01,
            "alpha": 0.05,
            "significant": True,
        },
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by its chromedriver (no download: both paths are given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,2400",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # chromedriver gives every session a new empty --user-data-dir of its own.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# The second variant is an experiment as an older textune left it: results only, and evaluations without the
# timing columns that order them in time.
@pytest.mark.parametrize("with_analyses", [True, False], ids=["with-analyses", "older-results-only-to-out-dir"])
def test_report_opens_in_a_browser_with_every_section(
    experiment_copy: Path, browser: Any, tmp_path: Path, with_analyses: bool
) -> None:
    trials = pd.read_parquet(experiment_copy / "results.parquet")
    if with_analyses:
        (experiment_copy / "analysis").mkdir()
        (experiment_copy / "analysis" / "importance.json").write_text(json.dumps(importance_document(trials)))
        (experiment_copy / "analysis" / "confirm.json").write_text(json.dumps(confirm_document(trials)))
    else:
        evaluations = experiment_copy / "evaluations.parquet"
        pd.read_parquet(evaluations).drop(columns=["timestamp", "time_total_s"]).to_parquet(evaluations)
    out = [] if with_analyses else ["--out", str(tmp_path / "elsewhere")]
    made = run_textune("report", str(experiment_copy), *SAMPLING, "--prompt", "\n", "--prompt", MARKUP_PROMPT, *out)
    assert made.returncode == 0, made.stderr[-3000:]
    page = experiment_copy / "report" / "index.html" if with_analyses else tmp_path / "elsewhere" / "index.html"
    assert made.stdout.strip() == f"report: {page}"
    assert (experiment_copy / "report").exists() == with_analyses
    pngs = {p.name for p in page.parent.glob("*.png")}
    assert {"learning_curves.png", "parallel_coordinates.png"} <= pngs
    assert ("importance.png" in pngs) == ("best_so_far.png" in pngs) == with_analyses

    browser.get_log("browser")  # forget what earlier pages logged
    browser.get(page.as_uri())
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe
    images = browser.execute_script("return Array.from(document.images, i => [i.complete, i.naturalWidth]);")
    assert len(images) == len(pngs) and all(done and width > 0 for done, width in images), images
    present = browser.execute_script("return Array.from(document.querySelectorAll('section'), s => s.id);")
    assert tuple(present) == SECTIONS
    text = browser.find_element("tag name", "body").text
    hints = ("textune analyze EXPERIMENT", "textune confirm EXPERIMENT")
    assert all((hint in text) != with_analyses for hint in hints), text[:2000]
    if with_analyses:
        assert "the lead exceeds the noise" in text and "lr × batch_size" in text
        # The ranking comes with its evidence and the chance columns analyze prints (issue 14 F).
        assert "fitted on 48 finished trials of 4 hyperparameters" in text and "out-of-bag R² is 0.500" in text
        assert "hyperparameter share chance above beyond chance best at" in text
        assert "lr 60.0% 5.0% 55.0% yes 0.01" in text and "head_dim 1.0% 2.0% 0.0% no (within chance) 16" in text
    else:
        assert "Not drawn: the evaluations table has no timestamp or time_total_s column" in text
    # The markup prompt is shown as text in the samples and nowhere turned into an element.
    assert MARKUP_PROMPT in text
    assert browser.execute_script("return document.querySelectorAll('#samples b, script').length;") == 0
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    check_samples_document(experiment_copy, trials)


def check_samples_document(experiment: Path, trials: pd.DataFrame) -> None:
    """The samples the report drew: the top configs in order, measured, and the same when drawn again."""
    samples = json.loads((experiment / "analysis" / "samples.json").read_text())
    assert [entry["trial_id"] for entry in samples["configs"]] == list(trials["trial_id"].head(2))
    for entry in samples["configs"]:
        assert [s["prompt"] for s in entry["samples"]] == ["\n", "\n", MARKUP_PROMPT, MARKUP_PROMPT]
        assert all(len(s["text"]) > 0 for s in entry["samples"])
        assert 0 < entry["distinct_1"] <= 1 and 0 < entry["distinct_2"] <= 1 and 0 <= entry["repetition_rate"] < 1
        assert math.isfinite(entry["self_bpc"]) and entry["self_ppl"] > 1
    # Fixed prompts and seeds: drawing again gives the very same samples.
    options = QualityConfig(
        top_k=2, prompts=samples["prompts"], seeds=samples["seeds"], max_new_tokens=samples["max_new_tokens"]
    )
    assert sample_top_configs(open_experiment(experiment), trials, options) == samples


# Issue 13 F.16: the report on a search too small for a ranking (the suite's real 8-trial search of 5
# hyperparameters, after a real analyze) says so with the numbers, and draws and lists no ranking.
def test_report_on_a_search_too_small_for_importance_shows_no_ranking(experiment_copy: Path, tmp_path: Path) -> None:
    analyzed = run_textune("analyze", str(experiment_copy))
    assert analyzed.returncode == 0, analyzed.stderr
    out = tmp_path / "report"
    made = run_textune(
        "report", str(experiment_copy), "--top-k", "1", "--seeds", "1", "--max-new-tokens", "8", "--out", str(out)
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert not (out / "importance.png").exists() and (out / "learning_curves.png").exists()
    page = (out / "index.html").read_text()
    section = page[page.index('<section id="importance">') : page.index('<section id="confirmation">')]
    assert "fitted on 8 finished trials of 5 hyperparameters" in section and "needs at least 50 trials" in section
    assert "Importance cannot be read from this search" in section and "42 more trials" in section
    assert "<img" not in section and "<table" not in section
    assert "one training run on one seed" in page


@pytest.mark.parametrize(
    "words, expected",
    [
        ("a b c d a b c d", 1 / 5),  # five 4-grams, "a b c d" repeats once
        ("a a a a a a", 2 / 3),  # three identical 4-grams: two repeat the first
        ("one two three four five", 0.0),
        ("too short", 0.0),
    ],
)
def test_repetition_rate_counts_repeated_four_grams(words: str, expected: float) -> None:
    assert math.isclose(repetition_rate(word_ids([words])[0]), expected)


def test_distinct_n_counts_words_across_samples() -> None:
    metrics = text_metrics(["the cat sat", "the cat ran"])
    assert math.isclose(metrics["distinct_1"], 4 / 6) and math.isclose(metrics["distinct_2"], 3 / 4)


def test_cost_columns_in_export_and_best(finished_experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "trials.parquet"
    exported = run_textune("export", str(finished_experiment), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    trials = pd.read_parquet(out)
    assert set(COST_COLUMNS) <= set(trials.columns)
    assert (trials["device_kind"] == "cpu_core").all()  # the spec gives each trial one CPU and no GPU
    assert (trials["device_hours"] - trials["wall_time_s"] / 3600).abs().max() < 1e-12
    assert (trials["flops"] > 0).all() and (trials["tokens"] >= 1024).all()

    shown = run_textune("best", str(finished_experiment), "--json")
    assert shown.returncode == 0, shown.stderr
    best = json.loads(shown.stdout)
    row = trials[trials["trial_id"] == best["trial_id"]].iloc[0]
    assert best["cost"]["flops"] == row["flops"] and best["cost"]["tokens"] == row["tokens"]
    total = best["experiment_cost"]
    assert total["trials"] == len(trials) and total["tokens"] == trials["tokens"].sum()
    assert math.isclose(total["device_hours"], trials["device_hours"].sum())
    text = run_textune("best", str(finished_experiment))
    assert text.returncode == 0 and "CPU-core-hours" in text.stdout and f"({len(trials)} trials)" in text.stdout


@pytest.mark.parametrize(
    "resources, kind, hours",
    [
        ({"cpu": 4, "gpu": 2}, "gpu", 4.0),  # GPUs held: GPU-hours, the CPUs beside them are not counted
        ({"cpu": 2, "gpu": 0.5}, "gpu", 1.0),  # a fractional GPU counts its fraction
        ({"cpu": 4, "gpu": 0}, "cpu_core", 8.0),  # no GPU: CPU-core-hours
    ],
)
def test_device_hours_count_the_devices_a_trial_held(resources: dict[str, float], kind: str, hours: float) -> None:
    cost = trial_cost({"tokens": 10, "flops": 5.0, "time_total_s": 7200.0}, Resources(**resources))
    assert cost == {
        "tokens": 10,
        "cooldown_tokens": 0,
        "flops": 5.0,
        "wall_time_s": 7200.0,
        "device_kind": kind,
        "device_hours": hours,
    }


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["{missing}"], ["is not a textune experiment"]),
        (["{experiment}", "--out", "{occupied}"], ["not a textune report", "--out"]),
        (["{experiment}", "--top-k", "0"], ["--top-k", "1<=x<=100"]),
        (["{experiment}", "--prompt", ""], ["--prompt", "at least 1 character"]),
    ],
)
def test_report_bad_input(
    finished_experiment: Path, tmp_path: Path, arguments: list[str], fragments: list[str]
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    paths = {"missing": tmp_path / "no-such-experiment", "experiment": finished_experiment, "occupied": occupied}
    assert_user_error(run_textune("report", *[a.format(**paths) for a in arguments]), *fragments)
    assert (occupied / "notes.txt").read_text() == "mine"
    assert not (finished_experiment / "report").exists() and not (finished_experiment / "analysis").exists()


# S4 (issue 14 A.3): a report replaces exactly the files an earlier report wrote, and refuses a directory
# that holds anything else (the user's notes.txt and slides/ were deleted before).
def test_report_out_replaces_an_earlier_report_and_never_touches_the_users_files(
    experiment_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    quick = ("--top-k", "1", "--seeds", "1", "--max-new-tokens", "8", "--out", str(out))
    for _ in range(2):  # the second run replaces the first report
        made = run_textune("report", str(experiment_copy), *quick)
        assert made.returncode == 0, made.stderr[-3000:]
    written = json.loads((out / ".textune-report.json").read_text())
    assert written[0] == "index.html" and sorted(p.name for p in out.iterdir()) == sorted(
        [*written, ".textune-report.json"]
    )
    (out / "notes.txt").write_text("mine")
    (out / "slides").mkdir()
    (out / "slides" / "talk.pdf").write_bytes(b"%PDF")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    refused = run_textune("report", str(experiment_copy), *quick)
    assert_user_error(refused, f"{out} holds files that are not a textune report (notes.txt, slides/)", "--out")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
