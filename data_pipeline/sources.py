"""From a ``source`` string to one corpus of text.

A source is a built-in (``synthetic``, ``shakespeare``), a local path (file, directory or glob) or a URI
that pyarrow's filesystems understand (``s3://bucket/key``, ``file:///...``). Paths are expanded to files,
read in sorted order and each file is read by its extension: ``.jsonl`` (one JSON object per line, text in
``text_field``), ``.parquet`` / ``.arrow`` / ``.feather`` (through ``pyarrow.dataset``, text in
``text_column``), anything else as text.

Every kind reads alike, so the same text gives the same corpus (and cache entry) in any format: files are
decoded in one place (:func:`_decode`, which drops a leading UTF-8 byte order mark), and every document (a
file, a JSONL record, a table row) passes through one place (:func:`_as_document`), which turns CRLF and lone
CR line endings into LF and ends the document with a newline.

The corpus is decoded strictly as UTF-8 for the char and BPE tokenizers; for the byte tokenizer undecodable
bytes are kept as lone surrogates ("surrogateescape") and survive byte for byte.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from data_pipeline.config import DataConfig
from data_pipeline.synthetic import EntropyRate, MarkovSource
from textune.config import did_you_mean
from textune.errors import TextuneError

BUILTINS = ("synthetic", "shakespeare")
TABULAR_FORMATS = {".parquet": "parquet", ".arrow": "ipc", ".feather": "ipc"}


@dataclass(frozen=True)
class Corpus:
    text: str
    description: str
    content_hash: str  # sha256 of the corpus text (UTF-8), so equal text in any format shares a cache entry
    entropy: EntropyRate | None = None


def load_corpus(config: DataConfig) -> Corpus:
    """Read the configured source into one string, or raise a TextuneError naming the source."""
    errors = "surrogateescape" if config.tokenizer.kind == "byte" else "strict"
    if config.source == "synthetic":
        source = MarkovSource(config.synthetic)
        options = config.synthetic
        description = (
            f"synthetic (seed={options.seed}, characters={options.characters}, "
            f"words={options.words}, branching={options.branching})"
        )
        return _corpus(source.generate(options.characters), description, source.entropy_rate())
    if config.source == "shakespeare":
        from data_pipeline.shakespeare import shakespeare_file

        path = shakespeare_file()
        return _corpus(_as_document(_decode(path.read_bytes(), str(path), errors)), f"shakespeare ({path})")
    filesystem, files = _expand(config.source)
    text = "".join(
        _as_document(document) for name in files for document in _read_file(filesystem, name, config, errors)
    )
    if not text.strip():
        raise TextuneError(
            f'data source "{config.source}" holds no text ({len(files)} file(s), all empty).',
            "Point data.source at a file with text in it.",
        )
    return _corpus(text, f"{config.source} ({len(files)} file(s))")


def _as_document(text: str) -> str:
    """One document as it enters the corpus, whatever its source kind: LF line endings, a final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _corpus(text: str, description: str, entropy: EntropyRate | None = None) -> Corpus:
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return Corpus(text=text, description=description, content_hash=digest, entropy=entropy)


def _expand(source: str) -> tuple[pafs.FileSystem, list[str]]:
    """The filesystem and the sorted files a path, directory, glob or URI stands for."""
    if "://" in source:
        try:
            filesystem, root = pafs.FileSystem.from_uri(source)
            info = filesystem.get_file_info(root)
        except (OSError, ValueError) as exc:
            raise TextuneError(
                f'data source "{source}" cannot be opened: {exc}', "Check the URI, the bucket and the credentials."
            ) from exc
        if info.type == pafs.FileType.NotFound:
            raise TextuneError(f'data source "{source}" does not exist.', "Check the URI.")
        if info.type == pafs.FileType.Directory:
            listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
            files = sorted(
                i.path for i in listing if i.type == pafs.FileType.File and not _hidden(Path(i.path).relative_to(root))
            )
        else:
            files = [root]
        return filesystem, _non_empty(files, source)
    local = pafs.LocalFileSystem()
    if glob.has_magic(source):
        matches = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
        return local, _non_empty([str(Path(p).resolve()) for p in matches], source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(str(p.resolve()) for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
        return local, _non_empty(files, source)
    if path.is_file():
        return local, [str(path.resolve())]
    looks_like_name = "/" not in source and "." not in source
    if looks_like_name:
        raise TextuneError(
            f'data source "{source}" is neither a built-in nor an existing path.{did_you_mean(source, BUILTINS)}',
            f"Built-ins: {', '.join(BUILTINS)}; or give a file, directory, glob or URI.",
        )
    raise TextuneError(
        f'data source "{source}" does not exist ({path.resolve()}).',
        "Check the path, or give a directory, glob or URI.",
    )


def _non_empty(files: list[str], source: str) -> list[str]:
    if not files:
        raise TextuneError(f'data source "{source}" matches no files.', "Check the directory or glob pattern.")
    return files


def _hidden(relative: Path) -> bool:
    """Dot files and anything inside dot directories (.git, .cache) are not part of a corpus."""
    return any(part.startswith(".") for part in relative.parts)


def _read_file(filesystem: pafs.FileSystem, name: str, config: DataConfig, errors: str) -> Iterator[str]:
    suffix = Path(name).suffix.lower()
    if suffix in TABULAR_FORMATS:
        yield from _read_table(filesystem, name, TABULAR_FORMATS[suffix], config.text_column)
        return
    try:
        with filesystem.open_input_stream(name) as stream:
            data = stream.read()
    except OSError as exc:
        raise TextuneError(
            f"{name} cannot be read: {exc}", "Check the file's permissions (or the URI's credentials)."
        ) from exc
    text = _decode(data, name, errors)
    if suffix == ".jsonl":
        yield from _read_jsonl(text, name, config.text_field)
    else:
        yield text


def _decode(data: bytes, name: str, errors: str) -> str:
    """A file's bytes as text: UTF-8, without the byte order mark some editors put first (an encoding marker,
    not text). The error names the line and byte offset of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8", errors).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TextuneError(
            f"{name} is not UTF-8 text: invalid byte {data[exc.start : exc.start + 1]!r} at "
            f"line {line}, byte offset {exc.start}.",
            "Convert the file to UTF-8 (e.g. iconv -t UTF-8), or use the byte tokenizer "
            "(--tokenizer byte), which accepts any bytes.",
        ) from exc


def _read_jsonl(text: str, name: str, field: str) -> Iterator[str]:
    # Records end at LF only: a CR before it is JSON whitespace, and str.splitlines would also split at
    # characters JSON strings may hold raw (U+2028, form feeds).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextuneError(
                f"{name} line {number} is not valid JSON: {exc.msg} (column {exc.colno}).",
                "Write one JSON object per line (JSONL).",
            ) from exc
        if not isinstance(record, dict) or field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise TextuneError(
                f'{name} line {number} has no "{field}" field (it has: {keys}).',
                "Set data.text_field (--text-field) to the key that holds the text.",
            )
        value = record[field]
        if not isinstance(value, str):
            raise TextuneError(
                f'{name} line {number}: "{field}" holds {type(value).__name__}, not text.',
                "Set data.text_field (--text-field) to the key that holds the text.",
            )
        yield value


def _read_table(filesystem: pafs.FileSystem, name: str, file_format: str, column: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(name, format=file_format, filesystem=filesystem)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TextuneError(
            f"{name} cannot be read as {file_format}: {exc}", "Check that the file is what its extension says."
        ) from exc
    if column not in dataset.schema.names:
        raise TextuneError(
            f'{name} has no column "{column}" (columns: {", ".join(dataset.schema.names)}).'
            f"{did_you_mean(column, dataset.schema.names)}",
            "Set data.text_column (--text-column) to the column that holds the text.",
        )
    field_type = dataset.schema.field(column).type
    if not (pa.types.is_string(field_type) or pa.types.is_large_string(field_type)):
        raise TextuneError(
            f'{name}: column "{column}" holds {field_type}, not text.',
            "Set data.text_column (--text-column) to a string column.",
        )
    values = dataset.to_table(columns=[column]).column(column).to_pylist()
    yield from (v for v in values if v is not None)
