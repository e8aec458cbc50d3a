"""The restarts of each trial, read from its evaluations, and the progress each restart gave up."""

from __future__ import annotations

import pandas as pd


def restarts(evaluations: pd.DataFrame) -> pd.DataFrame:
    """A row per restart of a trial that its evaluations show, with the progress the restart gave up.

    Every report carries ``restored_from_tokens``: the tokens of the checkpoint its run started from (0 for a
    fresh start). A report starts a new run of its trial when that value changes or its tokens do not grow.
    Columns: ``trial_id``, ``reached_tokens`` (the most tokens reported before the restart),
    ``restored_from_tokens`` and ``tokens_redone`` (their difference: evaluated progress trained again). The
    interval in flight when the trial crashed, at most one evaluation interval, is lost on top and shows in no
    report.
    """
    rows = []
    if "restored_from_tokens" in evaluations:
        for trial_id, history in evaluations.groupby("trial_id", sort=False):
            reached = previous_from = None
            # Reports from before the column existed (an older experiment, resumed) count as fresh starts.
            for tokens, restored_from in zip(history["tokens"], history["restored_from_tokens"].fillna(0), strict=True):
                if reached is not None and (restored_from != previous_from or tokens <= reached):
                    rows.append(
                        {
                            "trial_id": trial_id,
                            "reached_tokens": int(reached),
                            "restored_from_tokens": int(restored_from),
                            "tokens_redone": int(reached - restored_from),
                        }
                    )
                reached = tokens if reached is None else max(reached, tokens)
                previous_from = restored_from
    return pd.DataFrame(rows, columns=["trial_id", "reached_tokens", "restored_from_tokens", "tokens_redone"])
