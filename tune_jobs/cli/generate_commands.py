"""``textune generate``: sample text from a checkpoint (or a run's newest checkpoint)."""

from __future__ import annotations

from pathlib import Path

import click

from models.config import MAX_SEED
from tune_jobs.cli.params import LocalPath, finite_float

# A bound the sampler honours in minutes on a CPU, far past any useful sample; the sample streams as it grows.
MAX_NEW_TOKENS = 1_000_000
MAX_SAMPLES = 1000


@click.command("generate")
@click.argument("checkpoint", type=LocalPath("any", must_exist=True))
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(1, MAX_NEW_TOKENS),
    default=200,
    show_default=True,
    help="Length of each sample; it is printed as it is generated.",
)
@click.option(
    "--temperature",
    type=finite_float(0, 1000),
    default=0.8,
    show_default=True,
    help="Softmax temperature; 0 picks the most likely token every time.",
)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Sample among the k most likely tokens.")
@click.option(
    "--top-p",
    type=finite_float(0, 1, low_open=True),
    default=None,
    help="Sample among the most likely tokens that together hold probability p (nucleus).",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Same seed, same samples.")
@click.option("--num-samples", type=click.IntRange(1, MAX_SAMPLES), default=1, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="CPU threads for sampling. One token at a time is too little work to share: on a busy 2-core "
    "machine one thread sampled 4.5x faster than PyTorch's default. Raise it for large models.",
)
def generate_command(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    num_samples: int,
    device: str,
    threads: int,
) -> None:
    """Continue --prompt from CHECKPOINT (a checkpoint directory, a run directory or an experiment).

    Samples go to stdout as they are generated, one after another; their diversity (distinct-1 and distinct-2
    of the new tokens) to stderr. Bytes that are not UTF-8 (byte tokenizer) print as U+FFFD.
    """
    import torch

    from models.generate import encode_prompt, load_model, sample_text
    from models.metrics import distinct_n
    from models.trainer import resolve_device
    from tune_jobs.results.checkpoints import resolve_checkpoint  # also takes an experiment (its best trial)

    torch.set_num_threads(threads)
    torch_device = resolve_device(device, "--device")
    loaded = load_model(resolve_checkpoint(checkpoint), torch_device)
    prompt_ids = encode_prompt(loaded.tokenizer, prompt, torch_device)  # (1, T0)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    new_tokens: list[list[int]] = []
    for index in range(num_samples):
        if num_samples > 1:
            click.echo(f"--- sample {index + 1} ---")
        sample = sample_text(
            loaded.model,
            loaded.tokenizer,
            prompt_ids,
            max_new_tokens,
            generator=generator,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            on_text=lambda text: click.echo(text, nl=False),
        )
        click.echo()
        new_tokens.append(sample.ids[0, prompt_ids.size(1) :].tolist())
    click.echo(
        f"distinct-1 {distinct_n(new_tokens, 1):.3f}  distinct-2 {distinct_n(new_tokens, 2):.3f}  "
        f"({num_samples} sample(s) of {max_new_tokens} tokens, checkpoint at "
        f"{loaded.meta['tokens']:,} tokens)",
        err=True,
    )
