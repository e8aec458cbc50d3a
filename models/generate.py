"""Sampling text from a trained model: temperature, top-k, top-p, a seeded generator, and a cache.

With ``use_cache`` the Transformer keeps its keys and values (the LSTM its recurrent state), so each new
token costs one position instead of the whole context. Without it every step recomputes the context; both
paths give the same tokens, which the tests check. A Transformer never sees more than ``block_size`` tokens:
once the context is longer, the cache is rebuilt from the last ``block_size`` tokens, exactly what the
uncached path feeds the model.

:func:`sample_tokens` yields each token as it is sampled and :class:`TextStream` turns them into text at once,
so ``textune generate`` prints a long sample while it is being written. :func:`sample_text` is the one way text
is sampled from a model: by ``textune generate``, by a trial for TensorBoard, and from a loaded checkpoint
(:meth:`LoadedModel.continue_prompt`) at the end of a search and in the quality report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_pipeline.tokenization import Tokenizer, load_tokenizer, printable
from models.checkpoint import ANNEALED_MODEL, load_checkpoint
from models.config import TrialConfig, parse_trial_config
from models.families import build_model
from models.language_model import LanguageModel
from textune.errors import TextuneError

logger = logging.getLogger(__name__)

# Samples for people to read (the end of a search, the quality report, textune generate's default) are drawn
# slightly cooler than the model's distribution.
SAMPLE_TEMPERATURE = 0.8


def next_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator
) -> torch.Tensor:
    """One token per row of logits (B, V) -> (B, 1); temperature 0 means greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # Shifted so the best logit is 0 before dividing, and the temperature kept above float32's underflow: a
    # tiny temperature then gives -inf for the others, never inf - inf or 0 / 0 = NaN.
    logits = logits.float()
    temperature = max(temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the more likely ones before it already reach top_p (the best always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator)


def generate(
    model: LanguageModel,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue prompt (B, T0) by ``max_new_tokens`` tokens; returns (B, T0 + max_new_tokens)."""
    tokens = sample_tokens(
        model,
        prompt,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
        use_cache=use_cache,
    )
    return torch.cat((prompt, *tokens), dim=1)


@torch.no_grad()
def sample_tokens(
    model: LanguageModel,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the ``max_new_tokens`` tokens (B, 1) that continue prompt (B, T0), each as soon as it is sampled."""
    was_training = model.training
    model.eval()
    if generator is None:
        generator = torch.Generator(device=prompt.device).manual_seed(0)
    limit = model.block_size  # None: a recurrent model takes any length
    sequence = prompt

    def window() -> torch.Tensor:
        return sequence if limit is None else sequence[:, -limit:]

    cache = model.new_cache() if use_cache else None
    # The next step reads a block (Transformer), the newest token (a recurrent model's cache holds the rest) or,
    # for a recurrent model without a cache, everything.
    keep = limit if limit is not None else (1 if use_cache else None)
    try:
        for step in range(max_new_tokens):
            if not use_cache:
                logits = model(window())
            elif step == 0 or (limit is not None and cache is not None and cache.length >= limit):
                cache = model.new_cache()
                logits = model(window(), cache)
            else:
                logits = model(sequence[:, -1:], cache)  # only the newest token; the cache holds the rest
            token = next_token(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            # Only the context the next step reads is kept, so a long sample costs no more per token than a short one.
            sequence = torch.cat((sequence if keep is None else sequence[:, -keep:], token), dim=1)
            yield token
    finally:
        model.train(was_training)


@dataclass
class TextSample:
    """A prompt and its continuation: ``ids`` (1, T0 + new tokens) and ``text``, all of them decoded (printable:
    an undecodable byte is U+FFFD)."""

    ids: torch.Tensor
    text: str


def sample_text(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    generator: torch.Generator,
    temperature: float = SAMPLE_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    on_text: Callable[[str], None] | None = None,
) -> TextSample:
    """Continue prompt (1, T0) by ``max_new_tokens`` tokens drawn with ``generator`` (its state decides them).

    ``on_text`` receives the text while it is sampled, in printable pieces: the prompt's, then what each new
    token completes (:class:`TextStream`), then what is still held back at the end.
    """
    stream = TextStream(tokenizer)
    if on_text is not None:
        on_text(printable(tokenizer.decode(prompt[0].tolist())))
    # Plain ints: a long sample (textune generate allows a million tokens) would hold a tensor object per token.
    new_ids: list[int] = []
    for token in sample_tokens(
        model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    ):  # each (1, 1)
        new_ids.append(int(token))
        if on_text is not None:
            on_text(printable(stream.push(new_ids[-1])))
    if on_text is not None:
        on_text(printable(stream.flush()))
    ids = torch.cat((prompt, torch.tensor([new_ids], dtype=prompt.dtype, device=prompt.device)), dim=1)
    return TextSample(ids, printable(tokenizer.decode(ids[0].tolist())))


class TextStream:
    """Turns token ids, pushed one at a time, into text that can be printed at once.

    A character may span several tokens (byte and BPE tokenizers): text ending in an unfinished one (a lone
    surrogate from the byte tokenizer, U+FFFD from BPE) is held back until the character completes, or until
    ``MAX_PENDING`` tokens show it never will. The pieces join to ``tokenizer.decode`` of all the ids (unless
    a character starts after more than ``MAX_PENDING`` undecodable tokens in a row)."""

    MAX_PENDING = 8  # a UTF-8 character has at most 4 bytes

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token_id: int) -> str:
        """The text that ``token_id`` completes ('' while a character is unfinished)."""
        self.pending.append(token_id)
        text = self.tokenizer.decode(self.pending)
        if text and _unfinished(text[-1]) and len(self.pending) < self.MAX_PENDING:
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        """Whatever is still held back, at the end of the sample."""
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text


def _unfinished(char: str) -> bool:
    return char == "\ufffd" or "\udc80" <= char <= "\udcff"


@dataclass
class LoadedModel:
    model: LanguageModel  # in eval mode, on device
    config: TrialConfig
    tokenizer: Tokenizer
    meta: dict[str, Any]
    device: torch.device

    def continue_prompt(self, prompt: str, seed: int, max_new_tokens: int) -> TextSample:
        """``prompt`` and its continuation at the sampling temperature, from a generator seeded with ``seed``."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return sample_text(
            self.model,
            self.tokenizer,
            encode_prompt(self.tokenizer, prompt, self.device),
            max_new_tokens,
            generator=generator,
        )


def load_model(checkpoint_dir: str | Path, device: torch.device) -> LoadedModel:
    """The model, its trial config, its tokenizer and the checkpoint metadata, from a verified checkpoint."""
    state, meta = load_checkpoint(checkpoint_dir, map_location=device)
    config = parse_trial_config(meta["config"], where=f"config stored in checkpoint {checkpoint_dir}")
    model = build_model(config, meta["vocab_size"]).to(device)
    model.load_state_dict(state.get(ANNEALED_MODEL, state["model"]))  # a rung's cooled-down model, if any
    tokenizer = load_tokenizer(Path(checkpoint_dir), meta["tokenizer_kind"])
    return LoadedModel(model.eval(), config, tokenizer, meta, device)


def encode_prompt(tokenizer: Tokenizer, prompt: str, device: torch.device) -> torch.Tensor:
    """The prompt as ids (1, T0); an empty prompt is refused because the model needs a first token."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise TextuneError("--prompt encodes to no tokens.", 'Give at least one character, e.g. --prompt "\\n".')
    # A character the tokenizer never saw becomes its unknown token, which the model has never learnt to
    # continue: say so, rather than let the sample look like a broken model.
    decoded = tokenizer.decode(ids)
    unseen = sorted({char for char in prompt if char not in decoded})
    if unseen:
        logger.warning(
            "the prompt holds characters this model's tokenizer never saw in training (%s); they "
            "become its unknown token and the sample may be garbled",
            " ".join(map(repr, unseen)),
        )
    return torch.tensor([ids], dtype=torch.long, device=device)
