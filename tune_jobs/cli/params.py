"""Option and argument types every command shares, so each reads its input the same way.

- Paths (:class:`LocalPath`): read by textune.paths.expand_path's rule (``~``, relative paths, spaces). The
  kind is checked before any work starts: a directory where a file is expected, a file where a directory is
  expected, a pipe or a missing input is one paragraph, exit 2.
- Numbers (:func:`finite_float`): NaN and infinities are refused, as click's own ranges let them through.
- Options that several commands take are defined here once, with one help text and one default
  (:data:`TOP_K_OPTION`, :func:`gcs_address_option`, :data:`JOBS_URL_OPTION`).

An option's own bounds are checked by its click type as the command line is parsed, so a bad value gets click's
one message whatever the command; what needs more than the value (the experiment, the dataset) is checked by the
command before it starts work. (`cluster up`, `data prepare` and `replay` still pass their numbers to a typed
config that checks them and names the option.)
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any, Literal

import click

from textune.paths import expand_path

Kind = Literal["file", "dir", "any"]


class LocalPath(click.ParamType):
    """A local path of one ``kind``; ``must_exist`` for inputs. Converts to an absolute :class:`Path`.

    An output path (``must_exist=False``) may be missing, but what is there must be of the right kind: a
    regular file (or nothing) for a file, a directory (or nothing) for a directory.
    """

    name = "path"

    def __init__(self, kind: Kind = "any", must_exist: bool = False) -> None:
        self.kind, self.must_exist = kind, must_exist

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        text = os.fspath(value)
        if not text.strip():
            self.fail("an empty path names nothing; give a file or directory.", param, ctx)
        path = expand_path(text)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if self.must_exist:
                self.fail(f"{path} does not exist.", param, ctx)
            return path
        except NotADirectoryError:
            blocking = next(parent for parent in path.parents if parent.exists() and not parent.is_dir())
            self.fail(f"{path} cannot exist: {blocking} is a file, not a directory.", param, ctx)
        except OSError as exc:  # e.g. no permission to look
            self.fail(f"{path} cannot be used: {exc.strerror}.", param, ctx)
        if self.kind == "file" and not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
            self.fail(f"{path} is {what}; a file is expected here.", param, ctx)
        if self.kind == "dir" and not stat.S_ISDIR(mode):
            what = "a file" if stat.S_ISREG(mode) else "a pipe, socket or device"
            self.fail(f"{path} is {what}, not a directory; a directory is expected here.", param, ctx)
        if self.kind == "any" and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            self.fail(f"{path} is not a regular file or directory (a pipe, socket or device).", param, ctx)
        return path


def finite_float(low: float | None = None, high: float | None = None, low_open: bool = False) -> click.ParamType:
    """A float option within ``[low, high]`` (``(low, high]`` with ``low_open``) that is never NaN or infinite."""
    return _FiniteFloatRange(low, high, min_open=low_open)


TOP_K_OPTION = click.option(
    "--top-k",
    "top_k",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="How many of the search's best distinct configs, best first.",
)

# Two kinds of cluster address, named in every help text: a driver connects to the head's GCS (cluster.connection),
# a job is submitted to its Jobs API (cluster.jobs). Each refuses the other kind with a message saying which to use.
_GCS_ADDRESS_HELP = (
    "The Ray cluster's GCS address: HOST:PORT (the head's port, 6379 by default), ray://HOST:10001 "
    "(Ray Client) or auto. A Jobs API URL (what `textune submit` takes) is accepted only for the "
    "cluster `textune cluster up` started."
)


def gcs_address_option(without: str) -> Any:
    """``--address`` of a command that connects to a cluster as a driver; ``without`` says what happens when it
    is not given."""
    return click.option("--address", default=None, help=f"{_GCS_ADDRESS_HELP} {without}")


JOBS_URL_OPTION = click.option(
    "--address",
    required=True,
    help="The head's Jobs API URL: http://HOST:8265 (the dashboard's port); not a GCS "
    "address, which is for `textune run --address`.",
)


class _FiniteFloatRange(click.FloatRange):
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):  # NaN compares false with every bound, so FloatRange lets it pass
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
