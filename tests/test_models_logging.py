"""TensorBoard output of a trial, read back from the event files with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from models.trial import run_trial
from support.models import RecordingReporter, tiny_config


def read_events(log_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def hparams_content(events: EventAccumulator, tag: str) -> bytes:
    return events.PluginTagToContent(metadata.PLUGIN_NAME)[tag]


@pytest.mark.parametrize(
    ("overrides", "status"),
    [({}, api_pb2.STATUS_SUCCESS), ({"optimizer": "sgd", "lr": 1e9, "grad_clip": 0}, api_pb2.STATUS_FAILURE)],
    ids=["completed", "diverged"],
)
def test_scalars_samples_and_an_hparams_session_are_written_per_run(
    shakespeare_dataset: str, tmp_path: Path, overrides: dict, status: int
) -> None:
    log_dir = tmp_path / "tb" / "trial_a"
    reporter = RecordingReporter()
    run_trial(
        tiny_config(
            shakespeare_dataset,
            "transformer",
            max_tokens=4096,
            sample_tokens=30,
            tensorboard_dir=str(log_dir),
            **overrides,
        ),
        reporter,
    )
    events = read_events(log_dir)
    start = metadata.parse_session_start_info_plugin_data(hparams_content(events, metadata.SESSION_START_INFO_TAG))
    assert start.hparams["lr"].number_value == tiny_config("", "transformer", **overrides)["lr"]
    assert start.hparams["family"].string_value == "transformer"
    end = metadata.parse_session_end_info_plugin_data(hparams_content(events, metadata.SESSION_END_INFO_TAG))
    assert end.status == status
    evaluated = [r for r in reporter.reports if r["status"] != "diverged"]
    val_bpc = events.Scalars("bpc/val") if "bpc/val" in events.Tags()["scalars"] else []
    assert [e.step for e in val_bpc] == [r["tokens"] for r in evaluated]  # global_step is the token count
    assert [e.value for e in val_bpc] == pytest.approx([r["val_bpc"] for r in evaluated])
    samples = events.Tensors("sample/text_summary") if evaluated else []
    assert [e.step for e in samples] == [r["tokens"] for r in evaluated]
    assert all(len(e.tensor_proto.string_val[0].decode()) > 30 for e in samples)


def test_a_trial_of_a_search_writes_curves_and_samples_but_no_hparams_session(
    shakespeare_dataset: str, tmp_path: Path
) -> None:
    """Under Ray Tune the driver writes each trial's HParams session (tune_jobs.hparams): one writer per trial."""
    log_dir = tmp_path / "tb" / "trial_b"
    reporter = RecordingReporter()
    run_trial(
        tiny_config(
            shakespeare_dataset, "transformer", max_tokens=4096, sample_tokens=30, tensorboard_dir=str(log_dir)
        ),
        reporter,
        hparams_session=False,
    )
    events = read_events(log_dir)
    with pytest.raises(KeyError):  # no HParams record at all in the run
        events.PluginTagToContent(metadata.PLUGIN_NAME)
    assert [e.step for e in events.Scalars("bpc/val")] == [r["tokens"] for r in reporter.reports]
    assert [e.step for e in events.Tensors("sample/text_summary")] == [r["tokens"] for r in reporter.reports]
