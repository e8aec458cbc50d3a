"""Checkpoint files: written atomically with a checksum, read back as tensors and plain data only.

A checkpoint is a directory holding ``state.pt`` (model, optimiser, RNG states, counters; loaded with
``torch.load(weights_only=True)`` so it can never run code), the tokenizer and ``meta.json`` (the token count,
the full trial config, the SHA-256 of every other file, and the SHA-256 of its own content, which identifies
the checkpoint). An annealed evaluation's checkpoint also holds the cooled-down weights (``ANNEALED_MODEL`` in
``state.pt``, described by ``meta.json``'s ``val_bpc`` and ``annealed``): the model to use at that token budget,
while ``model`` stays the run's state to resume from. Standalone runs keep theirs under
``RUN_DIR/checkpoints/tokens_<N>/`` with a ``latest`` file naming the newest; see docs/models.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from textune import strict_json
from textune.digest import sha256_of
from textune.errors import TextuneError

STATE_FILE = "state.pt"
META_FILE = "meta.json"
# 2: the checksum covers meta.json and the tokenizer too (1 covered state.pt only).
FORMAT_VERSION = 2
CHECKPOINTS_DIR = "checkpoints"
ANNEALED_MODEL = "annealed_model"
LATEST_FILE = "latest"


def write_checkpoint(directory: Path, state: dict[str, Any], meta: dict[str, Any]) -> str:
    """Write ``state`` and ``meta`` into ``directory``, which holds only what else the checkpoint carries (its
    tokenizer); returns the checkpoint's checksum.

    ``meta.json`` records the SHA-256 of every file beside it (``files``) and, as ``sha256``, that of its own
    content: so every byte a load trusts (the weights, the tokenizer, the vocabulary size and config in the
    metadata) is covered, and ``sha256`` identifies the whole checkpoint (the results record it).
    """
    torch.save(state, directory / STATE_FILE)
    files = {path.name: sha256_of(path) for path in sorted(directory.iterdir()) if path.is_file()}
    body = {"format": FORMAT_VERSION, **meta, "files": files}
    body = json.loads(strict_json.dumps(body))  # exactly what a reader will parse back
    digest = _meta_digest(body)
    (directory / META_FILE).write_text(
        strict_json.dumps({**body, "sha256": digest}, indent=2, sort_keys=True), encoding="utf-8"
    )
    return digest


def _meta_digest(body: dict[str, Any]) -> str:
    """The SHA-256 of the metadata less its own ``sha256`` entry, in one canonical JSON form."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_meta(directory: Path) -> dict[str, Any]:
    """The metadata of the checkpoint in ``directory``, after checking its own checksum (raises TextuneError when
    it is not a checkpoint, or its metadata was changed)."""
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / STATE_FILE).is_file():
        raise TextuneError(
            f"{directory} is not a checkpoint: it lacks {META_FILE} or {STATE_FILE}.",
            "Give a checkpoint directory (RUN_DIR/checkpoints/tokens_<N>) or a run directory.",
        )
    return parse_meta(meta_path.read_bytes(), str(meta_path))


def parse_meta(content: bytes, meta_path: str) -> dict[str, Any]:
    """The metadata in ``content`` (the bytes of ``meta_path``, from any filesystem), after checking its own
    checksum; raises TextuneError when it is damaged, changed or of another format."""
    try:
        meta = json.loads(content.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TextuneError(
            f"checkpoint metadata {meta_path} is unreadable: {exc}.", "The checkpoint is damaged; use an earlier one."
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or not isinstance(meta.get("files"), dict):
        raise TextuneError(
            f"checkpoint metadata {meta_path} is not textune checkpoint format {FORMAT_VERSION} (an "
            "older format's checksum did not cover the metadata and tokenizer).",
            "Use a checkpoint written by this version of textune: train again, or resume the search that wrote it.",
        )
    if meta.get("sha256") != _meta_digest(meta):
        raise TextuneError(
            f"checkpoint metadata {meta_path} was changed after it was written: its content no "
            "longer has the SHA-256 it recorded, so its vocabulary size, tokenizer and config cannot "
            "be trusted.",
            "Use an earlier checkpoint (models.checkpoint.newest_valid_checkpoint finds the newest "
            "intact one), or copy the original back.",
        )
    return meta


def verify(directory: Path) -> dict[str, Any]:
    """The metadata, after checking that it and every file it lists still have their recorded checksums."""
    meta = read_meta(directory)
    for name, recorded in sorted(meta["files"].items()):
        path = directory / name
        actual = sha256_of(path) if path.is_file() and name == path.name else "(missing)"
        if actual != recorded:
            raise TextuneError(
                f"checkpoint {directory} failed its checksum: {directory / name} has SHA-256 "
                f"{actual[:12]}…, its metadata recorded {str(recorded)[:12]}….",
                "The file was changed or damaged after it was written; use an earlier checkpoint "
                "(models.checkpoint.newest_valid_checkpoint finds the newest intact one).",
            )
    if STATE_FILE not in meta["files"]:
        raise TextuneError(
            f"checkpoint metadata {directory / META_FILE} lists no checksum for {STATE_FILE}.",
            "Use a checkpoint written by textune.",
        )
    return meta


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(state, meta) of a verified checkpoint; the state is unpickled with ``weights_only=True``."""
    directory = Path(directory)
    meta = verify(directory)
    try:
        state = torch.load(directory / STATE_FILE, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TextuneError(
            f"checkpoint {directory / STATE_FILE} holds objects other than tensors and plain "
            "data, so it was refused unread.",
            "Only load checkpoints written by textune; this file may have been tampered with.",
        ) from exc
    return state, meta


def keep_in_run_dir(source: Path, run_dir: Path, tokens: int) -> Path:
    """Copy a checkpoint into ``run_dir/checkpoints/tokens_<N>`` atomically and point ``latest`` at it.

    The copy goes to a temporary sibling first and is renamed into place, so a crash leaves either no
    checkpoint or a complete one, never half of one.
    """
    checkpoints = run_dir / CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / f"tokens_{tokens}"
    staging = Path(tempfile.mkdtemp(prefix=f".tokens_{tokens}.", dir=checkpoints))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    if target.exists():  # a resumed run re-reaching a token count replaces its own older copy
        shutil.rmtree(target)
    os.replace(staging, target)
    pointer = checkpoints / f".{LATEST_FILE}.tmp"
    pointer.write_text(target.name + "\n", encoding="utf-8")
    os.replace(pointer, checkpoints / LATEST_FILE)
    return target


def _token_count(path: Path) -> int:
    return int(path.name.removeprefix("tokens_"))


def newest_valid_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run whose checksum holds, skipping damaged ones; None when there is none."""
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        return None
    candidates = [p for p in checkpoints.glob("tokens_*") if p.is_dir() and p.name[7:].isdigit()]
    for candidate in sorted(candidates, key=_token_count, reverse=True):
        try:
            verify(candidate)
        except TextuneError:
            continue
        return candidate
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint directory or a run directory (its ``latest`` checkpoint)."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    pointer = path / CHECKPOINTS_DIR / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_bytes().decode("utf-8", "replace").strip()
        if name.startswith("tokens_") and name[7:].isdigit() and (path / CHECKPOINTS_DIR / name).is_dir():
            return path / CHECKPOINTS_DIR / name
        raise TextuneError(
            f"{pointer} does not name a checkpoint of this run (it holds {name[:40]!r}).",
            f"Write the name of its newest checkpoint into it (a tokens_<N> directory beside it), "
            f"or give that checkpoint directory: {path / CHECKPOINTS_DIR}/tokens_<N>.",
        )
    if not path.exists():
        raise TextuneError(f"checkpoint or run directory {path} does not exist.", "Check the path.")
    raise TextuneError(
        f"{path} is neither a checkpoint (no {META_FILE}) nor a run directory with checkpoints "
        f"(no {CHECKPOINTS_DIR}/{LATEST_FILE}).",
        "Give RUN_DIR or RUN_DIR/checkpoints/tokens_<N>; a run writes its first checkpoint at its first evaluation.",
    )
