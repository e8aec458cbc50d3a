"""``textune data``: prepare a corpus into token shards, inspect a prepared dataset."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import get_args

import click

from data_pipeline.config import BPE_BASE_ALPHABET, DEFAULT_BPE_VOCAB_SIZE, DataConfig, TokenizerConfig
from textune.errors import TextuneError
from tune_jobs.cli.params import LocalPath

_SAMPLE_CHARS = 300
# The options' defaults are DataConfig's, so `--help` and the config cannot disagree.
_DEFAULTS = DataConfig()
_DEFAULT_SPLIT = ",".join(f"{fraction:g}" for fraction in _DEFAULTS.split.fractions().values())
_TOKENIZER_KINDS = get_args(TokenizerConfig.model_fields["kind"].annotation)
# The DataConfig key each argument of `data prepare` sets: a refused value is named by its option.
_FLAGS = {
    "source": "SOURCE",
    "text_field": "--text-field",
    "text_column": "--text-column",
    "tokenizer.kind": "--tokenizer",
    "tokenizer.vocab_size": "--vocab-size",
    "tokenizer.path": "--tokenizer-path",
    "split": "--split",
    "synthetic.seed": "--seed",
    "synthetic.characters": "--characters",
}


@click.group("data")
def data_group() -> None:
    """Prepare corpora into memory-mapped token datasets and inspect them."""


@data_group.command("prepare")
@click.argument("source")
@click.option(
    "--tokenizer",
    "tokenizer_kind",
    type=click.Choice(_TOKENIZER_KINDS),
    default=_DEFAULTS.tokenizer.kind,
    show_default=True,
    help="char: one id per character; byte: 256 ids; bpe: byte-level BPE; pretrained: a model's own "
    "tokenizer.json (--tokenizer-path).",
)
@click.option(
    "--tokenizer-path",
    type=LocalPath("any"),
    default=_DEFAULTS.tokenizer.path,
    help="pretrained only: a model's save_pretrained directory holding tokenizer.json, or that file (read, "
    "never fetched from a hub).",
)
@click.option(
    "--vocab-size",
    type=int,
    help=f"BPE vocabulary size (at least {BPE_BASE_ALPHABET}; default {DEFAULT_BPE_VOCAB_SIZE}).",
)
@click.option("--text-field", default=_DEFAULTS.text_field, show_default=True, help="JSONL key holding the text.")
@click.option(
    "--text-column", default=_DEFAULTS.text_column, show_default=True, help="Parquet/Arrow column holding the text."
)
@click.option(
    "--split",
    "split_spec",
    default=_DEFAULT_SPLIT,
    show_default=True,
    help="train,val,test fractions of the corpus (contiguous, in that order).",
)
@click.option("--seed", type=int, help="synthetic only: generator seed.")
@click.option("--characters", type=int, help="synthetic only: corpus size in characters.")
@click.option(
    "--out", type=LocalPath("dir"), help="Directory to hold the dataset (default: $TEXTUNE_CACHE_DIR/datasets)."
)
def prepare_command(
    source: str,
    tokenizer_kind: str,
    tokenizer_path: Path | None,
    vocab_size: int | None,
    text_field: str,
    text_column: str,
    split_spec: str,
    seed: int | None,
    characters: int | None,
    out: Path | None,
) -> None:
    """Tokenize SOURCE once into Arrow token shards and print the manifest summary.

    SOURCE is a text file, a directory or glob of files, a .jsonl/.parquet/.arrow/.feather path or URI
    (s3://bucket/key), or a built-in: synthetic, shakespeare. Preparing the same thing again is a no-op.
    """
    from data_pipeline.manifest import Manifest
    from data_pipeline.prepare import prepare_dataset
    from textune.config import validate

    synthetic = {key: value for key, value in (("seed", seed), ("characters", characters)) if value is not None}
    given = click.get_current_context().get_parameter_source
    _refuse_options_for_other_sources(
        source,
        {
            "--seed": seed is not None,
            "--characters": characters is not None,
            "--text-field": given("text_field") is not click.core.ParameterSource.DEFAULT,
            "--text-column": given("text_column") is not click.core.ParameterSource.DEFAULT,
        },
    )
    fields = {
        "source": source,
        "text_field": text_field,
        "text_column": text_column,
        "tokenizer": {
            "kind": tokenizer_kind,
            "vocab_size": vocab_size,
            "path": None if tokenizer_path is None else str(tokenizer_path),
        },
        "split": _parse_split(split_spec),
        "synthetic": synthetic,
    }
    config = validate(DataConfig, fields, "textune data prepare", flags=_FLAGS)
    path = prepare_dataset(config, out)
    click.echo(Manifest.read(path).summary())
    click.echo(f"dataset:   {path}")


def _refuse_options_for_other_sources(source: str, given: dict[str, bool]) -> None:
    """Refuse an option given for a source it cannot apply to (``--seed`` for a text file, ``--text-field`` for
    a Parquet file): it would be ignored without a word. A directory, glob or URI without a file suffix may hold
    files of any format, so only a built-in or a single file's suffix rules an option out."""
    from data_pipeline.sources import BUILTINS, TABULAR_FORMATS

    suffix = "" if source in BUILTINS or glob.has_magic(source) or Path(source).is_dir() else Path(source).suffix
    suffix = suffix.lower()
    synthetic_only = (source == "synthetic", "the synthetic source", "Drop the option, or prepare synthetic.")
    by_format = (
        "Drop the option: a .jsonl file is read by --text-field, a Parquet/Arrow file by --text-column, others whole."
    )
    applies = {  # option: (applies to this source, the sources it applies to, the hint)
        "--seed": synthetic_only,
        "--characters": synthetic_only,
        "--text-field": (
            source not in BUILTINS and suffix in ("", ".jsonl"),
            "JSONL sources (.jsonl)",
            by_format,
        ),
        "--text-column": (
            source not in BUILTINS and suffix in ("", *TABULAR_FORMATS),
            f"Parquet/Arrow sources ({', '.join(TABULAR_FORMATS)})",
            by_format,
        ),
    }
    for option, is_given in given.items():
        fits, sources, hint = applies[option]
        if is_given and not fits:
            raise TextuneError(f'{option} applies to {sources} only, not "{source}".', hint)


@data_group.command("inspect")
@click.argument("directory", type=LocalPath("dir", must_exist=True))
@click.option("--split", default="val", show_default=True, help="Split to decode the sample from.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect_command(directory: Path, split: str, as_json: bool) -> None:
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
        raise TextuneError(
            f'--split "{spec}" is not three comma-separated fractions.',
            f"Write it as train,val,test, e.g. --split {_DEFAULT_SPLIT}.",
        ) from exc
    return {"train": train, "val": val, "test": test}
