"""Checkpoint files: written atomically with a checksum, read back as tensors and plain data only.

A checkpoint is a directory holding ``state.pt`` (model, optimiser, RNG states, counters; loaded with
``torch.load(weights_only=True)`` so it can never run code) and ``meta.json`` (the SHA-256 of ``state.pt``, the
token count and the full trial config). Standalone runs keep theirs under ``RUN_DIR/checkpoints/tokens_<N>/``
with a ``latest`` file naming the newest; see docs/models.md.
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

from textune.errors import TextuneError

STATE_FILE = "state.pt"
META_FILE = "meta.json"
FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checkpoint(directory: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``state`` and ``meta`` (plus the state file's checksum) into an existing, empty directory."""
    state_path = directory / STATE_FILE
    torch.save(state, state_path)
    meta = {"format": FORMAT_VERSION, **meta, "state_sha256": sha256_of(state_path)}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def read_meta(directory: Path) -> dict[str, Any]:
    """The metadata of the checkpoint in ``directory`` (raises TextuneError when it is not one)."""
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / STATE_FILE).is_file():
        raise TextuneError(f"{directory} is not a checkpoint: it lacks {META_FILE} or {STATE_FILE}.",
                           "Give a checkpoint directory (RUN_DIR/checkpoints/tokens_<N>) or a run directory.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TextuneError(f"checkpoint metadata {meta_path} is unreadable: {exc}.",
                           "The checkpoint is damaged; use an earlier one.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or "state_sha256" not in meta:
        raise TextuneError(f"checkpoint metadata {meta_path} is not textune checkpoint format {FORMAT_VERSION}.",
                           "Use a checkpoint written by this version of textune.")
    return meta


def verify(directory: Path) -> dict[str, Any]:
    """The metadata, after checking that ``state.pt`` still has the checksum recorded at write time."""
    meta = read_meta(directory)
    actual = sha256_of(directory / STATE_FILE)
    if actual != meta["state_sha256"]:
        raise TextuneError(f"checkpoint {directory} failed its checksum: {STATE_FILE} has SHA-256 {actual[:12]}…, "
                           f"its metadata recorded {meta['state_sha256'][:12]}….",
                           "The file was changed or damaged after it was written; use an earlier checkpoint "
                           "(models.checkpoint.newest_valid_checkpoint finds the newest intact one).")
    return meta


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(state, meta) of a verified checkpoint; the state is unpickled with ``weights_only=True``."""
    directory = Path(directory)
    meta = verify(directory)
    try:
        state = torch.load(directory / STATE_FILE, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TextuneError(f"checkpoint {directory / STATE_FILE} holds objects other than tensors and plain "
                           "data, so it was refused unread.",
                           "Only load checkpoints written by textune; this file may have been tampered with.") from exc
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
        latest = path / CHECKPOINTS_DIR / pointer.read_text(encoding="utf-8").strip()
        if latest.is_dir():
            return latest
    if not path.exists():
        raise TextuneError(f"checkpoint or run directory {path} does not exist.", "Check the path.")
    raise TextuneError(f"{path} is neither a checkpoint (no {META_FILE}) nor a run directory with checkpoints "
                       f"(no {CHECKPOINTS_DIR}/{LATEST_FILE}).",
                       "Give RUN_DIR or RUN_DIR/checkpoints/tokens_<N>; a run writes its first checkpoint at its "
                       "first evaluation.")
