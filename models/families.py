"""Model families by name: every family takes the trial config and the vocabulary size.

``family`` is a built-in name (``transformer``, ``lstm``), ``hf`` (a Hugging Face causal LM, models.hf) or a
user's factory ``"package.module:function"`` (models.plugin).
"""

from __future__ import annotations

from models.config import TrialConfig
from models.language_model import LanguageModel
from models.lstm import LSTMLM
from models.transformer import TransformerLM

FAMILIES: dict[str, type[LanguageModel]] = {"transformer": TransformerLM, "lstm": LSTMLM}


def build_model(config: TrialConfig, vocab_size: int) -> LanguageModel:
    """A freshly initialised model of ``config.family`` (seed the RNG first for reproducible weights).

    A user's or a Hugging Face model is checked on one tiny batch (models.plugin.check_model): its logits' shape
    and causality. A TextuneError names what is wrong.
    """
    if config.family in FAMILIES:
        return FAMILIES[config.family](config, vocab_size)
    from models.plugin import build_plugin_model, check_model

    if config.family == "hf":
        from models.hf import HF_HINT, build_hf_model, describe

        hf_model = build_hf_model(config, vocab_size)
        check_model(hf_model, config, vocab_size, describe(config), HF_HINT)  # a model type may not be causal (bert)
        return hf_model
    model = build_plugin_model(config, vocab_size)
    check_model(model, config, vocab_size)
    return model


def check_model_source(config: TrialConfig) -> None:
    """Check what of ``config``'s model needs no dataset (nor its vocabulary), so a mistake there is found before
    one is prepared: a user's factory imports and takes (config, vocab_size) (models.plugin.resolve_factory); a
    Hugging Face model's ``pretrained`` directory holds a readable config, or ``hf.model_type`` is a model type
    whose config has every key of ``hf:`` (models.hf.base_config). The built-in families need nothing.

    Raises the TextuneError building the model would, its message starting with the key (``family``, ``hf.KEY``,
    ``pretrained``). :func:`build_model` checks the rest (the logits on one tiny batch, the vocabulary).
    """
    if config.family in FAMILIES:
        return
    if config.family == "hf":
        from models.hf import base_config

        base_config(config)
        return
    from models.plugin import resolve_factory

    resolve_factory(config.family)
