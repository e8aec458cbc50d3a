"""TensorBoard logging of one run: scalars against training tokens, text samples and an HParams session.

The HParams session start is written when the run starts and its end (with the status) when it stops, so the
HParams dashboard lists the run even if it ended early. A trial of a search writes no session: the driver
writes each trial's, with the status only Ray's records know (tune_jobs.hparams, through the builders here).
The protos come from ``tensorboard.plugins.hparams`` (which needs no TensorFlow) and go through the
SummaryWriter's own file writer, into the run's directory; ``SummaryWriter.add_hparams`` is avoided because it
writes a separate run.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

from models.status import TrialStatus

# Trial status -> the HParams session status shown in the dashboard; None: the run raised.
SESSION_STATUS = {
    TrialStatus.COMPLETED: api_pb2.STATUS_SUCCESS,
    TrialStatus.EARLY_STOPPED: api_pb2.STATUS_SUCCESS,
    TrialStatus.DIVERGED: api_pb2.STATUS_FAILURE,
    TrialStatus.OOM: api_pb2.STATUS_FAILURE,
    TrialStatus.ERRORED: api_pb2.STATUS_FAILURE,
    TrialStatus.UNFINISHED: api_pb2.STATUS_RUNNING,
    TrialStatus.RUNNING: api_pb2.STATUS_RUNNING,
    None: api_pb2.STATUS_UNKNOWN,
}

# Metrics logged as scalars, under the tag "<group>/<name>".
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_ppl": "ppl/train",
    "val_ppl": "ppl/val",
    "train_bpc": "bpc/train",
    "val_bpc": "bpc/val",
    "best_val_bpc": "bpc/best_val",
    "floor_gap": "bpc/floor_gap",
    "stable_val_bpc": "bpc/stable_val",  # the latter at annealed evaluations only
    "lr": "optim/lr",
    "tokens_per_s": "throughput/tokens_per_s",
    "flops": "throughput/flops",
}


def plugin_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    """A summary holding one HParams plugin record (tensorboard's own builders import TensorFlow)."""
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def session_end_summary(status: TrialStatus | None) -> summary_pb2.Summary:
    """The HParams session end of a run that ended with ``status`` (None: it raised)."""
    info = plugin_data_pb2.SessionEndInfo(status=SESSION_STATUS[status], end_time_secs=time.time())
    return plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


class TensorBoardLog:
    """Writes one run's event files into ``log_dir``; global_step is always the training-token count.

    ``hparams`` start the run's HParams session, which :meth:`close` ends; None writes no session.
    """

    def __init__(self, log_dir: str, hparams: dict[str, Any] | None, trial_id: str) -> None:
        # Imported here: the HParams builders above serve the tuning driver, which needs no torch for them.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=log_dir)
        self.hparams_session = hparams is not None
        if hparams is not None:
            self._add_summary(summary_v2.hparams_pb(hparams, trial_id=trial_id))
            self.writer.flush()

    def _add_summary(self, summary: summary_pb2.Summary) -> None:
        """Into the writer's own event file, so the session sits in the run's directory beside the curves."""
        file_writer = self.writer.file_writer
        assert file_writer is not None  # SummaryWriter opens it when constructed
        file_writer.add_summary(summary)

    def scalars(self, metrics: dict[str, Any], tokens: int) -> None:
        for key, tag in SCALAR_TAGS.items():
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=tokens)

    def text(self, sample: str, tokens: int) -> None:
        # Markdown would reflow the sample; a code block keeps its line breaks.
        self.writer.add_text("sample", "```\n" + sample + "\n```", global_step=tokens)

    def flush(self) -> None:
        """Write what is queued to the event file: a trial that is stopped right after reporting (ASHA) never
        closes its log, and its files are uploaded to storage as they are on disk at the report."""
        self.writer.flush()

    def close(self, status: TrialStatus | None) -> None:
        """End the HParams session with the run's final ``status`` (None: the run raised) and close the files."""
        if self.hparams_session:
            self._add_summary(session_end_summary(status))
        self.writer.close()
