"""Trial checkpoints on storage: a checkpoint's recorded checksum, and the checkpoint a path stands for.

An experiment's ``best/`` is a copy of its best trial's checkpoint; it is trusted only when its checksum is the
one results.parquet records for that trial (``checkpoint_sha256``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textune.errors import TextuneError
from tune_jobs.experiment import BEST_DIR, RESULTS_FILE, SPEC_FILE, open_experiment, require_trained
from tune_jobs.results.parquet import read_trials, rebuild_hint
from tune_jobs.results.table import best_with_checkpoint


def checkpoint_checksum(filesystem: Any, path: str) -> str | None:
    """The checksum the metadata of the checkpoint at ``path`` (on a pyarrow filesystem) records for the whole
    checkpoint; None when there is no checkpoint there, or its metadata is damaged or was changed."""
    from models.checkpoint import META_FILE, parse_meta

    meta_path = f"{path}/{META_FILE}"
    try:
        with filesystem.open_input_stream(meta_path) as handle:
            return parse_meta(handle.read(), meta_path)["sha256"]
    except (FileNotFoundError, TextuneError):
        return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from an experiment directory (its best trial), a run or a checkpoint.

    An experiment's ``best/`` is used only when it is, by its checksum, the checkpoint results.parquet records
    for the best trial that kept one; else TextuneError names what differs. A simulated search (textune replay)
    has none: TextuneError says so.
    """
    from models.checkpoint import read_meta
    from models.checkpoint import resolve_checkpoint as resolve_run_checkpoint

    path = Path(path)
    if not (path / SPEC_FILE).is_file():
        return resolve_run_checkpoint(path)
    experiment = open_experiment(path)
    require_trained(experiment, f"checkpoint and no {BEST_DIR}/")
    best = path / BEST_DIR
    if not best.is_dir():
        raise TextuneError(
            f"experiment {path} has no {BEST_DIR}/ checkpoint yet (no trial finished an "
            "evaluation, or the run was interrupted).",
            f"Finish it with: textune resume {path}",
        )
    recorded = best_with_checkpoint(read_trials(experiment))
    if recorded is None:
        raise TextuneError(
            f"{experiment.root}/{RESULTS_FILE} records no checkpoint checksum for {BEST_DIR}/ (no "
            "scored trial kept a checkpoint, or an older textune wrote it), so "
            f"{best} cannot be verified.",
            rebuild_hint(experiment),
        )
    actual = read_meta(best)["sha256"]  # the checkpoint's own checksum, which covers all of its files
    own = f"{experiment.root}/{Path(recorded['trial_dir']).name}/{Path(recorded['checkpoint']).name}"
    if actual != recorded["checkpoint_sha256"]:
        raise TextuneError(
            f"{best} is not the checkpoint of trial {recorded['trial_id']} that "
            f"{RESULTS_FILE} records for it: its checksum is {actual[:12]}…, the results recorded "
            f"{recorded['checkpoint_sha256'][:12]}… (it was replaced or changed after the run).",
            f"Give the trial's own checkpoint instead ({own}), or copy it back over {best}.",
        )
    return best
