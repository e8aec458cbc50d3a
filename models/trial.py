"""One trial: a plain function of a config dict that trains a model and reports through a tiny interface.

``run_trial`` runs standalone (``textune train``, with models.run_dir.RunDirReporter) and inside Ray Tune (the
tuning package wraps ``ray.tune.report``) alike. At each evaluation it writes a checkpoint into a fresh temporary
directory, hands it to ``reporter.report`` (which must copy it before returning) and deletes it afterwards.

Annealed evaluations (``lr_schedule: wsd`` with ``anneal_at_tokens``, ASHA's rungs): the first evaluation at or
past a rung below max_tokens cools a branch of the run down for ``cooldown_fraction`` of the tokens so far,
reports that cooled model's metrics (and the stable model's as ``stable_val_bpc``), saves its weights in the
checkpoint beside the run's state, and continues the run from the state before the branch, bit for bit.
"""

from __future__ import annotations

import copy
import functools
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from models.checkpoint import ANNEALED_MODEL, load_checkpoint, read_meta, write_checkpoint
from models.config import RESUMABLE_CHANGES, TrialConfig, parse_trial_config
from models.generate import sample_text
from models.metrics import bits_per_char, flops_per_token, perplexity
from models.status import TrialStatus
from models.trainer import Diverged, Trainer, resolve_device
from textune.errors import TextuneError

if TYPE_CHECKING:
    from data_pipeline.reader import TokenDataset


class Reporter(Protocol):
    """Receives every evaluation. ``checkpoint_dir`` is deleted once ``report`` returns: copy it if you keep it.

    A reporter may also define ``progress(tokens, next_eval_tokens, max_tokens)``, called after every
    optimiser step (for a progress bar).
    """

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None: ...


@dataclass
class Annealed:
    """An annealed evaluation: the cooldown branch's length, the cooled model's val loss (nats/token), its
    weights and its sample text."""

    cooldown_tokens: int
    val_loss: float
    weights: dict[str, torch.Tensor]
    sample: str


@dataclass
class TrialResult:
    """How a trial ended: ``status`` is completed, diverged or oom; ``metrics`` is the last report."""

    status: TrialStatus
    tokens: int
    best_val_bpc: float
    num_params: int
    metrics: dict[str, Any] = field(default_factory=dict)


def open_dataset(config: TrialConfig) -> TokenDataset:
    """The prepared dataset of ``config`` (its validation fold, if it has one), after checking that a block of
    ``block_size`` fits in train and val."""
    from data_pipeline.folds import Fold
    from data_pipeline.reader import TokenDataset

    path = Path(config.dataset_dir)
    if not path.is_dir():
        raise TextuneError(
            f'trial config: "dataset_dir" = {str(path)!r} is not a directory.',
            "Prepare the dataset first (textune data prepare), or give textune train a data: "
            "section instead of dataset_dir.",
        )
    fold = Fold(config.fold, config.num_folds) if config.fold is not None and config.num_folds else None
    dataset = TokenDataset.open(path, fold)
    dataset.check_block_size(config.block_size)
    return dataset


def check_resumable(config: TrialConfig, saved: dict[str, Any], checkpoint_dir: str) -> None:
    """Refuse to resume with a config that changes what the checkpoint's state means."""
    current = config.model_dump()
    # A key the checkpoint's version did not know yet held its default there.
    saved = {key: saved.get(key, field.default) for key, field in TrialConfig.model_fields.items()}
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved[k] != current[k])
    if changed:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise TextuneError(
            f"cannot resume from {checkpoint_dir}: the config changes {shown}.",
            "Resume with the config the run started with (only budget, evaluation and device keys "
            "may change), or start a new run.",
        )


def run_trial(
    config: dict[str, Any], reporter: Reporter, resume_from: str | None = None, hparams_session: bool = True
) -> TrialResult:
    """Train one model as ``config`` says, reporting each evaluation; resume from a checkpoint dir if given.

    With ``tensorboard_dir`` the run's curves and samples go there, and its HParams session too unless
    ``hparams_session`` is False: the tuning driver writes every trial's session itself, from Ray's records
    (tune_jobs.hparams), so a trial directory has one HParams writer.
    """
    cfg = parse_trial_config(config)
    dataset = open_dataset(cfg)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    if resume_from is not None:
        check_resumable(cfg, read_meta(Path(resume_from))["config"], resume_from)
    trainer = Trainer(cfg, dataset, resolve_device(cfg.device))
    if resume_from is not None:
        state, _ = load_checkpoint(resume_from, map_location=trainer.device)
        trainer.load_state_dict(state)
    return _TrialLoop(
        cfg, dataset, trainer, reporter, resumed=resume_from is not None, hparams_session=hparams_session
    ).run()


class _TrialLoop:
    """Train to the next evaluation, evaluate, checkpoint, report; until the budget is spent or training fails."""

    def __init__(
        self,
        cfg: TrialConfig,
        dataset: TokenDataset,
        trainer: Trainer,
        reporter: Reporter,
        resumed: bool,
        hparams_session: bool,
    ) -> None:
        self.cfg, self.dataset, self.trainer, self.reporter = cfg, dataset, trainer, reporter
        # The injected fault fires in fresh runs only, so a retry from a checkpoint gets through, unless it is
        # asked to fire in every attempt (a trial that can never finish).
        self.fault_at = cfg.fault_at_tokens if cfg.fault_every_attempt or not resumed else None
        self.flops_per_token = flops_per_token(cfg, trainer.model)
        self.num_params = sum(p.numel() for p in trainer.model.parameters())
        # Below num_params only for a frozen base (LoRA): the share of the model that learns.
        self.trainable_params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        self.last_metrics: dict[str, Any] = {}
        # A wsd run has cooled down at max_tokens anyway: no branch there.
        wsd = cfg.lr_schedule == "wsd"
        self.anneal_at = [tokens for tokens in cfg.anneal_at_tokens if wsd and tokens < cfg.max_tokens]
        self.tensorboard = None
        if cfg.tensorboard_dir is not None:
            from models.tensorboard_log import TensorBoardLog

            self.tensorboard = TensorBoardLog(
                cfg.tensorboard_dir,
                cfg.hyperparameters() if hparams_session else None,
                trial_id=Path(cfg.tensorboard_dir).name,
            )

    def run(self) -> TrialResult:
        status: TrialStatus | None = None  # stays None when training raises
        try:
            status = self._train()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close(status)
        return TrialResult(status, self.trainer.tokens, self.trainer.best_val_bpc, self.num_params, self.last_metrics)

    def _train(self) -> TrialStatus:
        cfg, trainer = self.cfg, self.trainer
        status = TrialStatus.COMPLETED
        while trainer.tokens < cfg.max_tokens:
            next_eval = min(cfg.max_tokens, (trainer.tokens // cfg.eval_every_tokens + 1) * cfg.eval_every_tokens)
            interval_start = trainer.tokens
            try:
                on_step = functools.partial(self._on_step, next_eval=next_eval)
                train_loss, seconds = trainer.train_until(next_eval, on_step)
                val_loss = trainer.evaluate("val")
                if not math.isfinite(val_loss):
                    raise Diverged(f"validation loss became {val_loss}")
                # One branch for every rung passed in this interval: a rung between evaluations is judged (by
                # ASHA too) at the first evaluation past it.
                annealed = self._anneal() if any(interval_start < t <= trainer.tokens for t in self.anneal_at) else None
            except Diverged:
                self._report_failure(TrialStatus.DIVERGED)
                return TrialStatus.DIVERGED
            except torch.OutOfMemoryError:
                self._report_failure(TrialStatus.OOM)
                return TrialStatus.OOM
            status = TrialStatus.COMPLETED if trainer.tokens >= cfg.max_tokens else TrialStatus.RUNNING
            self._report_evaluation(train_loss, val_loss, (trainer.tokens - interval_start) / seconds, status, annealed)
        return status

    def _anneal(self) -> Annealed:
        """Cool a branch down for cooldown_fraction of the tokens so far, evaluate it, and restore the run."""
        trainer = self.trainer
        cooldown = max(1, round(self.cfg.cooldown_fraction * trainer.tokens))
        with trainer.branch():
            trainer.cool_down(cooldown)
            val_loss = trainer.evaluate("val")
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss of the cooled-down branch became {val_loss}")
            annealed = Annealed(cooldown, val_loss, copy.deepcopy(trainer.model.state_dict()), self._sample_text())
        trainer.cooldown_tokens += cooldown  # after the branch, whose restore would undo it
        return annealed

    def _on_step(self, tokens: int, next_eval: int) -> None:
        if self.fault_at is not None and tokens >= self.fault_at:
            raise RuntimeError(f"injected fault: fault_at_tokens = {self.fault_at} reached at {tokens} tokens")
        progress = getattr(self.reporter, "progress", None)
        if progress is not None:
            progress(tokens, next_eval, self.cfg.max_tokens)

    def _bpc(self, nats_per_token: float, split: str) -> float:
        return bits_per_char(nats_per_token, self.dataset.chars_per_token(split))

    def _report_evaluation(
        self,
        train_loss: float,
        val_loss: float,
        tokens_per_s: float,
        status: TrialStatus,
        annealed: Annealed | None = None,
    ) -> None:
        """Report an evaluation with its checkpoint; an annealed one reports the cooled model's val metrics
        (``val_loss`` is then the stable model's, reported as ``stable_val_bpc``)."""
        trainer, cfg = self.trainer, self.cfg
        stable_val_bpc = self._bpc(val_loss, "val")
        if annealed is not None:
            val_loss = annealed.val_loss
        val_bpc = self._bpc(val_loss, "val")
        trainer.best_val_bpc = min(trainer.best_val_bpc, val_bpc)
        metrics: dict[str, Any] = {
            "tokens": trainer.tokens,
            "step": trainer.step,
            "status": status,
            "val_loss": val_loss,
            "val_ppl": perplexity(val_loss),
            "val_bpc": val_bpc,
            "train_loss": train_loss,
            "train_ppl": perplexity(train_loss),
            "train_bpc": self._bpc(train_loss, "train"),
            "best_val_bpc": trainer.best_val_bpc,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "tokens_per_s": tokens_per_s,
            # Cost counts the cooldown branches' tokens; progress (tokens, ASHA's clock) does not.
            "cooldown_tokens": trainer.cooldown_tokens,
            "flops": self.flops_per_token * (trainer.tokens + trainer.cooldown_tokens),
            "num_params": self.num_params,
            "trainable_params": self.trainable_params,
        }
        if annealed is not None:
            metrics["stable_val_bpc"] = stable_val_bpc
        floor = self.dataset.entropy_floor
        if floor is not None:
            metrics["floor_bpc"] = floor.bits_per_char
            metrics["floor_gap"] = val_bpc - floor.bits_per_char
            metrics["floor_gap_rel"] = metrics["floor_gap"] / floor.bits_per_char
        sample = annealed.sample if annealed is not None else self._sample_text()
        if self.tensorboard is not None:
            self.tensorboard.scalars(metrics, trainer.tokens)
            self.tensorboard.text(sample, trainer.tokens)
            self.tensorboard.flush()
        checkpoint_dir = Path(tempfile.mkdtemp(prefix=f"textune-ckpt-{trainer.tokens}-"))
        try:
            # The tokenizer travels with the weights, so generation needs no dataset; saved first, so the
            # checkpoint's checksums cover it.
            self.dataset.tokenizer.save(checkpoint_dir)
            # An annealed checkpoint holds the run's state (to resume the stable phase) and the cooled weights
            # (the model to use at this budget, the one val_bpc describes).
            state, meta = trainer.state_dict(), {}
            if annealed is not None:
                state[ANNEALED_MODEL] = annealed.weights
                meta["annealed"] = {"cooldown_tokens": annealed.cooldown_tokens, "stable_val_bpc": stable_val_bpc}
            write_checkpoint(
                checkpoint_dir,
                state,
                {
                    "tokens": trainer.tokens,
                    "step": trainer.step,
                    "val_bpc": val_bpc,
                    "vocab_size": trainer.vocab_size,
                    **meta,
                    "tokenizer_kind": self.dataset.manifest.tokenizer.kind,
                    "config": cfg.model_dump(),
                },
            )
            self._report(metrics, str(checkpoint_dir))
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def _report_failure(self, status: TrialStatus) -> None:
        """The final report of a trial that cannot go on: no checkpoint, val_bpc = inf."""
        metrics = {
            "tokens": self.trainer.tokens,
            "step": self.trainer.step,
            "status": status,
            "val_loss": math.inf,
            "val_ppl": math.inf,
            "val_bpc": math.inf,
            "best_val_bpc": self.trainer.best_val_bpc,
            "lr": self.trainer.optimizer.param_groups[0]["lr"],
            "num_params": self.num_params,
            "cooldown_tokens": self.trainer.cooldown_tokens,
        }
        self._report(metrics, None)

    def _report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.last_metrics = metrics
        self.reporter.report(metrics, checkpoint_dir)

    def _sample_text(self) -> str:
        """A short continuation of the first validation token, from a generator seeded by seed and tokens.

        Its own generator keeps the training RNG untouched, so sampling never changes the training run.
        """
        if self.cfg.sample_tokens == 0:
            return ""
        x, _ = next(iter(self.dataset.eval_batches("val", self.cfg.block_size, 1, max_blocks=1)))
        prompt = torch.from_numpy(x[:, :1]).to(self.trainer.device)  # (1, 1)
        generator = torch.Generator(device=self.trainer.device).manual_seed(self.cfg.seed + self.trainer.tokens)
        # At the model's own temperature; the text is printable, as TensorBoard stores it as UTF-8.
        return sample_text(
            self.trainer.model,
            self.dataset.tokenizer,
            prompt,
            self.cfg.sample_tokens,
            generator=generator,
            temperature=1.0,
        ).text
