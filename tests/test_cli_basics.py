"""The CLI itself: version, help on every command, one-paragraph errors, exit statuses, paths."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydantic
import pytest

from conftest import REPO_ROOT, assert_user_error, run_textune
from textune import __version__
from textune.config import StrictModel, apply_overrides, validate
from textune.errors import TextuneError
from tune_jobs.cli.main import COMMANDS


def test_version() -> None:
    result = run_textune("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = run_textune(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_unknown_command_suggests_the_closest() -> None:
    result = run_textune("dta") if "data" in COMMANDS else run_textune("zzz")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no command" in result.stderr


class Inner(StrictModel):
    max_tokens: int
    eval_every_tokens: int = 10


class Outer(StrictModel):
    name: str
    budget: Inner


def test_unknown_key_gets_did_you_mean() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Outer, {"name": "x", "budget": {"max_tokens": 5, "eval_every_token": 3}}, "job spec j.yaml")
    text = info.value.paragraph()
    assert "budget.eval_every_token" in text
    assert 'Did you mean "eval_every_tokens"?' in text
    assert "\n" not in text


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Outer, {"name": "x", "budget": {"max_tokens": "lots"}}, "job spec j.yaml")
    assert '"budget.max_tokens"' in info.value.paragraph()


def test_overrides_set_nested_keys_and_parse_values() -> None:
    data = apply_overrides({"budget": {"max_tokens": 1}}, ["budget.max_tokens=200", "name=run-a", "x.y=[1, 2]"])
    assert data == {"budget": {"max_tokens": 200}, "name": "run-a", "x": {"y": [1, 2]}}
    with pytest.raises(TextuneError):
        apply_overrides({}, ["novalue"])


class Split(StrictModel):
    train: float
    val: float

    @pydantic.model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if self.train + self.val != 1:
            raise ValueError("train + val must sum to 1")
        return self


def test_cross_key_check_reads_as_one_sentence() -> None:
    with pytest.raises(TextuneError) as info:
        validate(Split, {"train": 0.5, "val": 0.2}, "job spec j.yaml")
    assert info.value.paragraph().startswith("job spec j.yaml: train + val must sum to 1.")


# --- exit statuses and servers: these start TensorBoard, so they run in make test's loopback-only namespace -------


def _fake_experiment(root: Path) -> Path:
    """A directory `textune tensorboard` accepts as an experiment (its spec file is what marks one)."""
    experiment = root / "exp"
    experiment.mkdir()
    (experiment / "textune-job.yaml").write_text("name: exp\n", encoding="utf-8")
    return experiment


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tensorboard_on_a_busy_port_is_refused(tmp_path: Path) -> None:
    experiment = _fake_experiment(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_textune("tensorboard", str(experiment), "--port", str(port), timeout=60)
    assert_user_error(result, f"--port {port}: 127.0.0.1:{port} is in use", "Choose another --port")


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_sigterm_to_textune_tensorboard_stops_the_server_too(tmp_path: Path) -> None:
    # --port 0: the address textune prints is the one TensorBoard serves.
    experiment, log = _fake_experiment(tmp_path), tmp_path / "tensorboard.log"
    command = [sys.executable, "-m", "tune_jobs.cli.main", "tensorboard", str(experiment), "--port", "0"]
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 180  # TensorBoard takes seconds to import on a busy machine
        while not (printed := re.search(r"at http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        port = int(printed.group(1))
        assert port != 0
        while not _serving(port):
            assert process.poll() is None and time.monotonic() < deadline, "TensorBoard did not start"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 15
        while _serving(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _serving(port), "the TensorBoard server outlived textune tensorboard"
    finally:
        process.kill()
        process.wait()


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- a read-only experiment: the analyses still run; a report goes to --out -------------------------------------


def _read_only(experiment: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``textune ARGS`` with ``experiment`` mounted read-only (a private mount namespace: root, as make test runs)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    command = ["unshare", "-m", "sh", "-c", script, str(experiment), sys.executable, "-m", "tune_jobs.cli.main", *args]
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(experiment), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount read-only here (needs root and mount namespaces): {probe.stderr.decode()[-200:]}")
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


@pytest.mark.timeout(900)
def test_analyze_and_report_read_a_read_only_experiment(experiment_copy: Path, tmp_path: Path) -> None:
    before = sorted(str(p) for p in experiment_copy.rglob("*"))
    analyzed = _read_only(experiment_copy, "analyze", str(experiment_copy))
    assert analyzed.returncode == 0, analyzed.stderr
    assert "budget rule" in analyzed.stdout and "written:" not in analyzed.stdout
    assert "analysis/importance.json not saved: the experiment cannot be written" in analyzed.stderr
    refused = _read_only(experiment_copy, "report", str(experiment_copy))
    assert_user_error(refused, f"report directory {experiment_copy}/report cannot be written", "--out")
    out = tmp_path / "elsewhere"
    reported = _read_only(
        experiment_copy,
        "report",
        str(experiment_copy),
        "--out",
        str(out),
        "--top-k",
        "1",
        "--seeds",
        "1",
        "--max-new-tokens",
        "8",
    )
    assert reported.returncode == 0, reported.stderr
    assert (out / "index.html").is_file()
    assert sorted(str(p) for p in experiment_copy.rglob("*")) == before


# --- paths: one reading for every command ------------------------------------------------------------------------


@pytest.mark.slow
def test_path_options_expand_tilde_and_keep_spaces_and_relative_paths(tmp_path: Path) -> None:
    home = tmp_path / "home dir"
    home.mkdir()
    # The shell leaves "~" alone after "=": textune expands it itself.
    prepared = run_textune(
        "data", "prepare", "synthetic", "--characters", "2000", "--out=~/my data", env={"HOME": str(home)}
    )
    assert prepared.returncode == 0, prepared.stderr
    dataset = next(p for p in (home / "my data").iterdir() if not p.name.startswith("."))
    assert f"dataset:   {dataset}" in prepared.stdout
    inspected = run_textune("data", "inspect", f"my data/{dataset.name}", cwd=home)
    assert inspected.returncode == 0, inspected.stderr
    missing = run_textune("train", "~/no such.yaml", env={"HOME": str(home)})
    assert_user_error(missing, f"{home}/no such.yaml does not exist")


def test_local_path_refuses_the_wrong_sort_of_path(tmp_path: Path) -> None:
    import os

    import click

    from tune_jobs.cli.params import LocalPath

    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    cases = [
        (LocalPath("file"), tmp_path, "is a directory; a file is expected"),
        (LocalPath("dir"), tmp_path / "file", "is a file, not a directory"),
        (LocalPath("file"), tmp_path / "pipe", "not a regular file (a pipe, socket or device)"),
        (LocalPath("any", must_exist=True), tmp_path / "nothing", "does not exist"),
        (LocalPath("dir"), tmp_path / "file" / "below", f"{tmp_path / 'file'} is a file, not a directory"),
        (LocalPath("file"), "", "an empty path names nothing"),
    ]
    for param_type, value, fragment in cases:
        with pytest.raises(click.BadParameter, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            param_type.convert(str(value), None, None)
    assert LocalPath("dir").convert(str(tmp_path / "new"), None, None) == tmp_path / "new"
