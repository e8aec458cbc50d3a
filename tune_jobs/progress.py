"""The progress table a search prints: Ray Tune's CLIReporter, pointing at the experiment on its storage.

Ray Tune heads its table with ``Result logdir: DIR``, where DIR is the driver's staging directory (under
``/tmp/ray/session_*/artifacts/``), which Ray copies to the storage after each snapshot and deletes with the
session. Users look there for their results and find nothing; the table names the experiment instead.
"""

from __future__ import annotations

from typing import Any

from ray.experimental.tqdm_ray import safe_print
from ray.tune import CLIReporter

from tune_jobs.ray_tune_private import progress_table

LOGDIR_LABEL = "Result logdir: "
# pyarrow filesystem type -> URI scheme (a local filesystem's paths are shown as they are).
SCHEMES = {"s3": "s3", "gcs": "gs"}


class ExperimentReporter(CLIReporter):
    """A CLIReporter whose ``Result logdir`` is the experiment directory on its storage (path or URI)."""

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        # CLIReporter.report prints its private table builder's text; only the logdir lines differ here.
        lines = progress_table(self, trials, done, *sys_info).split("\n")
        logdir = [i for i, line in enumerate(lines) if line.startswith(LOGDIR_LABEL)]
        if logdir:
            where = [LOGDIR_LABEL + location for location in sorted({experiment_location(t) for t in trials})]
            rest = [line for line in lines[logdir[0] :] if not line.startswith(LOGDIR_LABEL)]
            lines = lines[: logdir[0]] + where + rest
        safe_print("\n".join(lines))


def experiment_location(trial: Any) -> str:
    """Where ``trial``'s experiment is kept: its storage path, or a URI for object storage. Read from the
    trial, which Ray Tune updates when a resumed experiment was moved."""
    storage = trial.storage
    scheme = SCHEMES.get(storage.storage_filesystem.type_name)
    return f"{scheme}://{storage.experiment_fs_path}" if scheme else storage.experiment_fs_path
