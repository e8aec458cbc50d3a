"""The training loop of one trial: model, optimiser, data sampler and counters, and their exact state.

The trainer counts training tokens (the budget unit), not steps. Everything random draws from generators it
saves and restores (torch, NumPy, Python and the data sampler's own NumPy Generator), so a run resumed from a
checkpoint on CPU continues bit for bit as if it had never stopped. The same state makes a branch exact: a
cooldown run on a :meth:`Trainer.branch` (an annealed evaluation) leaves the run as if it had never happened.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from data_pipeline.tokenization import Tokenizer
from models.config import TrialConfig
from models.families import build_model
from models.optim import build_optimizer, cooldown_factor, lr_at, set_lr
from textune.errors import TextuneError

# cross_entropy's ignore_index: a target that counts in no loss.
IGNORED = -100


class Diverged(Exception):
    """The training loss became NaN or infinite: the trial ends as ``diverged``."""


class TrainingData(Protocol):
    """What the trainer reads from a prepared dataset (data_pipeline.reader.TokenDataset): token ids in blocks of
    ``block_size``, x and y (rows, block_size) with y the next token of each x."""

    tokenizer: Tokenizer

    def sample_batch(
        self, split: str, batch_size: int, block_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` blocks of ``split`` at random places drawn from ``rng``."""

    def eval_batches(
        self, split: str, block_size: int, batch_size: int, max_blocks: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The fixed evaluation blocks of ``split`` (at most ``max_blocks``), ``batch_size`` at a time."""


def resolve_device(name: str, where: str = 'trial config key "device"') -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else CPU; ``cuda`` without a visible GPU is a TextuneError naming
    ``where`` (the key or option the name came from)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TextuneError(
            f"{where} asks for cuda, but this machine has no CUDA device that PyTorch can use "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}).",
            "Use cpu (or auto, which picks a GPU when there is one).",
        )
    return torch.device(name)


def use_tensor_cores() -> None:
    """Let CUDA matmuls and convolutions run in TF32, the tensor-core path, at no cost to the loss at these scales.

    Process-wide flags: called once where a process that trains starts (textune train, a Ray Tune trial); they
    change nothing on a CPU.
    """
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Trains ``config``'s model on ``dataset`` on ``device`` (bf16 autocast on CUDA)."""

    def __init__(self, config: TrialConfig, dataset: TrainingData, device: torch.device) -> None:
        self.config, self.dataset, self.device = config, dataset, device
        seed_everything(config.seed)
        self.vocab_size = dataset.tokenizer.vocab_size
        self.model = build_model(config, self.vocab_size).to(device)
        # The compiled module shares parameters with self.model, which stays the one saved and generated from.
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.optimizer = build_optimizer(self.model, config)
        self.sampler = np.random.default_rng(config.seed)
        self.tokens = 0
        self.step = 0
        # Tokens trained on cooldown branches: they cost compute but are not progress (tokens stays ASHA's clock).
        self.cooldown_tokens = 0
        self.best_val_bpc = math.inf

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self, split: str, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows`` (default batch_size) random blocks of ``split``: x and y (rows, T)."""
        x, y = self.dataset.sample_batch(split, rows or self.config.batch_size, self.config.block_size, self.sampler)
        return self._to_device(x), self._to_device(y)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def loss(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy (nats/token) of next-token predictions for x, y (B, T): the mean, or with reduction
        "sum" the sum, over the targets that are not ``IGNORED``."""
        with self.autocast():
            logits = self.forward(x)  # (B, T, V)
        return F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), y.view(-1), reduction=reduction, ignore_index=IGNORED
        )

    def train_until(
        self, target_tokens: int, on_step: Callable[[int], None], lr_of: Callable[[int], float] | None = None
    ) -> tuple[float, float]:
        """Optimiser steps until exactly ``target_tokens``; (mean train loss over them, seconds spent).

        Steps are whole (``tokens_per_step``) except the last, which is shortened when a whole one would pass
        the target: budgets and evaluation points are met exactly, never overrun. Each step's lr is
        ``lr_of(tokens)`` (default: the config's schedule).
        """
        config = self.config
        self.model.train()
        # Summed where it is computed and read once per call: reading it every step (loss.item()) would make
        # the CPU wait for a GPU at every step instead of queueing the next one. So a divergence is caught at
        # the end of the interval, at most one evaluation interval late.
        loss_sum, micro_batches = torch.zeros((), device=self.device), 0
        started = time.perf_counter()
        while self.tokens < target_tokens:
            set_lr(self.optimizer, lr_of(self.tokens) if lr_of is not None else lr_at(self.tokens, config))
            step_tokens = min(config.tokens_per_step, target_tokens - self.tokens)
            if step_tokens < config.tokens_per_step:
                loss_sum += self._short_step(step_tokens)
                micro_batches += 1
            else:
                for _ in range(config.grad_accum):
                    loss = self.loss(*self._batch("train"))
                    (loss / config.grad_accum).backward()
                    loss_sum += loss.detach()
                    micro_batches += 1
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens += step_tokens
            on_step(self.tokens)
        mean_loss = loss_sum.item() / max(1, micro_batches)  # waits for the device's queued work
        if not math.isfinite(mean_loss):
            raise Diverged(f"training loss became {mean_loss} by {self.tokens} tokens")
        return mean_loss, time.perf_counter() - started

    def _short_step(self, step_tokens: int) -> torch.Tensor:
        """Gradients of a step that trains on exactly ``step_tokens`` (< tokens_per_step) tokens: whole blocks,
        the last one's targets past the count masked out, in micro-batches of at most batch_size blocks. Its
        mean loss (nats/token), detached."""
        block_size, batch_size = self.config.block_size, self.config.batch_size
        rows = -(-step_tokens // block_size)  # ceil: the last block may count only in part
        total = torch.zeros((), device=self.device)
        for first in range(0, rows, batch_size):
            x, y = self._batch("train", min(batch_size, rows - first))
            counted = step_tokens - first * block_size  # tokens still to count, from this micro-batch's first
            if counted < y.numel():
                y = y.flatten().clone()
                y[counted:] = IGNORED
                y = y.view(x.shape)
            summed = self.loss(x, y, reduction="sum")
            (summed / step_tokens).backward()
            total += summed.detach()
        return total / step_tokens

    @contextlib.contextmanager
    def branch(self) -> Iterator[None]:
        """Run the body on a branch: afterwards the weights, optimiser, counters and every RNG are exactly as
        before it (a copy of :meth:`state_dict`, the state a checkpoint holds, is loaded back, even on error)."""
        saved = copy.deepcopy(self.state_dict())
        try:
            yield
        finally:
            self.load_state_dict(saved)

    def cool_down(self, tokens: int) -> tuple[float, float]:
        """Train ``tokens`` more tokens with the lr falling from its value now to 0 by ``cooldown_shape``;
        (mean train loss, seconds), as :meth:`train_until`. Meant for a :meth:`branch`."""
        start, start_lr = self.tokens, lr_at(self.tokens, self.config)
        shape = self.config.cooldown_shape
        return self.train_until(
            start + tokens, lambda _: None, lambda now: start_lr * cooldown_factor((now - start) / tokens, shape)
        )

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> float:
        """Mean loss (nats/token) over the dataset's fixed evaluation blocks of ``split``."""
        config = self.config
        self.model.eval()
        total, count = 0.0, 0
        for x, y in self.dataset.eval_batches(
            split, config.block_size, config.batch_size, max_blocks=config.eval_max_blocks
        ):
            total += self.loss(self._to_device(x), self._to_device(y), reduction="sum").item()
            count += y.size  # blocks x tokens
        self.model.train()
        return total / count

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, counters and every RNG state."""
        numpy_state = np.random.get_state(legacy=False)
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": {
                **numpy_state,
                "state": {
                    "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                    "pos": numpy_state["state"]["pos"],
                },
            },
            "sampler": self.sampler.bit_generator.state,
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "tokens": self.tokens,
            "step": self.step,
            "best_val_bpc": self.best_val_bpc,
            "cooldown_tokens": self.cooldown_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens, self.step, self.best_val_bpc = state["tokens"], state["step"], state["best_val_bpc"]
        self.cooldown_tokens = state.get("cooldown_tokens", 0)  # absent from checkpoints of older versions
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        random.setstate(rng["python"])
        numpy_state = rng["numpy"]
        np.random.set_state(
            {
                **numpy_state,
                "state": {
                    "key": numpy_state["state"]["key"].numpy().astype(np.uint32),
                    "pos": numpy_state["state"]["pos"],
                },
            }
        )
        self.sampler.bit_generator.state = rng["sampler"]
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
