"""``textune data`` as a user runs it: prepare, inspect, and every bad input as one clear paragraph."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_user_error, run_textune
from data_pipeline.reader import TokenDataset

# Every test runs the CLI in a subprocess (about 2 s each on 2 cores): the whole module is `make test`'s only.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tokenizer", [["char"], ["byte"], ["bpe", "--vocab-size", "300"]], ids=lambda t: t[0])
def test_prepare_prints_the_summary_and_inspect_decodes_a_sample(tokenizer: list[str], tmp_path: Path) -> None:
    prepared = run_textune(
        "data", "prepare", "synthetic", "--tokenizer", *tokenizer, "--characters", "60000", "--out", str(tmp_path)
    )
    assert prepared.returncode == 0, prepared.stderr
    assert f"tokenizer: {tokenizer[0]}" in prepared.stdout
    assert "floor:" in prepared.stdout and "nats/token" in prepared.stdout
    dataset_dir = prepared.stdout.strip().splitlines()[-1].removeprefix("dataset:").strip()
    assert Path(dataset_dir).parent == tmp_path
    again = run_textune(
        "data", "prepare", "synthetic", "--tokenizer", *tokenizer, "--characters", "60000", "--out", str(tmp_path)
    )
    assert again.stdout == prepared.stdout  # the second run found the same dataset
    inspected = run_textune("data", "inspect", dataset_dir, "--json")
    assert inspected.returncode == 0, inspected.stderr
    manifest_json, sample = inspected.stdout.split("\n--- first ", 1)
    assert json.loads(manifest_json)["tokenizer"]["kind"] == tokenizer[0]
    sentences = sample.split("---\n", 1)[1].split(".\n")
    assert len(sentences) > 2 and sentences[1][:1].isupper()  # decoded text: sentences start with a capital


def test_byte_tokenizer_accepts_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    raw = "caf\u00e9 au lait\n".encode("latin-1") * 50
    (tmp_path / "latin1.txt").write_bytes(raw)
    result = run_textune("data", "prepare", str(tmp_path / "latin1.txt"), "--tokenizer", "byte")
    assert result.returncode == 0, result.stderr
    dataset = TokenDataset.open(result.stdout.strip().splitlines()[-1].removeprefix("dataset:").strip())
    decoded = "".join(dataset.tokenizer.decode(dataset.tokens[split]) for split in ("train", "val", "test"))
    assert decoded.encode("utf-8", "surrogateescape") == raw  # every byte kept as it was


def test_prepare_with_a_model_s_tokenizer_gives_the_dataset_of_the_spec_s_pretrained_tokenizer(
    shakespeare_file: Path, tmp_path: Path
) -> None:
    from data_pipeline.config import DataConfig
    from data_pipeline.prepare import prepare_dataset
    from data_pipeline.tokenization import BpeTokenizer
    from textune.config import validate

    text = shakespeare_file.read_text(encoding="utf-8")[:60_000]
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    (tmp_path / "my-model").mkdir()
    BpeTokenizer.train(text, 300).save(tmp_path / "my-model")  # as save_pretrained leaves a tokenizer.json
    # A path relative to the working directory, as a user types it.
    prepared = run_textune(
        "data",
        "prepare",
        "corpus.txt",
        "--tokenizer",
        "pretrained",
        "--tokenizer-path",
        "my-model",
        "--out",
        "out",
        cwd=tmp_path,
    )
    assert prepared.returncode == 0, prepared.stderr
    assert "tokenizer: pretrained (vocab 300," in prepared.stdout
    dataset_dir = Path(prepared.stdout.strip().splitlines()[-1].removeprefix("dataset:").strip())
    assert dataset_dir.parent == tmp_path / "out"
    spec_form = {
        "source": str(tmp_path / "corpus.txt"),
        "tokenizer": {"kind": "pretrained", "path": str(tmp_path / "my-model" / "tokenizer.json")},
    }
    assert prepare_dataset(validate(DataConfig, spec_form, "data:"), tmp_path / "out") == dataset_dir


@pytest.mark.parametrize("command", [("data",), ("data", "prepare"), ("data", "inspect")])
def test_help(command: tuple[str, ...]) -> None:
    result = run_textune(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_prepare_takes_its_defaults_from_the_data_config() -> None:
    from data_pipeline.config import DataConfig

    shown = " ".join(run_textune("data", "prepare", "--help").stdout.split())  # click wraps the help text
    assert "[default: 0.9,0.05,0.05]" in shown and "[default: char]" in shown and "default 1024" in shown
    assert DataConfig().split.fractions() == {"train": 0.9, "val": 0.05, "test": 0.05}


def _file(name: str, content: bytes) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        (root / name).write_bytes(content)
        return str(root / name)

    return make


def _parquet_without_text(root: Path) -> str:
    pq.write_table(pa.table({"body": ["some text"], "id": [1]}), root / "corpus.parquet")
    return str(root / "corpus.parquet")


def _file_in_the_way(root: Path) -> str:
    (root / "taken").write_text("a file, not a directory")
    return str(root / "taken" / "datasets")


# (id, makes the SOURCE, extra arguments, fragments the message must contain)
BAD_INPUTS = [
    ("missing-path", lambda root: str(root / "nowhere.txt"), [], ["nowhere.txt", "does not exist"]),
    ("empty-file", _file("empty.txt", b""), [], ["empty.txt", "holds no text"]),
    (
        "non-utf8-char",
        _file("bad.txt", b"hello\nw\xf6rld\n"),
        [],
        ["bad.txt", "line 2, byte offset 7", "--tokenizer byte"],
    ),
    ("non-utf8-bpe", _file("bad.txt", b"ok\xff"), ["--tokenizer", "bpe"], ["bad.txt", "line 1, byte offset 2"]),
    (
        "non-utf8-jsonl",
        _file("c.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n'),
        [],
        ["c.jsonl is not UTF-8", "line 2, byte offset 24"],
    ),
    ("parquet-without-column", _parquet_without_text, [], ['no column "text"', "body", "--text-column"]),
    ("malformed-jsonl", _file("c.jsonl", b'{"text": "a"}\n{"text": "b"\n'), [], ["c.jsonl line 2", "JSON"]),
    ("jsonl-without-field", _file("c.jsonl", b'{"body": "a"}\n'), [], ['line 1 has no "text"', "--text-field"]),
    (
        "bpe-vocab-below-alphabet",
        lambda root: "synthetic",
        ["--tokenizer", "bpe", "--vocab-size", "100"],
        ["--vocab-size 100 is invalid", "256"],
    ),
    ("unknown-source-name", lambda root: "shakespear", [], ['"shakespear"', 'Did you mean "shakespeare"?']),
    ("bad-split", lambda root: "synthetic", ["--split", "0.9,0.2,0.1"], ["--split is invalid", "sum to 1"]),
    ("split-not-three-numbers", lambda root: "synthetic", ["--split", "0.9,0.1"], ['--split "0.9,0.1"']),
    (
        "tokenizer-path-without-pretrained",
        lambda root: "synthetic",
        ["--tokenizer-path", "my-model"],
        ["--tokenizer-path", "only the pretrained tokenizer is read from a path; the char tokenizer"],
    ),
    (
        "pretrained-without-path",
        lambda root: "synthetic",
        ["--tokenizer", "pretrained"],
        ["--tokenizer-path is not given", "the model's save_pretrained directory"],
    ),
]


@pytest.mark.parametrize("make_source, extra, fragments", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_paragraph_with_exit_code_2(
    make_source: Callable[[Path], str], extra: list[str], fragments: list[str], tmp_path: Path
) -> None:
    result = run_textune("data", "prepare", make_source(tmp_path), *extra)
    assert_user_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_dir_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    out = _file_in_the_way(tmp_path)
    result = run_textune("data", "prepare", "synthetic", "--out", out)
    assert_user_error(result, "'--out'", out, "is a file, not a directory")
    assert (tmp_path / "taken").read_text() == "a file, not a directory"


def test_inspect_refuses_a_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    assert_user_error(run_textune("data", "inspect", str(tmp_path)), str(tmp_path), "manifest.json")
