"""``textune confirm``: is the winner of a search real, or did it win on a lucky seed and validation text?

The top-k configs are re-trained at the full budget with fresh seeds and, optionally, on several validation
folds (tune_jobs.analysis.confirm_plan). The run is a search of its own at ``EXPERIMENT/confirm/``, run and
resumed by tune_jobs.runner, so it uses the same cluster, storage and fault tolerance. Running the command
again continues an interrupted confirmation and only summarises a finished one. The summary
(tune_jobs.analysis.confirm_summary) goes to ``EXPERIMENT/analysis/confirm.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.status import TrialStatus
from textune.errors import TextuneError
from tune_jobs.analysis.confirm_plan import (
    Candidate,
    ConfirmOptions,
    confirmation_spec,
    describe_plan,
    same_plan,
    top_candidates,
)
from tune_jobs.analysis.confirm_summary import summarize
from tune_jobs.analysis.store import CONFIRM_FILE, write_analysis
from tune_jobs.experiment import Experiment, experiment_at, open_experiment
from tune_jobs.lifecycle import require_ended
from tune_jobs.results.parquet import read_trials
from tune_jobs.space import trainer_params
from tune_jobs.spec import JobSpec, fixed_trial_params, load_saved_spec

# Statuses of the runs a rerun continues (a diverged or out-of-memory run is a result, not a failure).
_OPEN_STATUSES = (TrialStatus.UNFINISHED, TrialStatus.ERRORED)


@dataclass
class Confirmation:
    """Where the confirmation run lives, how many of its runs are still open, and its summary once none is."""

    root: str
    unfinished: int
    summary: dict[str, Any] | None


def confirm_experiment(experiment_dir: str, options: ConfirmOptions, address: str | None = None) -> Confirmation:
    """Run (or continue) the confirmation of ``experiment_dir``'s top configs; write its summary when complete.

    While runs are still open (the run was interrupted) nothing is summarised: a partial confirmation would
    compare configs on different seeds and folds.
    """
    experiment = open_experiment(experiment_dir)
    require_ended(experiment, "confirm its winners")
    spec = load_saved_spec(experiment)
    candidates = top_candidates(read_trials(experiment), options.top_k, f"experiment {experiment.root}")
    plan = confirmation_spec(spec, experiment, candidates, options)
    target = experiment_at(plan.storage, plan.name, plan.storage_options)
    trials = _run_or_resume(plan, target, candidates, address)
    unfinished = _open_runs(trials, plan)
    if unfinished:
        return Confirmation(target.root, unfinished, None)
    summary = summarize(trials, candidates, plan)
    write_analysis(experiment, CONFIRM_FILE, summary)
    return Confirmation(target.root, 0, summary)


def _run_or_resume(plan: JobSpec, target: Experiment, candidates: list[Candidate], address: str | None) -> pd.DataFrame:
    """The results table of the confirmation run, after running or continuing it as needed."""
    if not target.exists():
        check_runnable(plan, candidates)
        return _train(plan, target, address, resume=False)
    saved = load_saved_spec(target)
    if not same_plan(saved, plan):
        raise TextuneError(
            f"{target.root} holds a confirmation run with other settings (it has {describe_plan(saved)}; or the "
            "search's best configs changed since it started); textune does not overwrite it.",
            f"Rerun with the options it was started with, or move {target.root} away to start a new one.",
        )
    try:
        # A finished confirmation's results table answers without starting (or even importing) Ray.
        trials = read_trials(target)
        if _open_runs(trials, plan) == 0:
            return trials
    except TextuneError:
        pass  # no results table: the driver stopped before writing it, so Ray's records say what is left
    return _train(plan, target, address, resume=True)


def _train(plan: JobSpec, target: Experiment, address: str | None, resume: bool) -> pd.DataFrame:
    """Run the confirmation (or continue it) on Ray and write its results like any search's."""
    from tune_jobs.finish import finish_experiment
    from tune_jobs.runner import resume_job, run_job

    if resume:
        resume_job(target, address)
    else:
        run_job(plan, address)
    return finish_experiment(target, plan).trials


def _open_runs(trials: pd.DataFrame, plan: JobSpec) -> int:
    """Planned runs not done yet: unfinished, errored, or not even created when the run stopped."""
    done = int((~trials["status"].isin(_OPEN_STATUSES)).sum()) if not trials.empty else 0
    return plan.expected_trials - done


def check_runnable(plan: JobSpec, candidates: list[Candidate]) -> None:
    """Before Ray starts: every planned trial is a valid trial config and its validation fold holds a block."""
    from data_pipeline.folds import Fold
    from data_pipeline.prepare import prepare_dataset
    from data_pipeline.reader import TokenDataset
    from models.config import parse_trial_config

    dataset_dir = prepare_dataset(plan.data)  # a cache hit: the search prepared it
    fixed = fixed_trial_params(plan, str(dataset_dir))
    folds = plan.space["fold"].values if "fold" in plan.space else [None]
    seed = plan.space["seed"].values[0]
    for fold in folds:
        dataset = TokenDataset.open(dataset_dir, Fold(fold, len(folds)) if fold is not None else None)
        replication = {"seed": seed} if fold is None else {"seed": seed, "fold": fold}
        for candidate in candidates:
            config = parse_trial_config(
                {**fixed, **trainer_params(candidate.config), **replication},
                f"confirmation config of trial {candidate.trial_id}",
            )
            dataset.check_block_size(config.block_size)
