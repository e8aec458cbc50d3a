"""Prepare a dataset once: corpus -> split -> tokenizer -> shards + manifest, content-addressed.

The directory name is a hash of the corpus text, the tokenizer config and the split config (and the
synthetic parameters, which also decide the recorded entropy floor; and a pretrained tokenizer's file content,
not its path), so preparing the same thing again returns the existing directory without touching it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

from data_pipeline.cache import building, cache_root, ensure_writable_dir, is_complete, locked
from data_pipeline.config import SPLIT_NAMES, DataConfig
from data_pipeline.manifest import SCHEMA_VERSION, EntropyFloor, Manifest, SourceInfo, SplitInfo, TokenizerInfo
from data_pipeline.shards import shard_name, token_dtype, write_shard
from data_pipeline.sources import Corpus, load_corpus
from data_pipeline.tokenization import TOKENIZER_FILE, pretrained_tokenizer_file, train_tokenizer
from textune.digest import sha256_of

log = logging.getLogger(__name__)


def prepare_dataset(config: DataConfig, out_dir: Path | None = None) -> Path:
    """The directory of the prepared dataset for ``config``, building it if it does not exist yet.

    ``out_dir`` holds the dataset directories instead of ``$TEXTUNE_CACHE_DIR/datasets``.
    """
    # The inputs first (a missing corpus or pretrained tokenizer): a refused command leaves no directory behind.
    corpus = load_corpus(config)
    name = dataset_name(config, corpus)
    root = ensure_writable_dir(
        Path(out_dir) if out_dir is not None else cache_root() / "datasets",
        "output directory" if out_dir is not None else "dataset cache",
    )
    final = root / name
    if is_complete(final):
        return final
    with locked(root, final.name):
        if is_complete(final):  # another process finished it while we waited for the lock
            return final
        log.info("preparing %s into %s", corpus.description, final)
        with building(root, final.name) as temp:
            _build(config, corpus, temp)
    return final


def dataset_name(config: DataConfig, corpus: Corpus) -> str:
    """``<source>-<tokenizer>-<16 hex digits of the content-addressed key>``."""
    key = {
        "schema_version": SCHEMA_VERSION,
        "content_hash": corpus.content_hash,
        "tokenizer": config.tokenizer.model_dump(exclude={"path"}),
        "split": config.split.model_dump(),
    }
    if config.source == "synthetic":
        key["synthetic"] = config.synthetic.model_dump()
    if config.tokenizer.kind == "pretrained":  # its content, not its path, decides the tokens
        key["tokenizer_sha256"] = sha256_of(pretrained_tokenizer_file(str(config.tokenizer.path)))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    stem = Path(config.source.rstrip("/")).name.split(".")[0] or "data"
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:32] or "data"
    return f"{slug}-{config.tokenizer.kind}-{digest[:16]}"


def split_text(text: str, fractions: dict[str, float]) -> dict[str, str]:
    """Contiguous parts in SPLIT_NAMES order; boundaries at round(cumulative fraction x characters)."""
    parts, start, cumulative = {}, 0, 0.0
    for name in SPLIT_NAMES:
        cumulative += fractions[name]
        end = len(text) if name == SPLIT_NAMES[-1] else min(len(text), round(cumulative * len(text)))
        parts[name] = text[start:end]
        start = end
    return parts


def _build(config: DataConfig, corpus: Corpus, directory: Path) -> None:
    fractions = config.split.fractions()
    parts = split_text(corpus.text, fractions)
    tokenizer = train_tokenizer(config.tokenizer, parts["train"])
    tokenizer.save(directory)
    dtype = token_dtype(tokenizer.vocab_size)
    splits: dict[str, SplitInfo] = {}
    for name, text in parts.items():
        tokens = tokenizer.encode_array(text).astype(dtype, copy=False)
        write_shard(directory / shard_name(name), tokens)
        splits[name] = SplitInfo(
            tokens=len(tokens),
            characters=len(text),
            shard=shard_name(name),
            chars_per_token=len(text) / len(tokens) if len(tokens) else 0.0,
        )
    floor = None
    if corpus.entropy is not None:
        floor = EntropyFloor(
            nats_per_char=corpus.entropy.nats_per_char,
            bits_per_char=corpus.entropy.bits_per_char,
            nats_per_token=corpus.entropy.nats_per_char * splits["val"].chars_per_token,
        )
    Manifest(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source=SourceInfo(description=corpus.description, content_hash=corpus.content_hash),
        tokenizer=TokenizerInfo(kind=tokenizer.kind, vocab_size=tokenizer.vocab_size, file=TOKENIZER_FILE),
        split_fractions=fractions,
        splits=splits,
        token_dtype=dtype.name,
        entropy_floor=floor,
        data=config,
    ).write(directory)
