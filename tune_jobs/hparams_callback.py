"""Each trial's TensorBoard HParams session while the search runs, written by the driver as the trial starts.

A Ray Tune callback, so the dashboard lists a trial, status running, from its start instead of from the end of
the search. The files are tune_jobs.hparams' (its one writer): the finish rewrites each session with the trial's
final status. Ray Tune pickles the callback with the Tuner (``tuner.pkl``), so a resumed search keeps it.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import tune

from tune_jobs.hparams import write_running_session
from tune_jobs.space import SearchSpace

logger = logging.getLogger(__name__)


class RunningSessions(tune.Callback):
    """Writes a trial's session (its searched config, status running) into its directory on storage when it starts
    or restarts (after a failure, or on resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # trial.path: the trial's directory on the storage filesystem (experiment root / trial directory name),
        # where its curves go and where the finish rewrites this session.
        try:
            write_running_session(trial.storage.storage_filesystem, trial.path, self.space, trial.config)
        except OSError as exc:  # a full disk: the search goes on, and the finish writes the session again
            logger.warning("the HParams session of trial %s could not be written: %s", trial.trial_id, exc)
