"""Entry point of the ``textune`` command.

Commands are loaded lazily (``module:attribute``) so ``textune --help`` does
not pay for importing torch or Ray. Errors the user can fix
(:class:`TextuneError`) are printed as one paragraph with exit status 2;
``--debug`` shows their traceback too.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from textune import __version__
from textune.errors import TextuneError

# name -> "module:attribute" of a click command or group. One convention: a module tune_jobs/cli/X_commands.py
# holds the command X (tune_commands.py: the experiment commands run, resume, best, export, tensorboard); a
# command's function is NAME_command, a group's NAME_group (its subcommands' too: data_group's prepare_command).
COMMANDS: dict[str, str] = {
    "train": "tune_jobs.cli.train_commands:train_command",
    "generate": "tune_jobs.cli.generate_commands:generate_command",
    "data": "tune_jobs.cli.data_commands:data_group",
    "run": "tune_jobs.cli.tune_commands:run_command",
    "resume": "tune_jobs.cli.tune_commands:resume_command",
    "best": "tune_jobs.cli.tune_commands:best_command",
    "export": "tune_jobs.cli.tune_commands:export_command",
    "tensorboard": "tune_jobs.cli.tune_commands:tensorboard_command",
    "cluster": "tune_jobs.cli.cluster_commands:cluster_group",
    "submit": "tune_jobs.cli.submit_commands:submit_command",
    "jobs": "tune_jobs.cli.jobs_commands:jobs_group",
    "confirm": "tune_jobs.cli.confirm_commands:confirm_command",
    "analyze": "tune_jobs.cli.analyze_commands:analyze_command",
    "report": "tune_jobs.cli.report_commands:report_command",
    "replay": "tune_jobs.cli.replay_commands:replay_command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click's own message for an unknown command lacks a suggestion.
        name = args[0] if args else None
        if name is not None and name not in COMMANDS and not name.startswith("-"):
            from textune.config import did_you_mean

            raise click.UsageError(
                f'no command "{name}".{did_you_mean(name, COMMANDS)} Commands: {", ".join(sorted(COMMANDS))}.', ctx
            )
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="textune")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Tune PyTorch Transformer language models with Ray Tune (ASHA + HyperOpt)."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _click_paragraph(exc: click.ClickException) -> str:
    """click's own errors (unknown option, bad option value) as one paragraph, like a TextuneError's."""
    text = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    if context is not None:  # a usage error knows its command, so it can point at that command's help
        text += f" See `{context.command_path} --help`."
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode click returns a command's exit status (click.exceptions.Exit) instead of
        # exiting: pass it on, or `textune train` that diverges would exit 0.
        status = cli.main(args=argv, prog_name="textune", standalone_mode=False)
    except TextuneError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.paragraph()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_click_paragraph(exc)}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
