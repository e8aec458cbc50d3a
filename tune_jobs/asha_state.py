"""ASHA's rung records across ``textune resume``.

Ray Tune 2.60 saves the searcher's and the callbacks' state with every experiment snapshot, but not the
scheduler's: ``TuneController`` leaves ``_scheduler_alg`` out of its saved state and never restores it. A
resumed ASHA would then compare new results only with those reported since the resume and stop fewer trials
than the same search uninterrupted. :class:`AshaRecords` is a Tune callback that carries the scheduler's
records in its own state: Ray Tune saves it with each snapshot, and on restore calls ``set_state`` before it
requeues the trials, so every requeued trial meets the rungs as the interrupted search left them.

The scheduler is reached through its public ``save``/``restore`` (a pickle of its attributes: the rungs with
every trial's recorded metric, and the count of stopped trials). The callback holds the scheduler object
itself: Ray Tune pickles the Tuner's scheduler and callbacks together into ``tuner.pkl``, so the restored
callback refers to the very scheduler the restored search uses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler


class AshaRecords(tune.Callback):
    """Saves ``scheduler``'s rung records with each experiment snapshot and puts them back on restore."""

    def __init__(self, scheduler: AsyncHyperBandScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="textune-asha-") as staging:
            path = Path(staging) / "asha.pkl"
            self.scheduler.save(str(path))
            return {"asha": path.read_bytes()}

    def set_state(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="textune-asha-") as staging:
            path = Path(staging) / "asha.pkl"
            path.write_bytes(state["asha"])
            self.scheduler.restore(str(path))


def scheduler_callbacks(scheduler: Any) -> list[tune.Callback]:
    """The callbacks that keep ``scheduler``'s state across a resume (none for FIFO, which has none)."""
    return [AshaRecords(scheduler)] if isinstance(scheduler, AsyncHyperBandScheduler) else []
