"""``textune train`` and ``textune generate`` as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import assert_user_error, run_textune
from test_models_support import TINY, read_metrics


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One dataset cache for the module's commands, so the data: section is prepared once."""
    return {"TEXTUNE_CACHE_DIR": str(tmp_path_factory.mktemp("cli-cache"))}


@pytest.fixture(scope="module")
def trained_run(shakespeare_file: Path, tmp_path_factory: pytest.TempPathFactory,
                cli_cache: dict[str, str]) -> tuple[Path, Path]:
    """(config file, run dir) of a tiny run trained by ``textune train`` from a data: section."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "excerpt.txt"
    corpus.write_text(shakespeare_file.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": str(corpus), "tokenizer": {"kind": "char"}}, **TINY["transformer"],
        "batch_size": 8, "max_tokens": 4096, "eval_every_tokens": 2048, "eval_max_blocks": 8, "sample_tokens": 20,
        "num_threads": 1, "device": "cpu"}), encoding="utf-8")
    run_dir = root / "run"
    result = run_textune("train", str(config), "--run-dir", str(run_dir), env=cli_cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("completed: 4,096 tokens")
    assert "[running] tokens 2,048 | val_bpc" in result.stderr and "[completed] tokens 4,096" in result.stderr
    return config, run_dir


def test_train_writes_a_run_dir_and_refuses_to_overwrite_it(trained_run: tuple[Path, Path],
                                                            cli_cache: dict[str, str]) -> None:
    config, run_dir = trained_run
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "tensorboard"]
    before = sorted(str(p) for p in run_dir.rglob("*"))
    result = run_textune("train", str(config), "--run-dir", str(run_dir), env=cli_cache)
    assert_user_error(result, str(run_dir), "already exists", "--resume")
    assert sorted(str(p) for p in run_dir.rglob("*")) == before


def test_train_resume_continues_from_the_last_checkpoint(trained_run: tuple[Path, Path], tmp_path: Path,
                                                         cli_cache: dict[str, str]) -> None:
    config, run_dir = trained_run

    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    result = run_textune("train", str(config), "--run-dir", str(resumed), "--resume", "--set", "max_tokens=6144",
                         env=cli_cache)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stderr and "tokens_4096" in result.stderr
    assert [m["tokens"] for m in read_metrics(resumed)] == [2048, 4096, 6144]


def test_generate_is_deterministic_under_a_seed_and_reports_diversity(trained_run: tuple[Path, Path]) -> None:
    _, run_dir = trained_run
    args = ["generate", str(run_dir), "--prompt", "First", "--max-new-tokens", "30", "--top-k", "20",
            "--num-samples", "2"]
    first, again = (run_textune(*args, "--seed", "1") for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout.count("First") >= 2 and "--- sample 2 ---" in first.stdout
    assert "distinct-1" in first.stderr and "distinct-2" in first.stderr


@pytest.mark.parametrize(("args", "fragments"), [
    (["train", "{config}", "--run-dir", "{tmp}/new", "--set", "n_layer=3"], ['unknown key "n_layer"', "n_layers"]),
    (["train", "{config}", "--run-dir", "{tmp}/new", "--set", "lr=-1"], ['"lr" = -1']),
    (["train", "{config}", "--run-dir", "{tmp}/new", "--resume"], ["no intact checkpoint"]),
    (["generate", "{run}", "--prompt", ""], ["--prompt", "no tokens"]),
], ids=["unknown-key", "negative-lr", "resume-nothing", "empty-prompt"])
def test_user_mistakes_get_one_paragraph_and_exit_2(trained_run: tuple[Path, Path], tmp_path: Path,
                                                    cli_cache: dict[str, str], args: list[str],
                                                    fragments: list[str]) -> None:
    config, run_dir = trained_run
    filled = [a.format(config=config, tmp=tmp_path, run=run_dir) for a in args]
    assert_user_error(run_textune(*filled, env=cli_cache), *fragments)
    assert not (tmp_path / "new" / "checkpoints").exists()
