"""How a trial stands: the ``status`` of every report and of every row of the results table.

A ``str``-valued enum, so reports, ``metrics.jsonl``, JSON and Parquet hold the same plain strings as ever and
compare equal to them (tables read back hold strings; ``TrialStatus(text)`` turns one into a member).
The trainer reports ``running``, ``completed``, ``diverged`` or ``oom``; the tuning package adds the statuses
that only the search knows (``early_stopped``, ``errored``, ``unfinished``).
"""

from __future__ import annotations

import enum


class TrialStatus(str, enum.Enum):
    """One trial's status. Every member but ``RUNNING`` is a final status of the results table."""

    COMPLETED = "completed"  # trained its whole budget
    EARLY_STOPPED = "early_stopped"  # stopped by the scheduler (ASHA) at a rung
    DIVERGED = "diverged"  # its loss became NaN or infinite; reported with an infinite metric, the search goes on
    OOM = "oom"  # ran out of device memory; reported as a divergence is
    ERRORED = "errored"  # raised (after max_failures retries), or the trainer refused its config (no retries)
    UNFINISHED = "unfinished"  # pending, running or paused when the driver stopped; textune resume continues it
    RUNNING = "running"  # in a report: the trial goes on after it (never a final status)

    def __str__(self) -> str:
        # The plain value in f-strings, logs and CSV, as the bare strings were printed.
        return self.value


# Ended by the trainer itself, with an infinite metric so the searcher learns the region is bad.
TRAINER_FAILURES = (TrialStatus.DIVERGED, TrialStatus.OOM)
# The statuses of the results table, in the order the report and the HParams domain (running last) list them.
FINAL_STATUSES = tuple(status for status in TrialStatus if status is not TrialStatus.RUNNING)
