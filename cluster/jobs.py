"""Ray jobs through the Jobs API (the head's dashboard port, 8265 by default): submit, follow, list, stop.

A submitted search ships the project's packages as the job's ``working_dir`` (the repository root, minus
the virtualenv, git data, caches and results) and the job spec itself in an environment variable, so a
spec kept anywhere on the submitting machine runs on the cluster. ``pip`` is empty unless asked for: a
cluster built from ``cluster/aws.yaml``, ``gcp.yaml`` or the KubeRay manifests has textune's dependencies
installed already, and installing at job start needs the network on every node.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from cluster import auth
from cluster.job_entrypoint import JOB_SPEC_VAR
from textune.errors import TextuneError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Never shipped: big, machine-specific or the output of earlier runs. Ray also honours .gitignore.
WORKING_DIR_EXCLUDES = [".venv", ".git", "**/__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", ".textune",
                        "ray_results", "experiments", "benchmarks/results", "build", "dist"]
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


def job_client(address: str) -> Any:
    """A JobSubmissionClient for the dashboard ``address``, or a TextuneError naming what is wrong."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    if not address.startswith(("http://", "https://")):
        raise TextuneError(f'--address "{address}" is not a Jobs API URL.',
                           "Give the head's dashboard URL, e.g. http://127.0.0.1:8265 (through an SSH tunnel "
                           "or a TLS proxy for a remote cluster).")
    auth.enable_token_mode()
    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        source = auth.token_source()
        problem = f"rejected the auth token from {source}" if source else "requires an auth token and none is set"
        raise TextuneError(f"the Jobs API at {address} {problem}.", auth.SET_TOKEN_HINT) from exc
    except ConnectionError as exc:
        raise TextuneError(f"cannot reach the Jobs API at {address}.",
                           "Check the head's dashboard address and port (8265 by default) and that the "
                           "tunnel or proxy to it is up.") from exc


def runtime_environment(spec_yaml: str, pip: Sequence[str] = ()) -> dict[str, Any]:
    """The job's runtime_env: the project as working_dir, the spec as a variable, optional pip packages."""
    runtime_env: dict[str, Any] = {"working_dir": str(PROJECT_ROOT), "excludes": WORKING_DIR_EXCLUDES,
                                   "env_vars": {JOB_SPEC_VAR: spec_yaml}}
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


def submit_search(client: Any, job_name: str, spec_yaml: str, pip: Sequence[str] = ()) -> str:
    """Submit ``textune run`` of the spec; returns the submission id (``textune-<name>-<8 hex digits>``)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", job_name)[:40]
    return client.submit_job(entrypoint="python -m cluster.job_entrypoint",
                             runtime_env=runtime_environment(spec_yaml, pip),
                             submission_id=f"textune-{slug}-{uuid.uuid4().hex[:8]}",
                             metadata={"textune_job": job_name})


def follow(client: Any, submission_id: str, write: Callable[[str], None]) -> str:
    """Stream the job's logs through ``write`` until it ends; its final status."""

    async def stream() -> None:
        async for chunk in client.tail_job_logs(submission_id):
            write(chunk)

    asyncio.run(stream())
    return wait_until_finished(client, submission_id)


def wait_until_finished(client: Any, submission_id: str, poll_s: float = 1.0) -> str:
    while (status := str(client.get_job_status(submission_id).value)) not in FINISHED:
        time.sleep(poll_s)
    return status


def check_known_job(client: Any, submission_id: str) -> Any:
    """The job's details, or a TextuneError listing what exists."""
    try:
        return client.get_job_info(submission_id)
    except RuntimeError as exc:
        if "does not exist" not in str(exc) and "404" not in str(exc):
            raise
        known = [job.submission_id for job in client.list_jobs() if job.submission_id][-5:]
        raise TextuneError(f'no job "{submission_id}" on this cluster.',
                           f"Recent jobs: {', '.join(known) or 'none'}; `textune jobs list` shows all.") from exc
