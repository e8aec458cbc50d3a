"""Checkpoint files: checksums, refusal of planted pickles, finding the newest intact checkpoint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from models.checkpoint import (load_checkpoint, newest_valid_checkpoint, resolve_checkpoint, sha256_of,
                               write_checkpoint)
from models.run_dir import train_in_run_dir
from test_models_support import shakespeare_dataset, tiny_config  # noqa: F401
from textune.errors import TextuneError


class WritesMarker:
    """Unpickling this runs code: it creates the marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished_run(shakespeare_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run_dir = tmp_path_factory.mktemp("run") / "run"
    train_in_run_dir(tiny_config(shakespeare_dataset, "transformer", max_tokens=6144), run_dir, None)
    return run_dir


def test_a_run_keeps_one_checkpoint_per_evaluation_and_points_latest_at_the_newest(finished_run: Path) -> None:
    checkpoints = finished_run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "tokens_2048", "tokens_4096", "tokens_6144"]
    assert resolve_checkpoint(finished_run) == checkpoints / "tokens_6144"
    state, meta = load_checkpoint(checkpoints / "tokens_4096")
    assert meta["tokens"] == state["tokens"] == 4096
    assert meta["config"]["n_layers"] == 2 and meta["state_sha256"] == sha256_of(checkpoints / "tokens_4096/state.pt")


def test_a_checkpoint_with_a_planted_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "evil"
    checkpoint.mkdir()
    # The checksum is recomputed for the planted file, so only the weights-only unpickler stands in the way.
    write_checkpoint(checkpoint, {"model": {"w": torch.zeros(2)}, "payload": WritesMarker(marker)}, {"tokens": 1})
    with pytest.raises(TextuneError, match="refused unread"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_a_damaged_checkpoint_fails_its_checksum_and_the_newest_intact_one_is_found(finished_run: Path,
                                                                                   tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run, run_copy)
    newest = run_copy / "checkpoints" / "tokens_6144"
    with open(newest / "state.pt", "r+b") as state_file:
        state_file.seek(100)
        state_file.write(b"\x00\x01\x02\x03")
    with pytest.raises(TextuneError, match="failed its checksum"):
        load_checkpoint(newest)
    assert newest_valid_checkpoint(run_copy) == run_copy / "checkpoints" / "tokens_4096"


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"format": 99})],
                         ids=["missing", "unreadable", "other-format"])
def test_broken_metadata_gets_a_clear_error(tmp_path: Path, content: str | None) -> None:
    (tmp_path / "state.pt").write_bytes(b"")
    if content is not None:
        (tmp_path / "meta.json").write_text(content, encoding="utf-8")
    with pytest.raises(TextuneError, match=str(tmp_path)):
        load_checkpoint(tmp_path)
