"""The job's wall-clock budget (``budget.time_budget_s``), ended so that ``textune resume`` can continue it.

Ray Tune's own ``TuneConfig(time_budget_s=...)`` stops the running trials as if they had finished and marks the
searcher done, so a resumed experiment would have nothing left to run. Ray Tune treats SIGUSR1 like Ctrl-C
instead: it saves the experiment with its running trials still running, and ``Tuner.restore`` continues them
and the searcher. So at the deadline the driver sends itself SIGUSR1.

Ray Tune catches the signal only when the search runs in the main thread; elsewhere (a driver embedded in
another program's thread) the runner falls back to Ray's own time budget.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from ray import tune


def interrupts_at_deadline() -> bool:
    """Whether a search started from this thread can be ended like Ctrl-C (Ray Tune catches signals there)."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGUSR1")


class InterruptAtDeadline(tune.Callback):
    """Sends this driver SIGUSR1 ``seconds`` after the search starts (measured from Ray Tune's set-up).

    The timer starts in ``setup``, which Ray Tune calls after installing its signal handler, so the signal
    never reaches a process without one. Only ``seconds`` is kept on the object: Ray Tune pickles its callbacks
    with the experiment, and a resumed search gets the budget again from the start of the resume.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def setup(
        self,
        stop: tune.Stopper | None = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        if not callable(signal.getsignal(signal.SIGUSR1)):
            # No Ray Tune handler (a resumed search outside the main thread): the signal would kill the process.
            return
        self._timer = threading.Timer(self.seconds, os.kill, (os.getpid(), signal.SIGUSR1))
        self._timer.daemon = True
        self._timer.start()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # Ray Tune calls this on every way out of the search loop: finished, interrupted or failed.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __getstate__(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "_timer": None}
