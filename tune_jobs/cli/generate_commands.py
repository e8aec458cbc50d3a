"""``textune generate``: sample text from a checkpoint (or a run's newest checkpoint)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("generate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="Softmax temperature; 0 picks the most likely token every time.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Sample among the k most likely tokens.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Sample among the most likely tokens that together hold probability p (nucleus).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same samples.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def generate(checkpoint: Path, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None,
             top_p: float | None, seed: int, num_samples: int, device: str) -> None:
    """Continue --prompt from CHECKPOINT (a checkpoint directory or a run directory).

    Samples go to stdout; their diversity (distinct-1 and distinct-2 of the new tokens) to stderr.
    """
    import torch

    from tune_jobs.results import resolve_checkpoint  # also takes an experiment (its best trial)
    from models.generate import encode_prompt, generate as sample, load_model
    from models.metrics import distinct_n
    from models.trainer import resolve_device

    torch_device = resolve_device(device)
    loaded = load_model(resolve_checkpoint(checkpoint), torch_device)
    prompt_ids = encode_prompt(loaded.tokenizer, prompt, torch_device).expand(num_samples, -1)  # (S, T0)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    output = sample(loaded.model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    generator=generator)
    new_tokens = output[:, prompt_ids.shape[1]:].tolist()
    for index, ids in enumerate(output.tolist()):
        if num_samples > 1:
            click.echo(f"--- sample {index + 1} ---")
        click.echo(loaded.tokenizer.decode(ids))
    click.echo(f"distinct-1 {distinct_n(new_tokens, 1):.3f}  distinct-2 {distinct_n(new_tokens, 2):.3f}  "
               f"({num_samples} sample(s) of {max_new_tokens} tokens, checkpoint at "
               f"{loaded.meta['tokens']:,} tokens)", err=True)
