"""``textune data``: prepare a corpus into token shards, inspect a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import click

from textune.errors import TextuneError
from tune_jobs.cli.params import LocalPath

_SAMPLE_CHARS = 300


@click.group()
def data() -> None:
    """Prepare corpora into memory-mapped token datasets and inspect them."""


@data.command()
@click.argument("source")
@click.option("--tokenizer", "tokenizer_kind", type=click.Choice(["char", "byte", "bpe"]), default="char",
              show_default=True, help="char: one id per character; byte: 256 ids; bpe: byte-level BPE.")
@click.option("--vocab-size", type=int, help="BPE vocabulary size (at least 256; default 1024).")
@click.option("--text-field", default="text", show_default=True, help="JSONL key holding the text.")
@click.option("--text-column", default="text", show_default=True, help="Parquet/Arrow column holding the text.")
@click.option("--split", "split_spec", default="0.9,0.05,0.05", show_default=True,
              help="train,val,test fractions of the corpus (contiguous, in that order).")
@click.option("--seed", type=int, help="synthetic only: generator seed.")
@click.option("--characters", type=int, help="synthetic only: corpus size in characters.")
@click.option("--out", type=LocalPath("dir"),
              help="Directory to hold the dataset (default: $TEXTUNE_CACHE_DIR/datasets).")
def prepare(source: str, tokenizer_kind: str, vocab_size: int | None, text_field: str, text_column: str,
            split_spec: str, seed: int | None, characters: int | None, out: Path | None) -> None:
    """Tokenize SOURCE once into Arrow token shards and print the manifest summary.

    SOURCE is a text file, a directory or glob of files, a .jsonl/.parquet/.arrow/.feather path or URI
    (s3://bucket/key), or a built-in: synthetic, shakespeare. Preparing the same thing again is a no-op.
    """
    from data_pipeline.config import DataConfig
    from data_pipeline.manifest import Manifest
    from data_pipeline.prepare import prepare_dataset
    from textune.config import validate

    synthetic = {key: value for key, value in (("seed", seed), ("characters", characters)) if value is not None}
    if synthetic and source != "synthetic":
        raise TextuneError(f"--{next(iter(synthetic))} applies to the synthetic source only, not \"{source}\".",
                           "Drop the option, or prepare synthetic.")
    fields = {"source": source, "text_field": text_field, "text_column": text_column,
              "tokenizer": {"kind": tokenizer_kind, "vocab_size": vocab_size},
              "split": _parse_split(split_spec), "synthetic": synthetic}
    config = validate(DataConfig, fields, "textune data prepare")
    path = prepare_dataset(config, out)
    click.echo(Manifest.read(path).summary())
    click.echo(f"dataset:   {path}")


@data.command()
@click.argument("directory", type=LocalPath("dir", must_exist=True))
@click.option("--split", default="val", show_default=True, help="Split to decode the sample from.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect(directory: Path, split: str, as_json: bool) -> None:
    """Print the manifest of a prepared dataset and a decoded sample of one split."""
    from data_pipeline.reader import TokenDataset
    from data_pipeline.tokenization import printable

    dataset = TokenDataset.open(directory)
    click.echo(dataset.manifest.model_dump_json(indent=2) if as_json else dataset.manifest.summary())
    chars_per_token = dataset.chars_per_token(split) or 1.0  # raises for an unknown split; 0 when empty
    count = max(1, round(_SAMPLE_CHARS / chars_per_token))
    text = dataset.tokenizer.decode(dataset.tokens[split][:count])
    click.echo(f"--- first {count} tokens of {split} ---\n{printable(text)}")  # undecodable bytes as U+FFFD


def _parse_split(spec: str) -> dict[str, float]:
    parts = [part.strip() for part in spec.split(",")]
    try:
        train, val, test = (float(part) for part in parts)
    except ValueError as exc:
        raise TextuneError(f'--split "{spec}" is not three comma-separated fractions.',
                           "Write it as train,val,test, e.g. --split 0.9,0.05,0.05.") from exc
    return {"train": train, "val": val, "test": test}
