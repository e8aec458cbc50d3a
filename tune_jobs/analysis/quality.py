"""Text quality of an experiment's top configs: seeded samples from each one's best checkpoint, measured.

For each of the ``top_k`` best trials that kept a checkpoint, every prompt is continued once per seed at the
sampling temperature of ``textune run``'s end-of-run sample. Each config then gets:

``distinct_1``, ``distinct_2``  unique word uni-/bigrams over all word uni-/bigrams of its samples (Li et al.,
                                2016): diversity, 1.0 = nothing repeats. Counted on whitespace-separated
                                words, so configs with different tokenizers compare.
``repetition_rate``             the share of a sample's word 4-grams that repeat an earlier 4-gram of the same
                                sample (seq-rep-4 of Welleck et al., 2019), averaged over the samples:
                                degenerate loops score near 1, varied text near 0.
``self_bpc``, ``self_ppl``      the samples' bits per character and per-token perplexity under their own model
                                (scored in consecutive windows of ``block_size`` tokens, as validation is):
                                how fluent the model finds its own text. Sampling below temperature 1
                                favours likely tokens, so these sit below the validation figures.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow.fs
import pydantic

from textune.config import StrictModel
from tune_jobs.experiment import Experiment

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from models.generate import LoadedModel

REPETITION_N = 4


class QualityConfig(StrictModel):
    """Which configs to sample and how (``textune report``'s sampling options).

    This module imports torch only inside its functions, so the CLI checks these options in a moment.
    """

    top_k: pydantic.PositiveInt = 3
    prompts: list[Annotated[str, pydantic.StringConstraints(min_length=1)]] = ["\n"]
    seeds: list[int] = pydantic.Field(default=[0, 1, 2], min_length=1)
    max_new_tokens: pydantic.PositiveInt = 200


def word_ids(texts: list[str]) -> list[list[int]]:
    """Each text as ids of its whitespace-separated words (one shared vocabulary), for distinct_n."""
    vocabulary: dict[str, int] = {}
    return [[vocabulary.setdefault(word, len(vocabulary)) for word in text.split()] for text in texts]


def repetition_rate(words: list[int], n: int = REPETITION_N) -> float:
    """Share of the n-grams of one sample that repeat an earlier one of it; 0.0 for a sample shorter than n."""
    from models.metrics import distinct_n

    grams = len(words) - n + 1
    return 1.0 - distinct_n([words], n) if grams > 0 else 0.0


def text_metrics(texts: list[str]) -> dict[str, float]:
    """Diversity and repetition of one config's samples (see the module docstring)."""
    from models.metrics import distinct_n

    words = word_ids(texts)
    return {
        "distinct_1": distinct_n(words, 1),
        "distinct_2": distinct_n(words, 2),
        "repetition_rate": sum(repetition_rate(sample) for sample in words) / len(words),
    }


def self_nats(loaded: LoadedModel, ids: torch.Tensor, prompt_length: int) -> float:
    """The summed loss in nats of the generated tokens of ``ids`` (1, T) under the model that produced them.

    A Transformer sees at most ``block_size`` tokens, so the sequence is scored in consecutive windows of that
    length, each predicting its tokens from the ones before it in the window.
    """
    import torch
    import torch.nn.functional as F

    window = loaded.model.block_size or ids.size(1)  # None: a recurrent model takes the whole sequence
    total = 0.0
    with torch.no_grad():
        for start in range(0, ids.size(1) - 1, window):
            chunk = ids[:, start : start + window + 1]  # (1, <= window + 1): inputs and their next tokens
            logits = loaded.model(chunk[:, :-1])  # (1, t, V)
            targets = chunk[:, 1:].clone()  # (1, t)
            before_output = prompt_length - 1 - start  # targets that are still prompt tokens
            if before_output > 0:
                targets[:, :before_output] = -100  # cross_entropy's ignore_index
            losses = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100, reduction="sum"
            )
            total += float(losses)
    return total


def sample_config(loaded: LoadedModel, config: QualityConfig) -> dict[str, Any]:
    """Every prompt continued once per seed, with the config's metrics over those samples."""
    from models.metrics import bits_per_char, perplexity

    samples: list[dict[str, Any]] = []
    nats, tokens, characters = 0.0, 0, 0
    for prompt in config.prompts:
        prompt_length = len(loaded.tokenizer.encode(prompt))
        for seed in config.seeds:
            ids = loaded.continue_prompt(prompt, seed, config.max_new_tokens).ids  # (1, T0 + max_new_tokens)
            continuation = loaded.tokenizer.decode(ids[0, prompt_length:].tolist())
            samples.append({"prompt": prompt, "seed": seed, "text": continuation})
            nats += self_nats(loaded, ids, prompt_length)
            tokens += config.max_new_tokens
            characters += len(continuation)
    nats_per_token = nats / tokens
    return {
        **text_metrics([sample["text"] for sample in samples]),
        "self_ppl": perplexity(nats_per_token),
        "self_bpc": bits_per_char(nats_per_token, max(characters, 1) / tokens),
        "tokenizer": loaded.meta["tokenizer_kind"],
        "samples": samples,
    }


def trial_checkpoint(experiment: Experiment, row: pd.Series) -> str:
    """The trial's best checkpoint inside ``experiment`` (by name, so a moved or copied experiment works)."""
    _, root = experiment.filesystem()
    return f"{root}/{Path(row['trial_dir']).name}/{Path(row['checkpoint']).name}"


def top_trials(trials: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` best trials (best-first table) with a finite metric and a checkpoint."""
    kept = trials[trials["best_metric"].map(math.isfinite) & trials["checkpoint"].notna()]
    return kept.head(k)


@contextlib.contextmanager
def local_directory(filesystem: pyarrow.fs.FileSystem, path: str) -> Iterator[Path]:
    """A directory of the experiment's filesystem as a local path (downloaded to a temporary one if remote)."""
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="textune-checkpoint-") as local:
        pyarrow.fs.copy_files(
            path, local, source_filesystem=filesystem, destination_filesystem=pyarrow.fs.LocalFileSystem()
        )
        yield Path(local)


def sample_top_configs(experiment: Experiment, trials: pd.DataFrame, config: QualityConfig) -> dict[str, Any]:
    """The samples document (``analysis/samples.json``) for the best trials of a best-first table."""
    import torch

    from models.generate import SAMPLE_TEMPERATURE, load_model
    from tune_jobs.results.table import searched_config

    filesystem, _ = experiment.filesystem()
    configs = []
    threads = torch.get_num_threads()
    # One token at a time through a small model: handing each tiny matmul to several threads costs more than
    # it saves, and on a busy machine far more (benchmarks/bench_report.py: 28x slower with 2 threads than 1).
    torch.set_num_threads(1)
    try:
        for rank, (_, row) in enumerate(top_trials(trials, config.top_k).iterrows(), start=1):
            with local_directory(filesystem, trial_checkpoint(experiment, row)) as checkpoint_dir:
                loaded = load_model(checkpoint_dir, torch.device("cpu"))
            configs.append(
                {
                    "rank": rank,
                    "trial_id": row["trial_id"],
                    "config": searched_config(row),
                    "best_metric": float(row["best_metric"]),
                    **sample_config(loaded, config),
                }
            )
    finally:
        torch.set_num_threads(threads)
    return {"temperature": SAMPLE_TEMPERATURE, "repetition_n": REPETITION_N, **config.model_dump(), "configs": configs}
