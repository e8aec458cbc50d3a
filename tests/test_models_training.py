"""Training through run_trial on real prepared datasets: learning, determinism, exact resume, failure modes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from models.run_dir import checkpoint_to_resume, train_in_run_dir
from models.trial import run_trial
from support.models import FAMILIES, RecordingReporter, prepare, read_metrics, tiny_config

REQUIRED_KEYS = {
    "tokens",
    "val_bpc",
    "status",
    "val_loss",
    "val_ppl",
    "train_loss",
    "train_ppl",
    "train_bpc",
    "best_val_bpc",
    "lr",
    "tokens_per_s",
    "flops",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_reports_carry_the_contract_keys_and_a_checkpoint_at_every_evaluation(
    shakespeare_dataset: str, family: str
) -> None:
    reporter = RecordingReporter()
    result = run_trial(tiny_config(shakespeare_dataset, family), reporter)
    assert [r["tokens"] for r in reporter.reports] == [2048, 4096, 6144, 8192]
    assert [r["status"] for r in reporter.reports] == ["running"] * 3 + ["completed"]
    for metrics in reporter.reports:
        assert REQUIRED_KEYS <= metrics.keys()
        assert math.isclose(metrics["val_ppl"], math.exp(metrics["val_loss"]))
        assert metrics["best_val_bpc"] <= metrics["val_bpc"]
    assert reporter.reports[-1]["val_bpc"] < reporter.reports[0]["val_bpc"]  # it learns
    assert reporter.reports[-1]["flops"] == 4 * reporter.reports[0]["flops"]
    assert reporter.checkpoint_files == [["meta.json", "state.pt", "tokenizer.json"]] * 4
    assert (result.status, result.tokens, result.best_val_bpc) == (
        "completed",
        8192,
        min(r["val_bpc"] for r in reporter.reports),
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tiny_corpus_is_memorised_to_near_zero_loss(tmp_path: Path, family: str) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog; " * 40 + "\n", encoding="utf-8")
    dataset = prepare(corpus, tmp_path / "datasets", split={"train": 0.8, "val": 0.1, "test": 0.1})
    reporter = RecordingReporter()
    run_trial(
        tiny_config(
            dataset,
            family,
            block_size=16,
            batch_size=16,
            max_tokens=50_000,
            eval_every_tokens=12_500,
            lr=3e-2,
            weight_decay=0.0,
            warmup_tokens=0,
        ),
        reporter,
    )
    # nats/token; what remains is the first positions of a block, whose short context is ambiguous.
    assert reporter.reports[-1]["train_loss"] < 0.1
    assert reporter.reports[-1]["val_loss"] < 0.1


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_seed_gives_the_same_run_and_another_seed_another(shakespeare_dataset: str, family: str) -> None:
    runs = []
    for seed in (5, 5, 6):
        reporter = RecordingReporter()
        run_trial(tiny_config(shakespeare_dataset, family, seed=seed, max_tokens=4096, dropout=0.1), reporter)
        runs.append([(r["train_loss"], r["val_loss"]) for r in reporter.reports])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("family", FAMILIES)
def test_an_interrupted_and_resumed_run_has_exactly_the_uninterrupted_losses(
    shakespeare_dataset: str, tmp_path: Path, family: str
) -> None:
    # Dropout and grad accumulation make every RNG and counter matter.
    config = tiny_config(shakespeare_dataset, family, dropout=0.1, grad_accum=2, batch_size=4)
    train_in_run_dir(config, tmp_path / "whole", None)
    with pytest.raises(RuntimeError, match="injected fault"):
        train_in_run_dir({**config, "fault_at_tokens": 5000}, tmp_path / "interrupted", None)
    assert [m["tokens"] for m in read_metrics(tmp_path / "interrupted")] == [2048, 4096]
    resume_from = checkpoint_to_resume(tmp_path / "interrupted", resume=True)
    assert resume_from.name == "tokens_4096"
    result = train_in_run_dir({**config, "fault_at_tokens": 5000}, tmp_path / "interrupted", resume_from)
    assert result.status == "completed"
    curve = [
        (m["tokens"], m["train_loss"], m["val_loss"], m["lr"], m["best_val_bpc"])
        for m in read_metrics(tmp_path / "whole")
    ]
    resumed_curve = [
        (m["tokens"], m["train_loss"], m["val_loss"], m["lr"], m["best_val_bpc"])
        for m in read_metrics(tmp_path / "interrupted")
    ]
    assert resumed_curve == curve


@pytest.mark.parametrize("family", FAMILIES)
def test_a_huge_learning_rate_ends_as_diverged_without_an_exception(shakespeare_dataset: str, family: str) -> None:
    reporter = RecordingReporter()
    result = run_trial(
        tiny_config(shakespeare_dataset, family, optimizer="sgd", lr=1e9, grad_clip=0, warmup_tokens=0), reporter
    )
    assert result.status == "diverged"
    final = reporter.reports[-1]
    assert final["status"] == "diverged" and final["val_bpc"] == math.inf
    assert reporter.checkpoint_files[-1] == []  # a diverged state is not worth keeping
    assert final["tokens"] < 8192


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd", "rmsprop"])
def test_every_optimizer_trains(shakespeare_dataset: str, optimizer: str) -> None:
    reporter = RecordingReporter()
    lr = {"sgd": 0.5, "rmsprop": 1e-3}.get(optimizer, 3e-3)
    run_trial(tiny_config(shakespeare_dataset, "transformer", optimizer=optimizer, lr=lr, max_tokens=4096), reporter)
    # A uniform guess over the ~60 characters costs ln(60) = 4.1 nats; the unigram distribution alone ~3.3.
    assert reporter.reports[-1]["val_loss"] < 3.6


def test_the_synthetic_corpus_reports_the_gap_to_its_entropy_floor(tmp_path: Path) -> None:
    dataset = prepare(Path("synthetic"), tmp_path / "datasets", synthetic={"characters": 60_000})
    reporter = RecordingReporter()
    run_trial(tiny_config(dataset, "transformer", max_tokens=2048), reporter)
    metrics = reporter.reports[-1]
    assert metrics["floor_gap"] == pytest.approx(metrics["val_bpc"] - metrics["floor_bpc"])
    assert metrics["floor_gap_rel"] == pytest.approx(metrics["floor_gap"] / metrics["floor_bpc"])
    assert metrics["floor_gap"] > 0  # an untrained model is far from the true source's entropy
