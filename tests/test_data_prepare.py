"""Preparing datasets: every source format, the manifest, content-addressed caching, concurrency."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import REPO_ROOT
from data_pipeline.config import DataConfig, SplitConfig, SyntheticConfig, TokenizerConfig
from data_pipeline.prepare import prepare_dataset
from data_pipeline.reader import TokenDataset
from textune.errors import TextuneError

DOCUMENTS = 3


@pytest.fixture
def documents(shakespeare_file: Path) -> list[str]:
    """Three documents of Shakespeare, each ending with a newline (as every document does in a corpus)."""
    lines = shakespeare_file.read_text(encoding="utf-8")[:60_000].splitlines(keepends=True)
    size = len(lines) // DOCUMENTS
    return ["".join(lines[i * size : (i + 1) * size]) for i in range(DOCUMENTS)]


def _write_source(kind: str, documents: list[str], root: Path, encoding: str = "utf-8", record_end: str = "\n") -> str:
    """The same documents in the format ``kind``; returns the source string a user would give.

    ``encoding`` and ``record_end`` shape the files textune decodes (text, JSONL): "utf-8-sig" writes a byte
    order mark, ``record_end`` ends each JSONL record.
    """
    table = pa.table({"id": list(range(len(documents))), "text": documents})
    if kind == "file":
        (root / "corpus.txt").write_text("".join(documents), encoding=encoding)
        return str(root / "corpus.txt")
    if kind in ("directory", "glob"):
        (root / "docs").mkdir()
        for i, document in enumerate(documents):
            (root / "docs" / f"part{i}.txt").write_text(document, encoding=encoding)
        return str(root / "docs") if kind == "directory" else str(root / "docs" / "part*.txt")
    if kind == "jsonl":
        lines = [json.dumps({"title": f"t{i}", "body": d}) for i, d in enumerate(documents)]
        (root / "corpus.jsonl").write_text(record_end.join(lines) + record_end, encoding=encoding)
        return str(root / "corpus.jsonl")
    if kind == "parquet":
        pq.write_table(table.rename_columns(["id", "content"]), root / "corpus.parquet")
        return str(root / "corpus.parquet")
    if kind == "feather":
        feather.write_feather(table.rename_columns(["id", "content"]), root / "corpus.feather")
        return str(root / "corpus.feather")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["file", "directory", "glob", "jsonl", "parquet", "feather"])
def test_every_source_format_yields_the_same_corpus(kind: str, documents: list[str], tmp_path: Path) -> None:
    source = _write_source(kind, documents, tmp_path)
    dataset = TokenDataset.open(prepare_dataset(DataConfig(source=source, text_field="body", text_column="content")))
    corpus = "".join(documents)
    decoded = "".join(dataset.tokenizer.decode(dataset.tokens[split]) for split in ("train", "val", "test"))
    assert decoded == corpus
    # Content-addressed: the same text in any format has the same hash, hence the same dataset key.
    assert dataset.manifest.source.content_hash == hashlib.sha256(corpus.encode()).hexdigest()


@pytest.mark.parametrize("line_end", ["\r\n", "\r"], ids=["crlf", "cr"])
@pytest.mark.parametrize("kind", ["file", "directory", "jsonl", "parquet", "feather"])
def test_byte_order_marks_and_line_endings_read_alike_in_every_kind(
    kind: str, line_end: str, documents: list[str], tmp_path: Path
) -> None:
    """Text saved with a UTF-8 byte order mark and CRLF (or old Mac CR) line endings, in any format, gives the
    corpus the same text with LF endings gives, so it shares its dataset."""
    foreign = [document.replace("\n", line_end) for document in documents]
    assert foreign[0] != documents[0]
    # Tables hold decoded strings, so only their line endings differ; files carry the marker too.
    source = _write_source(kind, foreign, tmp_path, encoding="utf-8-sig", record_end="\r\n")
    dataset = TokenDataset.open(prepare_dataset(DataConfig(source=source, text_field="body", text_column="content")))
    corpus = "".join(documents)
    decoded = "".join(dataset.tokenizer.decode(dataset.tokens[split]) for split in ("train", "val", "test"))
    assert decoded == corpus
    assert dataset.manifest.source.content_hash == hashlib.sha256(corpus.encode()).hexdigest()


def test_s3_source_through_pyarrow_filesystem(documents: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Parquet dataset under an s3:// prefix, served by moto on loopback (run inside the loopback namespace)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        s3 = pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        s3.create_dir("corpora")
        for i, document in enumerate(documents):  # one file per document, read in sorted order
            pq.write_table(pa.table({"text": [document]}), f"corpora/plays/part{i}.parquet", filesystem=s3)
        dataset = TokenDataset.open(prepare_dataset(DataConfig(source=f"s3://corpora/plays?{options}")))
    finally:
        server.stop()
    assert dataset.manifest.source.content_hash == hashlib.sha256("".join(documents).encode()).hexdigest()


def test_manifest_records_counts_fractions_and_floor() -> None:
    config = DataConfig(
        source="synthetic",
        synthetic=SyntheticConfig(characters=200_000),
        tokenizer=TokenizerConfig(kind="bpe", vocab_size=300),
        split=SplitConfig(train=0.8, val=0.15, test=0.05),
    )
    dataset = TokenDataset.open(prepare_dataset(config))
    manifest = dataset.manifest
    assert manifest.schema_version == 1 and manifest.data == config
    assert manifest.split_fractions == {"train": 0.8, "val": 0.15, "test": 0.05}
    assert [manifest.splits[s].characters for s in ("train", "val", "test")] == [160_000, 30_000, 10_000]
    for name, split in manifest.splits.items():
        assert split.tokens == dataset.num_tokens(name) > 0
        assert split.chars_per_token == pytest.approx(split.characters / split.tokens)
    floor = manifest.entropy_floor
    assert floor is not None and manifest.token_dtype == "uint16"
    assert floor.bits_per_char == pytest.approx(floor.nats_per_char / math.log(2))
    assert floor.nats_per_token == pytest.approx(floor.nats_per_char * manifest.splits["val"].chars_per_token)
    assert (dataset.path / "tokenizer.json").is_file()


def test_preparing_twice_is_a_no_op(tmp_path: Path) -> None:
    config = DataConfig(synthetic=SyntheticConfig(characters=50_000))
    first = prepare_dataset(config, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert prepare_dataset(config, tmp_path) == first
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamps
    changed = [
        config.model_copy(update={"tokenizer": TokenizerConfig(kind="byte")}),
        config.model_copy(update={"split": SplitConfig(train=0.8, val=0.1, test=0.1)}),
        config.model_copy(update={"synthetic": SyntheticConfig(characters=50_000, seed=1)}),
    ]
    assert len({first} | {prepare_dataset(c, tmp_path) for c in changed}) == 4


@pytest.mark.slow
def test_concurrent_preparers_produce_one_valid_dataset(tmp_path: Path) -> None:
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO)\n"
        "from data_pipeline.config import DataConfig, SyntheticConfig\n"
        "from data_pipeline.prepare import prepare_dataset\n"
        "print(prepare_dataset(DataConfig(synthetic=SyntheticConfig(characters=3_000_000)), sys.argv[1]))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=REPO_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    paths = {stdout.strip() for stdout, _ in outputs}
    assert len(paths) == 1
    assert sum(stderr.count("preparing synthetic") for _, stderr in outputs) == 1  # built exactly once
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [Path(paths.pop()).name]
    dataset = TokenDataset.open(next(p for p in tmp_path.iterdir() if p.is_dir()))
    assert sum(dataset.manifest.splits[s].characters for s in dataset.tokens) == 3_000_000


def test_a_dataset_without_its_manifest_is_never_read_and_gets_rebuilt(tmp_path: Path) -> None:
    config = DataConfig(synthetic=SyntheticConfig(characters=50_000))
    path = prepare_dataset(config, tmp_path)
    (path / "manifest.json").unlink()  # as if a build had been cut off
    stale = tmp_path / f".building-{path.name}-x1"
    stale.mkdir()
    with pytest.raises(TextuneError, match="not a prepared dataset"):
        TokenDataset.open(path)
    assert prepare_dataset(config, tmp_path) == path
    assert TokenDataset.open(path).num_tokens("train") == 45_000
    assert not stale.exists()


def test_splits_are_contiguous_and_in_order(tmp_path: Path, documents: list[str]) -> None:
    source = _write_source("file", documents, tmp_path)
    dataset = TokenDataset.open(prepare_dataset(DataConfig(source=source, tokenizer=TokenizerConfig(kind="byte"))))
    corpus = "".join(documents)
    train_end = round(0.9 * len(corpus))
    assert dataset.tokenizer.decode(dataset.tokens["train"]) == corpus[:train_end]
    assert dataset.tokenizer.decode(dataset.tokens["test"]) == corpus[round(0.95 * len(corpus)) :]
