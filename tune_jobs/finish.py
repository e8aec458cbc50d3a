"""The end of a run (or resume): results tables, the best checkpoint, TensorBoard HParams, a summary.

Everything goes through the experiment's pyarrow filesystem, so the same code finishes an experiment on a
local disk and one under ``s3://``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.fs

from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, Experiment
from tune_jobs.hparams import write_hparams
from tune_jobs.results import ExperimentResults, collect, searched_config, write_tables
from tune_jobs.spec import JobSpec


def finish_experiment(experiment: Experiment, spec: JobSpec) -> ExperimentResults:
    """Write results.parquet, evaluations.parquet, best/ and the HParams summaries; return the results."""
    results = collect(experiment, spec)
    filesystem, root = experiment.filesystem()
    write_tables(results, f"{root}/{RESULTS_FILE}", f"{root}/{EVALUATIONS_FILE}", filesystem)
    if not results.trials.empty:
        with tempfile.TemporaryDirectory(prefix="textune-hparams-") as staging:
            write_hparams(Path(staging), spec.space, results.trials)
            pyarrow.fs.copy_files(staging, root, source_filesystem=pyarrow.fs.LocalFileSystem(),
                                  destination_filesystem=filesystem)
    if not results.trials.empty and results.trials["best_metric"].map(math.isfinite).any():
        best = results.best()
        if best["checkpoint"]:
            _copy_best(best["checkpoint"], f"{root}/{BEST_DIR}", filesystem)
    return results


def _copy_best(checkpoint: str, target: str, filesystem: pyarrow.fs.FileSystem) -> None:
    # best/ is derived from the trial's own checkpoint (which stays where it is), so replacing it after a
    # resume found a better trial loses nothing.
    if filesystem.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_dir(target)
    filesystem.create_dir(target, recursive=True)
    pyarrow.fs.copy_files(checkpoint, target, source_filesystem=filesystem, destination_filesystem=filesystem)


def sample_from(checkpoint_dir: Path, seed: int, max_new_tokens: int = 200) -> str:
    """A short seeded continuation of a newline from the checkpoint (what ``textune generate`` does)."""
    import torch

    from models.generate import encode_prompt, generate, load_model

    loaded = load_model(checkpoint_dir, torch.device("cpu"))
    prompt = encode_prompt(loaded.tokenizer, "\n", torch.device("cpu"))  # (1, T0)
    generator = torch.Generator().manual_seed(seed)
    ids = generate(loaded.model, prompt, max_new_tokens, temperature=0.8, top_k=None, generator=generator)
    return loaded.tokenizer.decode(ids[0].tolist())


def best_summary(best: pd.Series, spec: JobSpec) -> dict[str, object]:
    """The best trial as plain data (for ``textune best --json`` and the end-of-run printout)."""
    summary: dict[str, object] = {
        "trial_id": best["trial_id"], "status": best["status"], "config": searched_config(best),
        "metric": spec.metric, "best_metric": float(best["best_metric"]),
        "best_val_bpc": float(best["best_val_bpc"]), "best_val_ppl": float(best["best_val_ppl"]),
        "tokens": int(best["tokens"]), "checkpoint": best["checkpoint"],
    }
    floor_bpc = float(best["floor_bpc"])
    if math.isfinite(floor_bpc):
        summary["floor_bpc"] = floor_bpc
        summary["gap_to_floor"] = float(best["best_val_bpc"]) - floor_bpc
        summary["gap_to_floor_rel"] = summary["gap_to_floor"] / floor_bpc
    return summary
