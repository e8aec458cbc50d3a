"""LoRA fine-tuning of a saved Hugging Face model (``family: hf``, ``pretrained``, ``adapter: lora``) with peft.

Only the adapter's low-rank matrices train; the base stays as saved. So a checkpoint holds the adapter's weights
only, beside the SHA-256 of the base's files (``BASE_SHA256``): loading one rebuilds the base from the
``pretrained`` path in its config and refuses a base that changed since. ``lora_r`` and ``lora_alpha`` are trial
keys, so a search can tune them.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from models.config import TrialConfig
from models.hf import HF_HINT, HFCausalLM
from textune.digest import sha256_of
from textune.errors import TextuneError

# The entry of an adapter checkpoint's model state that names its base (a string beside the tensors).
BASE_SHA256 = "base_sha256"


def add_lora(inner: nn.Module, config: TrialConfig) -> nn.Module:
    """``inner`` with LoRA adapters on ``lora_target_modules`` (peft's default for the model type when unset), the
    rest frozen; raises TextuneError when a target matches no module."""
    from peft import LoraConfig, get_peft_model

    # GPT-2's linear layers are Conv1D, weights stored (in, out): peft must know (it warns and guesses otherwise).
    conv1d = any(type(module).__name__ == "Conv1D" for module in inner.modules())
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        fan_in_fan_out=conv1d,
    )
    try:
        with warnings.catch_warnings():  # peft 0.21 calls an API transformers 5 deprecates: not the user's to fix
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(inner, lora)
    except ValueError as exc:  # peft's NoMatchingPeftModuleError, or no default targets for this model type
        linear = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in inner.named_modules()
                if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
            }
        )
        raise TextuneError(
            f"lora_target_modules {config.lora_target_modules}: {str(exc).splitlines()[0]}",
            f"Name modules of the model to adapt; its linear layers are: {', '.join(linear)}. " + HF_HINT,
        ) from exc


def base_checksum(directory: str) -> str:
    """The SHA-256 of a saved model's config.json and weight files together (64 hex digits)."""
    path = Path(directory).expanduser()
    digest = hashlib.sha256()
    for file in sorted([path / "config.json", *path.glob("*.safetensors"), *path.glob("*.bin")]):
        digest.update(f"{file.name}:{sha256_of(file)}\n".encode())
    return digest.hexdigest()


class AdaptedLM(HFCausalLM):
    """An HF model under LoRA: its state is the adapter's trainable weights and the base's checksum."""

    def __init__(self, inner: nn.Module, block_size: int, pretrained: str) -> None:
        super().__init__(inner, block_size)
        self.pretrained, self.base_sha256 = pretrained, base_checksum(pretrained)

    def trainable(self) -> set[str]:
        return {name for name, param in self.named_parameters() if param.requires_grad}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        trainable = self.trainable()
        state = {key: value for key, value in super().state_dict(*args, **kwargs).items() if key in trainable}
        return {**state, BASE_SHA256: self.base_sha256}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        weights = {key: value for key, value in state_dict.items() if key != BASE_SHA256}
        saved_base = state_dict.get(BASE_SHA256)
        if saved_base != self.base_sha256:
            raise TextuneError(
                f'pretrained "{self.pretrained}" is not the base model this adapter was trained on: '
                f"its files have SHA-256 {self.base_sha256[:12]}…, the checkpoint recorded "
                f"{str(saved_base)[:12]}….",
                "Put the base model the adapter was trained on back at that path.",
            )
        missing = self.trainable() - set(weights)
        if strict and (missing or set(weights) - self.trainable()):
            raise RuntimeError(
                f"adapter state does not match the model: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(set(weights) - self.trainable())[:3]}"
            )
        return super().load_state_dict(weights, strict=False, assign=assign)
