"""A real local multi-node cluster (`textune cluster up`): auth, status, job submission, S3 storage, down.

One cluster serves the module: a CPU head and two workers with 2 CPUs and 2 logical GPUs each, every node a
`ray start --block` process on 127.0.0.1. Run inside a loopback-only network namespace (``make test``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.local_state import read_state
from conftest import BUCKET, REPO_ROOT, assert_user_error, build_wheel, run_textune
from support.jobs import tiny_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WORKERS, CPUS_PER_WORKER, GPUS_PER_WORKER = 2, 2, 2


class LocalCluster:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state = read_state(state_dir)
        assert state is not None
        self.state = state

    @property
    def env(self) -> dict[str, str]:
        """What a user exports to use the cluster."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.state.token_path), "RAY_AUTH_TOKEN": ""}

    def textune(self, *args: str, env: dict[str, str] | None = None, timeout: float = 150):
        return run_textune(*args, env={**self.env, **(env or {})}, timeout=timeout)

    def unexported_env(self, home: Path) -> dict[str, str]:
        """A user who ran `cluster up` and exported nothing: the cache holds the record (its default place),
        and ``home`` a stale ~/.ray/auth_token of some earlier Ray, the one Ray reads when nothing is set."""
        (home / ".ray").mkdir(parents=True, exist_ok=True)
        (home / ".ray" / "auth_token").write_text("0" * 64)
        return {
            "TEXTUNE_CACHE_DIR": str(self.state_dir.parent),
            "HOME": str(home),
            "RAY_AUTH_MODE": "",
            "RAY_AUTH_TOKEN": "",
            "RAY_AUTH_TOKEN_PATH": "",
        }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # The record in its default place under a cache ($TEXTUNE_CACHE_DIR/cluster), so that commands run with
    # that cache find the cluster as a user's commands do.
    state_dir = tmp_path_factory.mktemp("cluster-cache") / "cluster"
    started = run_textune(
        "cluster",
        "up",
        "--workers",
        str(WORKERS),
        "--cpus-per-worker",
        str(CPUS_PER_WORKER),
        "--gpus-per-worker",
        str(GPUS_PER_WORKER),
        "--state-dir",
        str(state_dir),
        timeout=150,
    )
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        assert "GCS address:   127.0.0.1:" in started.stdout
        yield LocalCluster(state_dir)
    finally:
        if read_state(state_dir) is not None:
            run_textune("cluster", "down", "--state-dir", str(state_dir), timeout=60)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["cluster", "down"], "no local cluster is up (no record in"),
        (["cluster", "status"], "no local cluster is up and no --address was given"),
        (["cluster", "up", "--workers", "-1"], "cluster up: --workers -1 is invalid"),
        (["cluster", "up", "--object-store-mb", "10"], "--object-store-mb 10 is invalid"),
    ],
)
def test_cluster_commands_without_a_cluster_or_with_bad_options(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_user_error(run_textune(*args, "--state-dir", str(tmp_path)), fragment)
    assert not (tmp_path / "cluster.json").exists()


def test_up_records_its_nodes_and_a_private_token(cluster: LocalCluster) -> None:
    state = cluster.state
    assert [node.role for node in state.nodes] == ["head"] + ["worker"] * WORKERS
    assert all(Path(f"/proc/{node.pid}").exists() for node in state.nodes)
    assert state.token_path.stat().st_mode & 0o777 == 0o600
    assert len(state.token_path.read_text()) == 64


@pytest.mark.parametrize("service", ["gcs", "dashboard"])
def test_services_listen_on_127_0_0_1_only(cluster: LocalCluster, service: str) -> None:
    address = cluster.state.gcs_address if service == "gcs" else cluster.state.dashboard_url.split("//")[1]
    port = int(address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    # 127.0.0.2 is loopback too: a server bound to every address would answer there.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
        pass


def test_status_shows_nodes_resources_and_trial_slots(cluster: LocalCluster) -> None:
    result = run_textune(
        "cluster", "status", "--state-dir", str(cluster.state_dir), "--gpus-per-trial", "1", "--cpus-per-trial", "1"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{WORKERS + 1} node(s)" in result.stdout
    assert f"GPU {WORKERS * GPUS_PER_WORKER}/{WORKERS * GPUS_PER_WORKER}" in result.stdout
    assert "running trials: 0" in result.stdout
    # 2 GPUs and 2 CPUs per worker, none on the head: 2 one-GPU trials per worker.
    assert f"trial slots (1 GPU + 1 CPU per trial): {WORKERS * 2}" in result.stdout


def test_second_up_on_the_same_state_is_refused(cluster: LocalCluster) -> None:
    result = run_textune("cluster", "up", "--state-dir", str(cluster.state_dir))
    assert_user_error(result, "already up", cluster.state.gcs_address)


@pytest.mark.parametrize(
    "env, fragments",
    [
        ({"RAY_AUTH_TOKEN": "0" * 64}, ["rejected the auth token from RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"]),
        (
            {"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": "", "RAY_AUTH_MODE": "", "HOME": "/nonexistent"},
            ["requires an auth token and none is set", "RAY_AUTH_TOKEN_PATH"],
        ),
        (
            {"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": "", "HOME": "/nonexistent"},
            ["RAY_AUTH_MODE=token is set but no auth token was found", "RAY_AUTH_TOKEN"],
        ),
    ],
    ids=["wrong-token", "no-token", "token-mode-without-token"],
)
def test_client_without_the_right_token_is_refused_within_seconds(
    cluster: LocalCluster, env: dict[str, str], fragments: list[str]
) -> None:
    started = time.monotonic()
    result = cluster.textune("cluster", "status", "--address", cluster.state.gcs_address, env=env)
    assert_user_error(result, *fragments)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "list", "--address", "{dashboard}"],
        ["cluster", "status", "--address", "{gcs}"],
        ["cluster", "status", "--address", "{dashboard}"],
    ],
    ids=["jobs-list", "status-gcs", "status-jobs-url"],
)
def test_the_local_cluster_s_addresses_bring_its_token(
    cluster: LocalCluster, command: list[str], tmp_path: Path
) -> None:
    """`cluster up`, then commands given its addresses with nothing exported (the README's sequence)."""
    args = [part.format(dashboard=cluster.state.dashboard_url, gcs=cluster.state.gcs_address) for part in command]
    result = run_textune(*args, env=cluster.unexported_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        ("no jobs" in result.stdout or "submission id" in result.stdout)
        if command[0] == "jobs"
        else f"{WORKERS + 1} node(s)" in result.stdout
    )


@pytest.mark.parametrize("token, fragment", [("0" * 64, "rejected the auth token"), ("", "none is set")])
def test_jobs_api_without_the_right_token_is_refused(cluster: LocalCluster, token: str, fragment: str) -> None:
    env = {"RAY_AUTH_TOKEN": token, "RAY_AUTH_TOKEN_PATH": "", "HOME": "/nonexistent"}
    result = cluster.textune("jobs", "list", "--address", cluster.state.dashboard_url, env=env)
    assert_user_error(result, fragment, "RAY_AUTH_TOKEN")


@pytest.mark.parametrize(
    "command, address, fragment",
    [
        ("status", "127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1"),
        ("status", "10.255.255.1:6379", "cannot reach a Ray cluster at 10.255.255.1:6379"),
        ("status", "no-port-here", "is not HOST:PORT"),
        ("status", "http://127.0.0.1:8265", "is a dashboard (Jobs API) URL"),
        ("jobs", "http://127.0.0.1:1", "cannot reach the Jobs API"),
        ("jobs", "127.0.0.1:6379", "is not a Jobs API URL"),
    ],
)
def test_unreachable_or_malformed_address_fails_within_seconds(
    cluster: LocalCluster, command: str, address: str, fragment: str
) -> None:
    args = (
        ["cluster", "status", "--address", address] if command == "status" else ["jobs", "list", "--address", address]
    )
    started = time.monotonic()
    result = cluster.textune(*args)
    assert_user_error(result, fragment)
    assert time.monotonic() - started < 15


def write_job(path: Path, **changes: object) -> Path:
    job = {**tiny_job(path.parent / "storage"), **changes}
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def test_submitted_search_spreads_over_the_workers_and_writes_results(cluster: LocalCluster, tmp_path: Path) -> None:
    # 2 CPUs per trial: one trial fills a worker, so two trials at once must use both workers.
    job = write_job(
        tmp_path / "job.yaml",
        name="submitted",
        num_samples=2,
        max_concurrent_trials=2,
        resources={"cpu": CPUS_PER_WORKER, "gpu": 1},
        budget={"max_tokens": 40960, "eval_every_tokens": 10240},
    )
    # As the README says, with nothing exported: the Jobs API URL brings the cluster's token.
    user = cluster.unexported_env(tmp_path / "home")
    submitted = run_textune("submit", str(job), "--address", cluster.state.dashboard_url, env=user)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    submission_id = submitted.stdout.split("submitted ", 1)[1].split()[0]

    followed = run_textune(
        "jobs", "logs", submission_id, "--address", cluster.state.dashboard_url, "--follow", env=user, timeout=150
    )
    assert followed.returncode == 0 and f"job {submission_id} SUCCEEDED" in followed.stdout, followed.stdout[-3000:]
    assert "tune_jobs.cli.main run" in followed.stdout

    import pandas as pd

    trials = pd.read_parquet(tmp_path / "storage" / "submitted" / "results.parquet")
    assert (trials["status"] == "completed").all(), trials
    assert trials["node_id"].nunique() == 2
    listed = cluster.textune("jobs", "list", "--address", cluster.state.dashboard_url)
    assert listed.returncode == 0 and submission_id in listed.stdout and "SUCCEEDED" in listed.stdout


def test_a_search_submitted_from_a_regular_install_runs_the_submitter_s_packages(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # textune from its wheel in a venv of its own, its dependencies taken from the project's venv through a .pth
    # file (a path line: no .pth inside that folder runs, so the checkout's editable install stays out of sight).
    wheel, _ = build_wheel(tmp_path / "build")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site_packages / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    user_env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **cluster.env}
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=user_env,
        timeout=120,
    )
    elsewhere = tmp_path / "elsewhere"  # the user's folder: no checkout on sys.path
    elsewhere.mkdir()
    job = write_job(
        elsewhere / "job.yaml",
        name="from-wheel",
        num_samples=1,
        max_concurrent_trials=1,
        budget={"max_tokens": 2048, "eval_every_tokens": 1024},
    )
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tune_jobs; print(tune_jobs.__file__)"],
        cwd=elsewhere,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.stdout.strip() == str(site_packages / "tune_jobs" / "__init__.py"), installed.stderr

    submitted = subprocess.run(
        [str(venv / "bin" / "textune"), "submit", str(job), "--address", cluster.state.dashboard_url, "--follow"],
        cwd=elsewhere,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert submitted.returncode == 0 and "SUCCEEDED" in submitted.stdout, submitted.stderr[-3000:]
    # The job's driver ran the packages Ray unpacked from the submission, not the nodes' own (editable) copy.
    [shipped] = [line for line in submitted.stdout.splitlines() if line.startswith("# tune_jobs from ")]
    assert "/py_modules_files/" in shipped and str(REPO_ROOT) not in shipped, shipped

    import pandas as pd

    trials = pd.read_parquet(elsewhere / "storage" / "from-wheel" / "results.parquet")
    assert list(trials["status"]) == ["completed"] and list(trials["tokens"]) == [2048], trials


def test_a_submitted_search_ships_the_user_s_model_factory_from_their_source_folder(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # The factory's package exists only in a folder on the submitter's PYTHONPATH: no node could import it
    # unless submit ships it, so a completed trial is one trained with the shipped factory.
    package = tmp_path / "src" / "my_textune_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text((REPO_ROOT / "tests/support/plugin_models.py").read_text())
    model = {**tiny_job(tmp_path)["model"], "family": "my_textune_models:gru"}
    job = write_job(
        tmp_path / "job.yaml",
        name="own-model",
        model=model,
        num_samples=1,
        max_concurrent_trials=1,
        budget={"max_tokens": 2048, "eval_every_tokens": 1024},
    )
    python_path = os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")]))
    submitted = cluster.textune(
        "submit", str(job), "--address", cluster.state.dashboard_url, "--follow", env={"PYTHONPATH": python_path}
    )
    assert submitted.returncode == 0 and "SUCCEEDED" in submitted.stdout, submitted.stderr[-3000:]
    assert f"  ships:  {package}\n" in submitted.stdout

    import pandas as pd

    trials = pd.read_parquet(tmp_path / "storage" / "own-model" / "results.parquet")
    assert list(trials["status"]) == ["completed"] and list(trials["tokens"]) == [2048], trials
    from models.checkpoint import load_checkpoint

    state, meta = load_checkpoint(trials["checkpoint"][0])
    assert meta["config"]["family"] == "my_textune_models:gru" and "inner.gru.weight_hh_l0" in state["model"]


def test_submit_follow_reports_a_failed_job_and_a_running_job_can_be_stopped(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("storage cannot go under a file")
    failing = write_job(tmp_path / "fails.yaml", name="fails", storage=str(tmp_path / "a-file" / "storage"))
    result = cluster.textune("submit", str(failing), "--address", cluster.state.dashboard_url, "--follow")
    assert result.returncode == 2 and "ended FAILED" in result.stderr, result.stderr[-2000:]
    assert "is not writable" in result.stdout  # the driver's own error, streamed from the head

    long_job = write_job(
        tmp_path / "long.yaml", name="long", budget={"max_tokens": 10_000_000, "eval_every_tokens": 1024}
    )
    submitted = cluster.textune("submit", str(long_job), "--address", cluster.state.dashboard_url)
    submission_id = submitted.stdout.split("submitted ", 1)[1].split()[0]
    stopped = cluster.textune("jobs", "stop", submission_id, "--address", cluster.state.dashboard_url)
    assert stopped.returncode == 0 and f"job {submission_id} STOPPED" in stopped.stdout, stopped.stderr[-2000:]
    _wait_until_idle(cluster)  # the driver is gone with its trials, not left training as an orphan
    again = cluster.textune("jobs", "stop", submission_id, "--address", cluster.state.dashboard_url)
    assert_user_error(again, "already ended (STOPPED)")


def test_submit_refuses_storage_the_cluster_would_lose(cluster: LocalCluster, tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", name="relative")
    result = cluster.textune(
        "submit", str(job), "--address", cluster.state.dashboard_url, "--set", "storage=experiments"
    )
    assert_user_error(result, 'storage "experiments" is a relative path', "s3://")


def test_jobs_logs_and_stop_of_an_unknown_job_list_what_exists(cluster: LocalCluster) -> None:
    for action in ("logs", "stop"):
        result = cluster.textune("jobs", action, "raysubmit_nope", "--address", cluster.state.dashboard_url)
        assert_user_error(result, 'no job "raysubmit_nope"', "textune jobs list")


def test_job_needing_more_gpus_than_a_node_has_fails_fast(cluster: LocalCluster, tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", name="too-big", resources={"cpu": 1, "gpu": GPUS_PER_WORKER + 1})
    result = cluster.textune("run", str(job), "--address", cluster.state.gcs_address, timeout=90)
    # The run logs its progress first; the last line is the error.
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error:") and f"has {GPUS_PER_WORKER} GPU" in last_line


def test_multi_node_search_with_s3_storage_runs_and_resumes(
    cluster: LocalCluster, s3_endpoint: str, tmp_path: Path
) -> None:
    storage = f"s3://{BUCKET}/runs?endpoint_override={s3_endpoint}&scheme=http"
    job = write_job(tmp_path / "job.yaml", name="on-s3", num_samples=2, resources={"cpu": 1, "gpu": 1}, storage=storage)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    result = cluster.textune("run", str(job), "--address", cluster.state.gcs_address, env=env)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])

    import pyarrow.fs as pafs

    from cluster.storage import resolve_storage

    filesystem, root = resolve_storage(storage)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        files = [info.path for info in filesystem.get_file_info(pafs.FileSelector(f"{root}/on-s3", recursive=True))]
    assert f"{root}/on-s3/results.parquet" in files
    assert any("/checkpoint_" in path for path in files)

    experiment = storage.replace("/runs?", "/runs/on-s3?")
    resumed = cluster.textune("resume", experiment, "--address", cluster.state.gcs_address, env=env)
    assert resumed.returncode == 0, (resumed.stdout[-3000:], resumed.stderr[-3000:])
    assert "2 completed" in resumed.stdout


@pytest.mark.timeout(300)
def test_status_counts_the_trials_running_on_each_node(cluster: LocalCluster, tmp_path: Path) -> None:
    # Trials that would train for hours hold their slots until the driver stops, so status is polled while
    # they run with no race against their end (time_budget_s only guards against a driver the test lost).
    _wait_until_idle(cluster)
    job = write_job(
        tmp_path / "job.yaml",
        name="long",
        num_samples=2,
        max_concurrent_trials=2,
        resources={"cpu": CPUS_PER_WORKER, "gpu": 1},
        budget={"max_tokens": 10**8, "eval_every_tokens": 1024, "time_budget_s": 170},
    )
    driver_log = tmp_path / "driver.log"
    with open(driver_log, "w") as output:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tune_jobs.cli.main", "run", str(job), "--address", cluster.state.gcs_address],
            cwd=REPO_ROOT,
            env={**os.environ, **cluster.env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        # Both trials up: a starting actor's node is not yet certain in the GCS table (a pending one can show
        # its owner's node), so placement is judged on running trials.
        deadline, status = time.monotonic() + 150, ""
        while "running trials: 2\n" not in status:
            assert driver.poll() is None, driver_log.read_text()[-3000:]
            assert time.monotonic() < deadline, status
            status = run_textune("cluster", "status", "--state-dir", str(cluster.state_dir)).stdout
    finally:
        driver.send_signal(signal.SIGINT)  # Ctrl-C: the driver saves the experiment and its trials end
        try:
            driver.wait(timeout=120)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
    # 2 CPUs per trial fill a worker: one trial on each worker, none on the head.
    assert sorted(_placed_trials(status)) == [("head", 0), ("worker", 1), ("worker", 1)], status
    assert "free / total: CPU 1/5, GPU 2/4" in status  # the resources those two trials hold


def _wait_until_idle(cluster: LocalCluster) -> None:
    """Wait until the actors of earlier tests' drivers are gone: Ray ends a dead driver's actors
    asynchronously, and a count taken while they linger would include them."""
    idle = (
        f"free / total: CPU {1 + WORKERS * CPUS_PER_WORKER}/{1 + WORKERS * CPUS_PER_WORKER}, "
        f"GPU {WORKERS * GPUS_PER_WORKER}/{WORKERS * GPUS_PER_WORKER}"
    )
    deadline, status = time.monotonic() + 90, ""
    while not (idle in status and "running trials: 0\n" in status):  # none starting either
        assert time.monotonic() < deadline, f"the cluster did not become idle: {status}"
        status = run_textune("cluster", "status", "--state-dir", str(cluster.state_dir)).stdout


def _placed_trials(status: str) -> list[tuple[str, int]]:
    """(role, trials running there) per node of a `cluster status` table."""
    nodes = [line.split() for line in status.splitlines() if line.split()[1:2] in (["head"], ["worker"])]
    return [(node[1], int(node[-1])) for node in nodes]


# Trial actors as Ray Tune starts them (its runtime_env mark), under class names status cannot know: one up, one
# whose creation (here a sleeping __init__; for a real trial, a worker process importing torch) has not ended,
# and one that fits no node, so it stays pending where its owner's raylet queued it: the GCS's record names the
# driver's node for it, where status used to count it.
TRIAL_ACTORS_DRIVER = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
tune_mark = {"env_vars": {"PL_DISABLE_FORK": "1"}}

@ray.remote(num_cpus=1, runtime_env=tune_mark)
class TrialOfAnyName:
    def ready(self):
        return True

@ray.remote(num_cpus=1, runtime_env=tune_mark)
class TrialStillStarting:
    def __init__(self):
        time.sleep(600)

up, starting = TrialOfAnyName.remote(), TrialStillStarting.remote()
unplaced = TrialStillStarting.options(resources={"textune_test_nowhere": 1}).remote()
ray.get(up.ready.remote())
print("ready", flush=True)
time.sleep(600)
"""


def test_status_counts_trial_actors_of_any_class_and_those_still_starting(cluster: LocalCluster) -> None:
    _wait_until_idle(cluster)
    driver = subprocess.Popen(
        [sys.executable, "-c", TRIAL_ACTORS_DRIVER, cluster.state.gcs_address],
        cwd=REPO_ROOT,
        env={**os.environ, **cluster.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert driver.stdout is not None
        lines = []
        for line in driver.stdout:  # Ray may warn first
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines and lines[-1].strip() == "ready", "".join(lines)[-3000:]
        # Until the GCS has registered both starting actors, status may count fewer: wait for them, not a time.
        deadline, status = time.monotonic() + 60, ""
        while "running trials: 1 (+2 starting" not in status:
            assert time.monotonic() < deadline, status
            status = run_textune("cluster", "status", "--state-dir", str(cluster.state_dir)).stdout
    finally:
        driver.kill()  # its actors end with it
        driver.wait()
    assert "running trials: 1 (+2 starting: their worker process not up yet, on no node below until it is)" in status
    assert sum(trials for _, trials in _placed_trials(status)) == 1, status  # the running one; no node has the others


def test_down_stops_exactly_the_cluster_processes(cluster: LocalCluster, tmp_path: Path) -> None:
    groups = [node.pid for node in cluster.state.nodes]
    members = [int(entry.name) for entry in Path("/proc").glob("[0-9]*") if _pgrp(int(entry.name)) in groups]
    assert len(members) > len(groups)  # the nodes' raylets, GCS, dashboard, ... share their groups
    bystander = subprocess.Popen(["sleep", "60"])  # any other process of this user must survive
    try:
        result = run_textune("cluster", "down", "--state-dir", str(cluster.state_dir), timeout=60)
        assert result.returncode == 0, result.stderr
        assert all(_pgrp(pid) is None or _is_zombie(pid) for pid in members)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert read_state(cluster.state_dir) is None and not cluster.state.token_path.exists()
    assert_user_error(run_textune("cluster", "down", "--state-dir", str(cluster.state_dir)), "no local cluster is up")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _pgrp(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if fields else None


def _is_zombie(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] == "Z"
