"""The user's own model: ``family: "package.module:function"``, a factory behind the built-in families' interface.

The factory is called as ``function(config, vocab_size)`` with the validated :class:`TrialConfig` and the
tokenizer's vocabulary size, and returns an ``nn.Module`` whose ``forward(idx (B, T)) -> logits (B, T, V)``.
:class:`PluginLM` wraps it so the trainer, checkpoints and generation treat it as any family. Everything a
factory can get wrong (the import, its signature, what it returns, the shape of its logits, a model that reads
later tokens) is a TextuneError naming ``family``, found on one tiny batch by :func:`check_model` before any
training (tune_jobs.preflight runs it before Ray starts). :class:`WrappedLM` serves models.hf's family too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from models.config import TrialConfig
from models.language_model import LanguageModel
from textune.errors import TextuneError

FACTORY_HINT = (
    'A family "package.module:function" names a function taking (config, vocab_size) that returns an '
    "nn.Module whose forward(idx (B, T)) gives logits (B, T, vocab_size), in a module importable where "
    "trials run (docs/models.md, *Your own model*)."
)


def resolve_factory(family: str) -> Callable[[TrialConfig, int], nn.Module]:
    """The factory ``family`` names, after checking that it takes (config, vocab_size); raises TextuneError."""
    module_name, _, attribute = family.partition(":")
    # `python -m` puts the working directory on sys.path but the `textune` console script does not, while Ray
    # does on its workers: the user's module beside their job imports everywhere, after installed packages.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while it is imported
        raise TextuneError(
            f'family "{family}": importing module {module_name} failed with {type(exc).__name__}: {exc}.', FACTORY_HINT
        ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TextuneError(
            f'family "{family}": module {module_name} ({module.__file__}) has no function {attribute}.', FACTORY_HINT
        )
    try:
        inspect.signature(factory).bind(None, 0)
    except TypeError as exc:
        raise TextuneError(
            f'family "{family}": {attribute}{inspect.signature(factory)} cannot be called with '
            f"(config, vocab_size): {exc}.",
            FACTORY_HINT,
        ) from exc
    except ValueError:  # a builtin without a signature: calling it will tell
        pass
    return factory


@dataclass
class Context:
    """The tokens a plug-in model has seen, each (B, T_past): its "cache" for generation (see PluginLM.forward)."""

    tokens: list[torch.Tensor] = field(default_factory=list)
    length: int = 0


class WrappedLM(LanguageModel):
    """A model built elsewhere (a user's, transformers') behind the families' interface: ``inner`` holds it, and
    ``block_size`` is the context that generation crops to, as for the Transformer."""

    def __init__(self, inner: nn.Module, block_size: int) -> None:
        super().__init__()
        self.inner = inner
        self.block_size = block_size

    def non_embedding_params(self) -> int:
        """Parameters outside ``nn.Embedding`` tables (each tensor counted once): the N of 6·N FLOPs per token."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters() if id(p) not in embeddings)


class PluginLM(WrappedLM):
    """A user's model: ``forward(idx (B, T), cache=None) -> logits (B, T, V)``.

    The user's model keeps no state between calls, so its cache is the context itself: each cached call runs the
    whole context and returns the new positions' logits, the very computation of uncached generation (so both
    give the same tokens, and each token costs the whole window, as without a cache).
    """

    def forward(self, idx: torch.Tensor, cache: Context | None = None) -> torch.Tensor:
        if cache is None:
            return self.inner(idx)
        cache.tokens.append(idx)
        cache.length += idx.shape[1]
        return self.inner(torch.cat(cache.tokens, dim=1))[:, -idx.shape[1] :]  # (B, T, V) of the new tokens

    @staticmethod
    def new_cache() -> Context:
        return Context()


def build_plugin_model(config: TrialConfig, vocab_size: int) -> PluginLM:
    """Call ``config.family``'s factory; raises TextuneError when it fails or returns something else than a module."""
    factory = resolve_factory(config.family)
    try:
        inner = factory(config, vocab_size)
    except Exception as exc:  # the user's code: any failure is theirs to fix, reported as one paragraph
        raise TextuneError(
            f'family "{config.family}": the factory raised {type(exc).__name__}: {exc}.', FACTORY_HINT
        ) from exc
    if not isinstance(inner, nn.Module):
        raise TextuneError(
            f'family "{config.family}": the factory returned {type(inner).__name__}, not an nn.Module.', FACTORY_HINT
        )
    return PluginLM(inner, config.block_size)


def check_model(
    model: LanguageModel, config: TrialConfig, vocab_size: int, label: str | None = None, hint: str = FACTORY_HINT
) -> None:
    """Run one tiny batch (2, min(block_size, 8)) through ``model``, in eval mode: its logits must be (2, T,
    vocab_size), and causal (changing the last token changes no earlier position's logits).

    Raises TextuneError starting with ``label`` (default: ``family "<family>"``) and ending with ``hint``. Its
    RNG use is undone, so a checked model trains as an unchecked one.
    """
    label = label or f'family "{config.family}"'
    batch, length = 2, min(config.block_size, 8)
    idx = torch.arange(batch * length).remainder(vocab_size).view(batch, length)  # (B, T)
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % vocab_size
    was_training = model.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model.eval()
        try:
            logits, logits_changed = model(idx), model(changed)
        except Exception as exc:  # the user's forward
            raise TextuneError(
                f"{label}: forward on a batch of token ids of shape {tuple(idx.shape)} raised "
                f"{type(exc).__name__}: {exc}.",
                hint,
            ) from exc
        finally:
            model.train(was_training)
    expected = (batch, length, vocab_size)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected or not logits.is_floating_point():
        got = (
            f"a {logits.dtype} tensor of shape {tuple(logits.shape)}"
            if isinstance(logits, torch.Tensor)
            else type(logits).__name__
        )
        raise TextuneError(
            f"{label}: forward on token ids of shape {tuple(idx.shape)} returned {got}; logits of "
            f"shape {expected} (B, T, vocab_size) were expected.",
            hint,
        )
    # A model that sees later tokens learns to copy them: its loss would fall while it learns no language.
    if not torch.allclose(logits[:, :-1], logits_changed[:, :-1], atol=1e-5):
        raise TextuneError(
            f"{label}: the model is not causal: changing the last token of a sequence changed the "
            "logits of earlier positions, so it would be trained to read the token it predicts.",
            hint,
        )
