"""``textune train``: train one model without Ray, into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from models.status import TrialStatus
from textune.config import apply_overrides, load_yaml, validate
from textune.errors import TextuneError
from tune_jobs.cli.params import LocalPath

DEFAULT_RUNS_DIR = Path(".textune") / "runs"


def split_data_section(raw: dict[str, Any], where: str) -> tuple[dict[str, Any], Any]:
    """(trial config, DataConfig or None): the ``data:`` section, validated, apart from the trial's keys."""
    if "data" in raw and "dataset_dir" in raw:
        raise TextuneError(
            f'{where}: both "data" and "dataset_dir" are given.',
            "Keep one: a data: section to prepare (cached), or dataset_dir of a prepared dataset.",
        )
    if "data" not in raw:
        if "dataset_dir" not in raw:
            raise TextuneError(
                f'{where}: neither "data" nor "dataset_dir" says what to train on.',
                "Add a data: section (e.g. data: {source: shakespeare}) or dataset_dir: PATH.",
            )
        return raw, None
    from data_pipeline.config import DataConfig

    trial = {key: value for key, value in raw.items() if key != "data"}
    return trial, validate(DataConfig, raw["data"], f"{where}, section data")


@click.command("train")
@click.argument("config_path", metavar="CONFIG.yaml", type=LocalPath("file", must_exist=True))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (repeatable), e.g. --set lr=3e-4 --set data.source=shakespeare.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its newest intact checkpoint.")
@click.option(
    "--run-dir",
    type=LocalPath("dir"),
    default=None,
    help=f"Where the run's checkpoints, metrics and TensorBoard files go [default: {DEFAULT_RUNS_DIR}/<config name>].",
)
def train_command(config_path: Path, overrides: tuple[str, ...], resume: bool, run_dir: Path | None) -> None:
    """Train one model as CONFIG.yaml says (a data: section or dataset_dir, plus trial hyperparameters).

    Prints a line per evaluation and, on a terminal, a progress bar between them. Exits 1 when training
    diverges or runs out of memory. Every key is documented in docs/models.md.
    """
    from models.config import parse_trial_config
    from models.families import check_model_source
    from models.run_dir import checkpoint_to_resume, train_in_run_dir
    from models.trainer import resolve_device, use_tensor_cores

    where = f"training config {config_path}"
    config, data_config = split_data_section(
        apply_overrides(load_yaml(config_path, "training config"), overrides), where
    )
    run_dir = (
        run_dir if run_dir is not None else LocalPath("dir").convert(DEFAULT_RUNS_DIR / config_path.stem, None, None)
    )
    # Every mistake in the config or the run directory surfaces before a possibly long data preparation.
    trial = parse_trial_config({"dataset_dir": "(prepared from the data: section)", **config}, where)
    resolve_device(trial.device, f'{where}: "device"')
    budget_problems = trial.budget_below_a_batch()
    if budget_problems:
        raise TextuneError(f"{where}: {budget_problems[0]}.", "Raise the budget, or lower batch_size or block_size.")
    try:
        check_model_source(trial)  # a factory that does not import, a missing pretrained directory
    except TextuneError as exc:
        raise TextuneError(f"{where}: {exc.message}", exc.hint) from exc
    if trial.warmup_tokens >= trial.max_tokens:
        click.echo(
            f"warning: warmup_tokens ({trial.warmup_tokens:,}) is not below max_tokens "
            f"({trial.max_tokens:,}): the learning rate rises for the whole run and never reaches lr "
            f"({trial.lr:g}) nor decays. Lower warmup_tokens (a few percent of max_tokens is usual).",
            err=True,
        )
    resume_from = checkpoint_to_resume(run_dir, resume)
    if data_config is not None:
        from data_pipeline.prepare import prepare_dataset

        config["dataset_dir"] = str(prepare_dataset(data_config))
    use_tensor_cores()
    result = train_in_run_dir(config, run_dir, resume_from)
    click.echo(
        f"{result.status}: {result.tokens:,} tokens, best val_bpc {result.best_val_bpc:.4f}, "
        f"{result.num_params:,} parameters; run directory {run_dir}"
    )
    if result.status != TrialStatus.COMPLETED:
        raise click.exceptions.Exit(1)
