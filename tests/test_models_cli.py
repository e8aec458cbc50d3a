"""``textune train`` and ``textune generate`` as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, assert_user_error, run_textune
from support.models import TINY, read_metrics

# Every test runs the CLI in a subprocess, most of them training: the whole module is `make test`'s only.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One dataset cache for the module's commands, so the data: section is prepared once."""
    return {"TEXTUNE_CACHE_DIR": str(tmp_path_factory.mktemp("cli-cache"))}


@pytest.fixture(scope="module")
def trained_run(
    shakespeare_file: Path, tmp_path_factory: pytest.TempPathFactory, cli_cache: dict[str, str]
) -> tuple[Path, Path]:
    """(config file, run dir) of a tiny run trained by ``textune train`` from a data: section."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "excerpt.txt"
    corpus.write_text(shakespeare_file.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    config = root / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(corpus), "tokenizer": {"kind": "char"}},
                **TINY["transformer"],
                "batch_size": 8,
                "max_tokens": 4096,
                "eval_every_tokens": 2048,
                "eval_max_blocks": 8,
                "sample_tokens": 20,
                "num_threads": 1,
                "device": "cpu",
            }
        ),
        encoding="utf-8",
    )
    run_dir = root / "run"
    result = run_textune("train", str(config), "--run-dir", str(run_dir), env=cli_cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("completed: 4,096 tokens")
    assert "[running] tokens 2,048 | val_bpc" in result.stderr and "[completed] tokens 4,096" in result.stderr
    return config, run_dir


def test_train_writes_a_run_dir_and_refuses_to_overwrite_it(
    trained_run: tuple[Path, Path], cli_cache: dict[str, str]
) -> None:
    config, run_dir = trained_run
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "tensorboard"]
    before = sorted(str(p) for p in run_dir.rglob("*"))
    result = run_textune("train", str(config), "--run-dir", str(run_dir), env=cli_cache)
    assert_user_error(result, str(run_dir), "already exists", "--resume")
    assert sorted(str(p) for p in run_dir.rglob("*")) == before


def test_train_resume_continues_from_the_last_checkpoint(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]
) -> None:
    config, run_dir = trained_run

    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    result = run_textune(
        "train", str(config), "--run-dir", str(resumed), "--resume", "--set", "max_tokens=6144", env=cli_cache
    )
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stderr and "tokens_4096" in result.stderr
    assert [m["tokens"] for m in read_metrics(resumed)] == [2048, 4096, 6144]


def test_generate_is_deterministic_under_a_seed_and_reports_diversity(trained_run: tuple[Path, Path]) -> None:
    _, run_dir = trained_run
    args = [
        "generate",
        str(run_dir),
        "--prompt",
        "First",
        "--max-new-tokens",
        "30",
        "--top-k",
        "20",
        "--num-samples",
        "2",
    ]
    first, again = (run_textune(*args, "--seed", "1") for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout.count("First") >= 2 and "--- sample 2 ---" in first.stdout
    assert "distinct-1" in first.stderr and "distinct-2" in first.stderr


def test_generate_warns_of_prompt_characters_the_tokenizer_never_saw(trained_run: tuple[Path, Path]) -> None:
    _, run_dir = trained_run
    result = run_textune("generate", str(run_dir), "--prompt", "a\u00a7b", "--max-new-tokens", "3")
    assert result.returncode == 0, result.stderr
    assert "never saw in training ('\u00a7')" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "{config}", "--run-dir", "{tmp}/new", "--set", "n_layer=3"], ['unknown key "n_layer"', "n_layers"]),
        (["train", "{config}", "--run-dir", "{tmp}/new", "--set", "lr=-1"], ['"lr" = -1']),
        (["train", "{config}", "--run-dir", "{tmp}/new", "--resume"], ["no intact checkpoint"]),
        (["generate", "{run}", "--prompt", ""], ["--prompt", "no tokens"]),
    ],
    ids=["unknown-key", "negative-lr", "resume-nothing", "empty-prompt"],
)
def test_user_mistakes_get_one_paragraph_and_exit_2(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str], args: list[str], fragments: list[str]
) -> None:
    config, run_dir = trained_run
    filled = [a.format(config=config, tmp=tmp_path, run=run_dir) for a in args]
    assert_user_error(run_textune(*filled, env=cli_cache), *fragments)
    assert not (tmp_path / "new" / "checkpoints").exists()


# --- exit statuses, failed starts, budgets and warnings of `textune train` ---------------------------------------


def _train(
    config: Path, run_dir: Path, cli_cache: dict[str, str], *settings: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    return run_textune("train", str(config), "--run-dir", str(run_dir), *overrides, env={**cli_cache, **(env or {})})


def test_train_that_diverges_exits_1(trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]) -> None:
    config, _ = trained_run
    result = _train(
        config,
        tmp_path / "run",
        cli_cache,
        "lr=1e30",
        "optimizer=sgd",
        "grad_clip=0",
        "max_tokens=512",
        "eval_every_tokens=256",
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("diverged: 256 tokens")
    assert "[diverged]" in result.stderr


def test_a_failed_start_leaves_no_run_dir_and_points_to_the_split(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]
) -> None:
    config, _ = trained_run
    run_dir = tmp_path / "new" / "run"
    # 0.00005 of the 40,000-character excerpt: a val split of 2 tokens, which no block_size (at least 2) fits.
    tiny_val = ("data.split.train=0.94995", "data.split.val=0.00005")
    failed = _train(config, run_dir, cli_cache, *tiny_val)
    # The split is known once the data is prepared: the preparation's log line comes first.
    assert failed.stderr.startswith("INFO data_pipeline.prepare: preparing")
    failed.stderr = failed.stderr.splitlines()[-1]
    assert_user_error(failed, 'the "val" split', "has 2 tokens", "Give the val split a larger fraction (data.split")
    assert "Lower block_size" not in failed.stderr
    assert not (tmp_path / "new").exists()
    # The block_size hint appears where it can help, and the corrected command is not refused.
    too_long = _train(config, run_dir, cli_cache, "block_size=4096", "max_tokens=32768", "eval_every_tokens=32768")
    assert_user_error(too_long, "block_size=4096", "Lower block_size to at most")
    assert not (tmp_path / "new").exists()
    retried = _train(config, run_dir, cli_cache, "max_tokens=512", "eval_every_tokens=512")
    assert retried.returncode == 0, retried.stderr


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]
) -> None:
    config, run_dir = trained_run
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}  # hides any GPU, so the test means the same on every machine
    trained = _train(config, tmp_path / "run", cli_cache, "device=cuda", env=no_gpu)
    assert_user_error(trained, f"training config {config}", '"device" asks for cuda', "Use cpu")
    assert not (tmp_path / "run").exists()
    generated = run_textune("generate", str(run_dir), "--device", "cuda", env=no_gpu)
    assert_user_error(generated, "--device asks for cuda", "no CUDA device")


def test_train_stops_exactly_at_the_budget_and_at_each_evaluation(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]
) -> None:
    config, _ = trained_run
    # A step is 8 blocks of 32 = 256 tokens: 1,000 and multiples of 300 fall between steps.
    result = _train(config, tmp_path / "run", cli_cache, "max_tokens=1000", "eval_every_tokens=300")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("completed: 1,000 tokens")
    assert [m["tokens"] for m in read_metrics(tmp_path / "run")] == [300, 600, 900, 1000]


def test_a_warmup_longer_than_the_budget_is_warned_about(
    trained_run: tuple[Path, Path], tmp_path: Path, cli_cache: dict[str, str]
) -> None:
    config, _ = trained_run
    result = _train(config, tmp_path / "run", cli_cache, "max_tokens=512", "eval_every_tokens=512", "warmup_tokens=600")
    assert result.returncode == 0, result.stderr
    assert "warning: warmup_tokens (600) is not below max_tokens (512)" in result.stderr
    quiet = _train(config, tmp_path / "run2", cli_cache, "max_tokens=512", "eval_every_tokens=512", "warmup_tokens=100")
    assert "warning" not in quiet.stderr


# --- `textune generate`: streaming, bounds, text that is not UTF-8 ----------------------------------------------


def test_generate_streams_a_long_sample_while_it_is_written(trained_run: tuple[Path, Path]) -> None:
    _, run_dir = trained_run
    command = [
        sys.executable,
        "-m",
        "tune_jobs.cli.main",
        "generate",
        str(run_dir),
        "--prompt",
        "First",
        "--max-new-tokens",
        "1000000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        first = process.stdout.read(200)  # a million tokens take minutes; these arrive in seconds
        assert first.startswith(b"First") and len(first) == 200
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module", params=["byte", "bpe"])
def subword_run(
    request: pytest.FixtureRequest,
    trained_run: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    cli_cache: dict[str, str],
) -> Path:
    """A tiny run whose tokenizer (byte or BPE) cuts characters into several tokens."""
    config, _ = trained_run
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    vocab = ["--set", "data.tokenizer.vocab_size=300"] if request.param == "bpe" else []
    result = run_textune(
        "train",
        str(config),
        "--run-dir",
        str(run_dir),
        "--set",
        f"data.tokenizer.kind={request.param}",
        *vocab,
        "--set",
        "max_tokens=512",
        "--set",
        "eval_every_tokens=512",
        env=cli_cache,
    )
    assert result.returncode == 0, result.stderr
    return run_dir


def test_samples_print_on_a_strict_utf8_stdout_and_take_a_prompt_that_is_not_utf8(subword_run: Path) -> None:
    # A high temperature makes invalid byte sequences likely (byte tokenizer); "\udcff" reaches argv as byte 0xff.
    result = run_textune(
        "generate",
        str(subword_run),
        "--prompt",
        "ab\udcff",
        "--temperature",
        "5",
        "--max-new-tokens",
        "200",
        "--num-samples",
        "2",
        env={"PYTHONIOENCODING": "utf-8:strict"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("--- sample 1 ---\nab\ufffd")
    assert "--- sample 2 ---\nab\ufffd" in result.stdout


def test_streamed_pieces_join_to_the_decoded_sample(shakespeare_file: Path) -> None:
    from data_pipeline.config import TokenizerConfig
    from data_pipeline.tokenization import train_tokenizer
    from models.generate import TextStream

    text = shakespeare_file.read_text(encoding="utf-8")[:20_000] + " déjà vu, ☃ and 𝄞"
    for config in (
        TokenizerConfig(kind="char"),
        TokenizerConfig(kind="byte"),
        TokenizerConfig(kind="bpe", vocab_size=300),
    ):
        tokenizer = train_tokenizer(config, text)
        ids = tokenizer.encode(text[-2000:])
        stream = TextStream(tokenizer)
        pieces = [stream.push(token) for token in ids]
        assert "".join(pieces) + stream.flush() == tokenizer.decode(ids), config.kind
        held_back = any(piece == "" for piece in pieces)  # a token that ends mid-character prints nothing yet
        assert held_back == (config.kind != "char"), config.kind
