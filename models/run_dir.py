"""Standalone runs (``textune train``): one run directory holding everything a trial produced.

Layout::

    RUN_DIR/config.yaml                      the trial config the run started with
    RUN_DIR/metrics.jsonl                    one JSON line per report
    RUN_DIR/checkpoints/tokens_<N>/          a checkpoint per evaluation (state.pt + meta.json)
    RUN_DIR/checkpoints/latest               the name of the newest checkpoint
    RUN_DIR/tensorboard/                     event files (scalars, samples, HParams session)
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from models.checkpoint import keep_in_run_dir, newest_valid_checkpoint
from models.config import parse_trial_config
from models.trial import TrialResult, run_trial
from textune import strict_json
from textune.config import dump_yaml
from textune.errors import TextuneError
from textune.paths import outermost_missing

BAR_WIDTH = 30
BAR_INTERVAL_S = 0.5


def format_report(metrics: dict[str, Any]) -> str:
    """The one-line summary of an evaluation printed by ``textune train``."""
    parts = [f"tokens {metrics['tokens']:,}", f"val_bpc {metrics['val_bpc']:.4f}"]
    if "train_bpc" in metrics:
        parts += [
            f"train_bpc {metrics['train_bpc']:.4f}",
            f"val_ppl {metrics['val_ppl']:.3f}",
            f"best {metrics['best_val_bpc']:.4f}",
            f"lr {metrics['lr']:.2e}",
            f"{metrics['tokens_per_s']:,.0f} tok/s",
        ]
    if "floor_gap" in metrics:
        parts.append(f"floor gap {metrics['floor_gap']:+.4f}")
    return f"[{metrics['status']}] " + " | ".join(parts)


class RunDirReporter:
    """Keeps each checkpoint in the run directory, logs metrics, and prints progress to ``stream``."""

    def __init__(self, run_dir: Path, stream: TextIO = sys.stderr) -> None:
        self.run_dir, self.stream = run_dir, stream
        self.reports = 0
        self._bar_drawn_at = 0.0
        # A bar redrawn with carriage returns only makes sense on a terminal; logs get the report lines.
        self._draw_bar = stream.isatty()

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.reports += 1
        if checkpoint_dir is not None:
            keep_in_run_dir(Path(checkpoint_dir), self.run_dir, metrics["tokens"])
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as log:
            log.write(strict_json.dumps(metrics) + "\n")
        self._clear_bar()
        print(format_report(metrics), file=self.stream, flush=True)

    def progress(self, tokens: int, next_eval_tokens: int, max_tokens: int) -> None:
        now = time.monotonic()
        if not self._draw_bar or now - self._bar_drawn_at < BAR_INTERVAL_S:
            return
        self._bar_drawn_at = now
        filled = round(BAR_WIDTH * min(1.0, tokens / max_tokens))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {tokens:,}/{max_tokens:,} tokens (next eval at {next_eval_tokens:,})")
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self._draw_bar and self._bar_drawn_at:
            self.stream.write("\r" + " " * (BAR_WIDTH + 60) + "\r")


def checkpoint_to_resume(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run continues from (None for a fresh run); never reuses a run directory without resume."""
    if resume:
        checkpoint = newest_valid_checkpoint(run_dir)
        if checkpoint is None:
            raise TextuneError(
                f"--resume: run directory {run_dir} holds no intact checkpoint to resume from.",
                "Start the run without --resume (a run writes its first checkpoint at its first evaluation).",
            )
        return checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TextuneError(
            f"run directory {run_dir} already exists and is not empty; it was left untouched.",
            "Pass --resume to continue that run, or --run-dir to train into a new directory.",
        )
    return None


def train_in_run_dir(
    config: dict[str, Any], run_dir: Path, resume_from: Path | None, stream: TextIO = sys.stderr
) -> TrialResult:
    """Train one model into ``run_dir``: a fresh run, or one continuing from ``resume_from`` (see
    :func:`checkpoint_to_resume`). TensorBoard files go to ``run_dir/tensorboard`` unless the config says.

    A fresh run that fails before its first report (a split too short for a block, no CUDA, Ctrl-C) removes
    what it wrote, so the corrected command is not refused for a run directory that holds nothing to resume.
    """
    config = {"tensorboard_dir": str(run_dir / "tensorboard"), **config}
    parse_trial_config(config)  # every config mistake surfaces before the run directory is touched
    created = None
    if resume_from is not None:
        print(f"resuming from {resume_from}", file=stream, flush=True)
    else:
        created = outermost_missing(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(dump_yaml(config, sort_keys=True), encoding="utf-8")
        except OSError as exc:
            _remove_fresh_run(run_dir, created)
            raise TextuneError(
                f"run directory {run_dir} cannot be written: {exc.strerror or exc}.",
                "Choose a --run-dir in a place this user can write.",
            ) from exc
    reporter = RunDirReporter(run_dir, stream)
    try:
        return run_trial(config, reporter, resume_from=str(resume_from) if resume_from is not None else None)
    except BaseException:
        if resume_from is None and reporter.reports == 0:
            _remove_fresh_run(run_dir, created)
        raise


def _remove_fresh_run(run_dir: Path, created: Path | None) -> None:
    """Remove a fresh run's files: the directories it created, or the contents of the (empty) run_dir it was
    given (checkpoint_to_resume refuses a run_dir that holds anything)."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for child in run_dir.iterdir() if run_dir.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
