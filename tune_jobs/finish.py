"""The end of a run (or resume): results tables, the best checkpoint, TensorBoard HParams, a summary.

Everything goes through the experiment's pyarrow filesystem, so the same code finishes an experiment on a
local disk and one under ``s3://``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.fs

from cluster.atomic_local_fs import PARTIAL_MARK
from textune.errors import TextuneError
from tune_jobs.cost import COST_COLUMNS, experiment_cost
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, Experiment
from tune_jobs.hparams import write_hparams
from tune_jobs.results.checkpoints import checkpoint_checksum
from tune_jobs.results.collect import collect
from tune_jobs.results.parquet import write_tables
from tune_jobs.results.table import ExperimentResults, best_trial, best_with_checkpoint, plain_value, searched_config
from tune_jobs.spec import JobSpec


def finish_experiment(experiment: Experiment, spec: JobSpec) -> ExperimentResults:
    """Write results.parquet, evaluations.parquet, best/ and the HParams summaries; return the results.

    Raises TextuneError when the storage refuses a write (a full disk): the files already there are kept.
    """
    results = collect(experiment, spec)
    filesystem, root = experiment.filesystem()
    try:
        _write_tables_whole(results, root, filesystem)
        if not results.trials.empty:
            write_hparams(filesystem, root, spec.space, results.trials)
        best = best_with_checkpoint(results.trials)
        if best is not None:
            _replace_best(best["checkpoint"], best["checkpoint_sha256"], root, filesystem)
    except OSError as exc:
        raise TextuneError(
            f"the results of {experiment.root} could not be written to its storage: {exc}.",
            "Free space on the storage (or fix its permissions); the search's own state is intact, "
            f"and textune resume {experiment.root} writes the results again.",
        ) from exc
    return results


def _write_tables_whole(results: ExperimentResults, root: str, filesystem: pyarrow.fs.FileSystem) -> None:
    """Write both tables under temporary names first, so a failed write leaves the earlier tables whole."""
    staged = {name: f"{root}/.{name}{PARTIAL_MARK}" for name in (RESULTS_FILE, EVALUATIONS_FILE)}
    try:
        write_tables(results, staged[RESULTS_FILE], staged[EVALUATIONS_FILE], filesystem)
    except BaseException:
        for path in staged.values():
            if filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
                filesystem.delete_file(path)
        raise
    for name, path in staged.items():
        filesystem.move(path, f"{root}/{name}")


def _replace_best(checkpoint: str, checksum: str, root: str, filesystem: pyarrow.fs.FileSystem) -> None:
    """Make ``root/best`` a copy of the trial's ``checkpoint`` (whose metadata checksum is ``checksum``).

    best/ is derived from the trial's own checkpoint (which stays where it is), so replacing it after a resume
    found a better trial loses nothing; but the old copy is removed only once the new one is complete.
    """
    target = f"{root}/{BEST_DIR}"
    if checkpoint_checksum(filesystem, target) == checksum:
        return  # already this checkpoint (a resume that found no better trial)
    staging, old = (f"{root}/.{BEST_DIR}{PARTIAL_MARK}{kind}" for kind in ("new", "old"))
    for leftover in (staging, old):  # left by a finish that failed half-way
        if filesystem.get_file_info(leftover).type != pyarrow.fs.FileType.NotFound:
            filesystem.delete_dir(leftover)
    filesystem.create_dir(staging, recursive=True)
    try:
        pyarrow.fs.copy_files(checkpoint, staging, source_filesystem=filesystem, destination_filesystem=filesystem)
    except BaseException:
        filesystem.delete_dir(staging)  # a full disk gets its space back; best/ is untouched
        raise
    exists = filesystem.get_file_info(target).type != pyarrow.fs.FileType.NotFound
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):  # renames: best/ is never half a checkpoint
        if exists:
            filesystem.move(target, old)
        filesystem.move(staging, target)
        if exists:
            filesystem.delete_dir(old)
    else:  # an object store renames no directory: the new copy is complete beside best/ before best/ goes
        if exists:
            filesystem.delete_dir(target)
        pyarrow.fs.copy_files(staging, target, source_filesystem=filesystem, destination_filesystem=filesystem)
        filesystem.delete_dir(staging)


def sample_from(checkpoint_dir: Path, seed: int, max_new_tokens: int = 200) -> str:
    """A short seeded continuation of a newline from the checkpoint (what ``textune generate`` does)."""
    import torch

    from models.generate import load_model

    return load_model(checkpoint_dir, torch.device("cpu")).continue_prompt("\n", seed, max_new_tokens).text


def best_summary(trials: pd.DataFrame, spec: JobSpec) -> dict[str, object]:
    """The best trial of a results table as plain data, with its cost and the whole experiment's (for
    ``textune best --json`` and the end-of-run printout)."""
    best = best_trial(trials)
    summary: dict[str, object] = {
        "trial_id": best["trial_id"],
        "status": best["status"],
        "config": searched_config(best),
        "metric": spec.metric,
        "best_metric": float(best["best_metric"]),
        "best_val_bpc": float(best["best_val_bpc"]),
        "best_val_ppl": float(best["best_val_ppl"]),
        "tokens": int(best["tokens"]),
        "checkpoint": best["checkpoint"],
        # Tables of experiments from before annealed evaluations lack cooldown_tokens (they had none).
        "cost": {key: plain_value(best[key]) for key in COST_COLUMNS if key in best.index},
        "experiment_cost": experiment_cost(trials),
    }
    floor_bpc = float(best["floor_bpc"])
    if math.isfinite(floor_bpc):
        summary["floor_bpc"] = floor_bpc
        gap = float(best["best_val_bpc"]) - floor_bpc
        summary["gap_to_floor"] = gap
        summary["gap_to_floor_rel"] = gap / floor_bpc
    return summary
