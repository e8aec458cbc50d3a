"""Checkpoint files: checksums, refusal of planted pickles, finding the newest intact checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from models.checkpoint import load_checkpoint, newest_valid_checkpoint, resolve_checkpoint, sha256_of, write_checkpoint
from models.generate import load_model
from models.run_dir import train_in_run_dir
from support.models import tiny_config
from textune.errors import TextuneError


class WritesMarker:
    """Unpickling this runs code: it creates the marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(shakespeare_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "run"
    train_in_run_dir(tiny_config(shakespeare_dataset, "transformer", max_tokens=6144), run_dir, None)
    return run_dir


def test_a_run_keeps_one_checkpoint_per_evaluation_and_points_latest_at_the_newest(finished_run: Path) -> None:
    checkpoints = finished_run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "tokens_2048", "tokens_4096", "tokens_6144"]
    assert resolve_checkpoint(finished_run) == checkpoints / "tokens_6144"
    state, meta = load_checkpoint(checkpoints / "tokens_4096")
    assert meta["tokens"] == state["tokens"] == 4096
    assert meta["config"]["n_layers"] == 2
    # Every file a load trusts is covered: the weights and the tokenizer, and the metadata by its own checksum.
    assert meta["files"] == {
        name: sha256_of(checkpoints / "tokens_4096" / name) for name in ("state.pt", "tokenizer.json")
    }
    assert len(meta["sha256"]) == 64


def test_a_checkpoint_with_a_planted_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "evil"
    checkpoint.mkdir()
    # The checksum is recomputed for the planted file, so only the weights-only unpickler stands in the way.
    write_checkpoint(checkpoint, {"model": {"w": torch.zeros(2)}, "payload": WritesMarker(marker)}, {"tokens": 1})
    with pytest.raises(TextuneError, match="refused unread"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_a_damaged_checkpoint_fails_its_checksum_and_the_newest_intact_one_is_found(
    finished_run: Path, tmp_path: Path
) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run, run_copy)
    newest = run_copy / "checkpoints" / "tokens_6144"
    with open(newest / "state.pt", "r+b") as state_file:
        state_file.seek(100)
        state_file.write(b"\x00\x01\x02\x03")
    with pytest.raises(TextuneError, match="failed its checksum"):
        load_checkpoint(newest)
    assert newest_valid_checkpoint(run_copy) == run_copy / "checkpoints" / "tokens_4096"


@pytest.mark.parametrize(
    "content", [None, "{not json", json.dumps({"format": 99})], ids=["missing", "unreadable", "other-format"]
)
def test_broken_metadata_gets_a_clear_error(tmp_path: Path, content: str | None) -> None:
    (tmp_path / "state.pt").write_bytes(b"")
    if content is not None:
        (tmp_path / "meta.json").write_text(content, encoding="utf-8")
    with pytest.raises(TextuneError, match=str(tmp_path)):
        load_checkpoint(tmp_path)


# Issue 14 A.4: editing meta.json (vocab_size, tokenizer kind) gave a size-mismatch traceback; any change to a
# file the load trusts now fails the checksum, naming the file.
@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda c: _edit_meta(c, vocab_size=7), "meta.json was changed after it was written"),
        (lambda c: _edit_meta(c, tokenizer_kind="byte"), "meta.json was changed after it was written"),
        (lambda c: (c / "tokenizer.json").write_text('{"chars": ["a"]}'), "tokenizer.json has SHA-256"),
        (lambda c: (c / "tokenizer.json").unlink(), "tokenizer.json has SHA-256 (missing)"),
        (lambda c: _edit_meta(c, format=1), "is not textune checkpoint format 2"),
    ],
    ids=["vocab-size", "tokenizer-kind", "tokenizer-file", "tokenizer-missing", "older-format"],
)
def test_every_file_a_load_trusts_is_covered_by_the_checksum(
    finished_run: Path, tmp_path: Path, damage: Any, fragment: str
) -> None:
    checkpoint = tmp_path / "tokens_6144"
    shutil.copytree(finished_run / "checkpoints" / "tokens_6144", checkpoint)
    load_model(checkpoint, torch.device("cpu"))  # intact: loads
    damage(checkpoint)
    with pytest.raises(TextuneError, match=re.escape(fragment)):
        load_model(checkpoint, torch.device("cpu"))


def _edit_meta(checkpoint: Path, **changes: Any) -> None:
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps({**meta, **changes}))


@pytest.mark.parametrize("pointer", [b"tokens_999\n", b"\x00\xff garbage"], ids=["missing-checkpoint", "garbage"])
def test_a_damaged_latest_pointer_of_a_run_is_named(finished_run: Path, tmp_path: Path, pointer: bytes) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run, run_copy)
    (run_copy / "checkpoints" / "latest").write_bytes(pointer)
    with pytest.raises(TextuneError, match=re.escape(f"{run_copy}/checkpoints/latest does not name a checkpoint")):
        resolve_checkpoint(run_copy)
