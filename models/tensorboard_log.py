"""TensorBoard logging of one run: scalars against training tokens, text samples and an HParams session.

The HParams session start is written when the run starts and its end (with the status) when it stops, so the
HParams dashboard lists the run even if it ended early. The protos come from
``tensorboard.plugins.hparams`` (which needs no TensorFlow) and go through the SummaryWriter's own file writer,
into the run's directory; ``SummaryWriter.add_hparams`` is avoided because it writes a separate run.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from torch.utils.tensorboard import SummaryWriter

# Trial status -> the HParams session status shown in the dashboard.
SESSION_STATUS = {
    "completed": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_FAILURE,
    "oom": api_pb2.STATUS_FAILURE,
    "running": api_pb2.STATUS_RUNNING,
    "crashed": api_pb2.STATUS_UNKNOWN,
}

# Metrics logged as scalars, under the tag "<group>/<name>".
SCALAR_TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val",
    "train_ppl": "ppl/train", "val_ppl": "ppl/val",
    "train_bpc": "bpc/train", "val_bpc": "bpc/val", "best_val_bpc": "bpc/best_val",
    "floor_gap": "bpc/floor_gap", "stable_val_bpc": "bpc/stable_val",  # the latter at annealed evaluations only
    "lr": "optim/lr", "tokens_per_s": "throughput/tokens_per_s", "flops": "throughput/flops",
}


def session_end_summary(status: int) -> summary_pb2.Summary:
    """The HParams session-end summary (tensorboard's own builder for it imports TensorFlow)."""
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG,
                      metadata=metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(
                          session_end_info=info)),
                      tensor=metadata.NULL_TENSOR)
    return summary


class TensorBoardLog:
    """Writes one run's event files into ``log_dir``; global_step is always the training-token count."""

    def __init__(self, log_dir: str, hparams: dict[str, Any], trial_id: str) -> None:
        self.writer = SummaryWriter(log_dir=log_dir)
        self.writer.file_writer.add_summary(summary_v2.hparams_pb(hparams, trial_id=trial_id))
        self.writer.flush()

    def scalars(self, metrics: dict[str, Any], tokens: int) -> None:
        for key, tag in SCALAR_TAGS.items():
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=tokens)

    def text(self, sample: str, tokens: int) -> None:
        # Markdown would reflow the sample; a code block keeps its line breaks.
        self.writer.add_text("sample", "```\n" + sample + "\n```", global_step=tokens)

    def close(self, status: str) -> None:
        self.writer.file_writer.add_summary(session_end_summary(SESSION_STATUS[status]))
        self.writer.close()
