"""The end of a run (or resume): results tables, the best checkpoint, TensorBoard HParams, a summary.

Everything goes through the experiment's pyarrow filesystem, so the same code finishes an experiment on a
local disk and one under ``s3://``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.fs

from tune_jobs.cost import COST_COLUMNS, experiment_cost
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, Experiment
from tune_jobs.hparams import write_hparams
from tune_jobs.results import ExperimentResults, best_trial, collect, plain_value, searched_config, write_tables
from tune_jobs.spec import JobSpec

if TYPE_CHECKING:
    import torch

    from models.generate import LoadedModel

# Samples are drawn slightly cooler than the model's distribution, as `textune generate` does by default.
SAMPLE_TEMPERATURE = 0.8


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

    from models.generate import load_model

    loaded = load_model(checkpoint_dir, torch.device("cpu"))
    return loaded.tokenizer.decode(continue_prompt(loaded, "\n", seed, max_new_tokens)[0].tolist())


def continue_prompt(loaded: "LoadedModel", prompt: str, seed: int, max_new_tokens: int) -> "torch.Tensor":
    """The prompt and its seeded continuation at the sampling temperature, as ids (1, T0 + max_new_tokens)."""
    import torch

    from models.generate import encode_prompt, generate

    prompt_ids = encode_prompt(loaded.tokenizer, prompt, torch.device("cpu"))  # (1, T0)
    generator = torch.Generator().manual_seed(seed)
    return generate(loaded.model, prompt_ids, max_new_tokens, temperature=SAMPLE_TEMPERATURE, top_k=None,
                    generator=generator)


def best_summary(trials: pd.DataFrame, spec: JobSpec) -> dict[str, object]:
    """The best trial of a results table as plain data, with its cost and the whole experiment's (for
    ``textune best --json`` and the end-of-run printout)."""
    best = best_trial(trials)
    summary: dict[str, object] = {
        "trial_id": best["trial_id"], "status": best["status"], "config": searched_config(best),
        "metric": spec.metric, "best_metric": float(best["best_metric"]),
        "best_val_bpc": float(best["best_val_bpc"]), "best_val_ppl": float(best["best_val_ppl"]),
        "tokens": int(best["tokens"]), "checkpoint": best["checkpoint"],
        "cost": {key: plain_value(best[key]) for key in COST_COLUMNS},
        "experiment_cost": experiment_cost(trials),
    }
    floor_bpc = float(best["floor_bpc"])
    if math.isfinite(floor_bpc):
        summary["floor_bpc"] = floor_bpc
        summary["gap_to_floor"] = float(best["best_val_bpc"]) - floor_bpc
        summary["gap_to_floor_rel"] = summary["gap_to_floor"] / floor_bpc
    return summary
