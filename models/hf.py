"""Hugging Face causal LMs as a family (``family: hf``): from a config, randomly initialised, or from a local
``save_pretrained`` directory; never from a hub.

``hf: {model_type: gpt2 | llama | ..., <config keys>}`` builds ``AutoModelForCausalLM.from_config`` of that
config type, with the tokenizer's vocabulary size, a context of at least ``block_size`` positions and textune's
``dropout`` in every dropout key the config has (unless ``hf:`` sets it). ``pretrained: PATH`` loads the weights
and config saved there with ``local_files_only=True`` (``hf:`` keys then override the saved config's).
:class:`HFCausalLM` puts the model behind the families' interface, its own KV cache serving generation.
Every mistake (an unknown model type or key, a missing or damaged directory, a vocabulary that differs from the
tokenizer's) is a TextuneError naming the key. ``adapter: lora`` fine-tunes a saved model with LoRA (models.lora).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.config import TrialConfig
from models.plugin import WrappedLM
from textune.errors import TextuneError

# Never reach a hub: a trial on a cluster node must not depend on the network, nor fetch unvetted code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Keys of every config that say nothing about the network, or that textune sets itself.
SET_BY_TEXTUNE = {"vocab_size"}
HF_HINT = "See docs/models.md, *Hugging Face models*."


@dataclass
class HFCache:
    """The model's own KV cache (a transformers Cache, None before the first call) and the positions it holds."""

    past: Any = None
    length: int = 0


class HFCausalLM(WrappedLM):
    """A transformers causal LM: ``forward(idx (B, T), cache=None) -> logits (B, T, V)``; FLOPs count the weights
    outside its token and position embedding tables."""

    def forward(self, idx: torch.Tensor, cache: HFCache | None = None) -> torch.Tensor:
        if cache is None:
            return self.inner(input_ids=idx, use_cache=False).logits  # (B, T, V)
        out = self.inner(input_ids=idx, cache=cache.past, use_cache=True)
        cache.past, cache.length = out.cache, cache.length + idx.shape[1]
        return out.logits  # (B, T, V)

    @staticmethod
    def new_cache() -> HFCache:
        return HFCache()


def build_hf_model(config: TrialConfig, vocab_size: int) -> HFCausalLM:
    """The model of ``config.hf`` (random weights) or ``config.pretrained`` (saved weights); raises TextuneError."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load on stderr, amid textune's own output
    hf_config = _hf_config(config, vocab_size)
    try:
        if config.pretrained is not None:
            inner = AutoModelForCausalLM.from_pretrained(config.pretrained, config=hf_config, local_files_only=True)
        else:
            inner = AutoModelForCausalLM.from_config(hf_config)
    except Exception as exc:  # damaged weights, a model type without a causal LM: the user's input, any error
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise TextuneError(
            f"{describe(config)}: transformers could not build a causal LM from it: {type(exc).__name__}: {first_line}",
            HF_HINT,
        ) from exc
    if config.adapter == "lora" and config.pretrained is not None:  # the config requires pretrained with it
        from models.lora import AdaptedLM, add_lora

        return AdaptedLM(add_lora(inner, config), config.block_size, config.pretrained)
    return HFCausalLM(inner, config.block_size)


def describe(config: TrialConfig) -> str:
    """The key that chose the model, as messages name it: ``pretrained "PATH"`` or ``hf.model_type "TYPE"``."""
    if config.pretrained is not None:
        return f'pretrained "{config.pretrained}"'
    return f'hf.model_type "{config.hf.get("model_type")}"'


def _hf_config(config: TrialConfig, vocab_size: int) -> Any:
    """The transformers config: the saved one (``pretrained``) or ``hf.model_type``'s defaults, with ``hf:``'s keys,
    the vocabulary, the context and textune's dropout applied."""
    from transformers import AutoConfig

    base, keys = base_config(config)
    if config.pretrained is not None and base.vocab_size != vocab_size:
        raise TextuneError(
            f'pretrained "{config.pretrained}" has a vocabulary of {base.vocab_size} tokens, '
            f"the dataset's tokenizer {vocab_size}.",
            "Prepare the dataset with the checkpoint's own tokenizer: data.tokenizer: {kind: "
            f"pretrained, path: {config.pretrained}}}.",
        )
    # The dropout keys differ between model types (resid_pdrop, attention_dropout, ...): textune's dropout is the
    # one knob for all of them, as for the built-in families.
    dropouts = {
        k: config.dropout
        for k, v in base.to_dict().items()
        if ("dropout" in k or "pdrop" in k) and isinstance(v, float)
    }
    settings: dict[str, Any] = {"vocab_size": vocab_size, **dropouts}
    if config.pretrained is None:
        # A model type's special token ids point into its own vocabulary (gpt2's 50256): not into this one.
        settings.update(
            {
                k: None
                for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                if isinstance(getattr(base, k, None), int) and getattr(base, k) >= vocab_size
            }
        )
        # A context shorter than block_size would cut every block (a saved model's is fixed by its weights).
        positions = getattr(base, "max_position_embeddings", None)
        position_keys = {"max_position_embeddings", base.attribute_map.get("max_position_embeddings")}
        if isinstance(positions, int) and positions < config.block_size and not position_keys & set(keys):
            settings["max_position_embeddings"] = config.block_size
    settings.update(keys)
    if config.pretrained is not None:
        for key, value in settings.items():
            setattr(base, key, value)
        built = base
    else:  # built anew from the keys, as a config derives some of its keys from others (llama's head_dim)
        built = AutoConfig.for_model(base.model_type, **settings)
    if getattr(built, "max_position_embeddings", config.block_size) < config.block_size:
        raise TextuneError(
            f"block_size {config.block_size} is longer than the model's max_position_embeddings "
            f"({built.max_position_embeddings}).",
            "Lower block_size, or raise hf.max_position_embeddings (a model from a config only).",
        )
    return built


def base_config(config: TrialConfig) -> tuple[Any, dict[str, Any]]:
    """The transformers config a model starts from (``pretrained``'s saved one, or ``hf.model_type``'s defaults)
    and ``hf:``'s other keys, each checked to be a key of it. Needs no dataset, so a missing directory or an
    unknown model type is found before one is prepared; raises TextuneError naming the key."""
    from transformers import CONFIG_MAPPING, AutoConfig

    keys = dict(config.hf)
    model_type = keys.pop("model_type", None)
    if config.pretrained is not None:
        base = _pretrained_config(config.pretrained)
    elif model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(str(model_type), list(CONFIG_MAPPING), n=3)
        raise TextuneError(
            f"hf.model_type {model_type!r} is not a transformers model type"
            + (f" (did you mean {', '.join(close)}?)" if close else "."),
            "Give hf.model_type as a causal LM type such as gpt2 or llama, with the config keys "
            "of that type beside it.",
        )
    else:
        base = AutoConfig.for_model(model_type)
    _check_keys(base, keys)
    return base, keys


def _check_keys(base: Any, keys: dict[str, Any]) -> None:
    """Refuse a key of ``hf:`` that the config ``base`` does not have, or that textune sets (the vocabulary)."""
    known = set(base.to_dict()) | set(base.attribute_map)
    unknown = sorted(set(keys) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        problem = f"is not a key of {base.model_type}'s config" + (f' (did you mean "{close[0]}"?)' if close else "")
    elif SET_BY_TEXTUNE & set(keys):
        unknown, problem = sorted(SET_BY_TEXTUNE & set(keys)), "is set by textune (the tokenizer's vocabulary size)"
    else:
        return
    raise TextuneError(
        f"hf.{unknown[0]} {problem}.",
        f"Use the config keys of transformers' {type(base).__name__}; textune's own keys (lr, "
        "batch_size, dropout, block_size, ...) go beside hf:, not in it.",
    )


def _pretrained_config(path: str) -> Any:
    from transformers import AutoConfig

    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        problem = "does not exist" if not directory.exists() else "holds no config.json"
        raise TextuneError(
            f'pretrained "{path}" {problem}: textune loads a local save_pretrained directory '
            "(config.json and safetensors weights), never from a hub.",
            "Give the directory a model was saved to with model.save_pretrained(PATH).",
        )
    try:
        return AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TextuneError(
            f'pretrained "{path}": its config.json is unreadable: {str(exc).splitlines()[0]}',
            "Save the model again with save_pretrained.",
        ) from exc
