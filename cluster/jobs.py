"""Ray jobs through the Jobs API (the head's dashboard port, 8265 by default): submit, follow, list, stop.

A submitted search ships textune's five packages, as this Python imports them (from a source checkout, an
editable or a regular install alike), as the job's ``py_modules``, and the job spec itself in an environment
variable, so a spec kept anywhere on the submitting machine runs on the cluster with the submitter's code.
A user's model factory (``family: "package.module:function"``) imported from a source folder travels the same
way (:func:`user_module_paths`); one installed in site-packages must be installed on the nodes too.
``pip`` is empty unless asked for: a cluster built from ``cluster/aws.yaml``, ``gcp.yaml`` or the KubeRay
manifests has textune's dependencies installed already, and installing at job start needs the network on
every node.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sysconfig
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cluster import auth
from cluster.job_entrypoint import JOB_SPEC_VAR
from cluster.local_state import recorded_cluster_at
from textune.errors import TextuneError

# What a job needs of textune: every package setup.cfg installs (the YAML recipes and cluster definitions
# live inside them). Ray puts them ahead of the nodes' own packages on the job's Python path.
SHIPPED_PACKAGES = ("textune", "data_pipeline", "models", "tune_jobs", "cluster")
# Never shipped: bytecode is machine-specific and rebuilt on the nodes. Ray also honours a package's .gitignore.
SHIPPED_EXCLUDES = ["**/__pycache__", "*.pyc"]
# The driver starts in a new empty folder: `python -m` puts the current folder first on sys.path, ahead of the
# shipped py_modules, and the folder Ray would start it in (wherever `ray start` ran, maybe a checkout of an
# older textune) would shadow them. The spec is written there too (cluster.job_entrypoint). `exec`: the driver
# replaces the shell, so the job is one process from start to end. Ray stops a job by signalling the process and
# the children it finds at that moment; a python the shell forked just after that look was left running,
# an orphan driver still training on the cluster after `textune jobs stop` said STOPPED.
ENTRYPOINT = 'cd "$(mktemp -d)" && exec python -m cluster.job_entrypoint'
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


def job_client(address: str) -> Any:
    """A JobSubmissionClient for the dashboard ``address``, or a TextuneError naming what is wrong.

    The Jobs API of the cluster ``textune cluster up`` recorded takes that cluster's token unless the user set one.
    """
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    _check_jobs_url(address)
    recorded = recorded_cluster_at(address)
    if recorded is not None:
        auth.default_to_token_file(recorded.token_path)
    auth.enable_token_mode()
    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        source = auth.token_source()
        problem = f"rejected the auth token from {source}" if source else "requires an auth token and none is set"
        raise TextuneError(f"the Jobs API at {address} {problem}.", auth.SET_TOKEN_HINT) from exc
    except ConnectionError as exc:
        raise TextuneError(
            f"cannot reach the Jobs API at {address}.",
            "Check the head's dashboard address and port (8265 by default) and that the tunnel or proxy to it is up.",
        ) from exc


def _check_jobs_url(address: str) -> None:
    """An http(s) URL with a host and a usable port, checked here because the Jobs API client reports a URL it
    cannot parse with a traceback."""
    try:
        parsed = urllib.parse.urlsplit(address)
        port = parsed.port
    except ValueError as exc:  # a port out of range or not a number, an unclosed IPv6 bracket
        problem = str(exc)
    else:
        if parsed.scheme not in ("http", "https"):
            problem = "it does not start with http:// or https://"
        elif not parsed.hostname:
            problem = "it names no host"
        elif port == 0:
            problem = "port 0 is no server's port"
        else:
            return
    raise TextuneError(
        f'--address "{address}" is not a Jobs API URL ({problem}).',
        "Give the head's dashboard URL, http://HOST:PORT with a port from 1 to 65535, e.g. "
        "http://127.0.0.1:8265 (through an SSH tunnel or a TLS proxy for a remote cluster).",
    )


def shipped_package_dirs() -> list[str]:
    """The directory of each of :data:`SHIPPED_PACKAGES` as this Python imports it (without importing it).

    A package may live anywhere: a source checkout, an editable install pointing at one, or site-packages.
    """
    directories = []
    for name in SHIPPED_PACKAGES:
        found = importlib.util.find_spec(name)
        locations = list(found.submodule_search_locations or []) if found is not None else []
        if len(locations) != 1:  # only a broken install gets here: textune imports these packages itself
            raise TextuneError(
                f"cannot ship textune's package {name!r} to the cluster: this Python finds it "
                f"in {len(locations)} places ({', '.join(locations) or 'none'}).",
                "Reinstall textune (pip install textune, or pip install -e . in a checkout).",
            )
        directories.append(locations[0])
    return directories


def user_module_paths(names: Iterable[str]) -> list[str]:
    """The folder (a package) or ``.py`` file (a module) of each top-level module in ``names`` as this Python
    finds it (without importing it), when that is a user's source folder, to ship with the job as py_modules.

    Left out, so the nodes' own copy is used: a module this Python does not find, one installed in
    site-packages or the standard library (the nodes install it too), one of textune's packages (shipped anyway)
    and a compiled one (Ray ships folders, ``.py`` files and wheels only). A namespace package gives each of its
    folders.
    """
    paths = sysconfig.get_paths()
    installed = [Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    found_paths: list[str] = []
    for name in dict.fromkeys(names):
        if name in SHIPPED_PACKAGES:
            continue
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a broken package on the path: the cluster's preflight will say why
            found = None
        if found is None:
            continue
        if found.submodule_search_locations is not None:
            locations = list(found.submodule_search_locations)
        else:
            locations = [found.origin] if found.origin and found.origin.endswith(".py") else []
        for location in map(os.path.abspath, locations):
            resolved = Path(location).resolve()
            if not any(resolved.is_relative_to(root) for root in installed) and location not in found_paths:
                found_paths.append(location)
    return found_paths


def runtime_environment(spec_yaml: str, pip: Sequence[str] = (), user_modules: Sequence[str] = ()) -> dict[str, Any]:
    """The job's runtime_env: textune's packages and ``user_modules`` (paths, :func:`user_module_paths`) as
    py_modules, the spec as a variable, optional pip packages."""
    runtime_env: dict[str, Any] = {
        "py_modules": [*shipped_package_dirs(), *user_modules],
        "excludes": SHIPPED_EXCLUDES,
        "env_vars": {JOB_SPEC_VAR: spec_yaml},
    }
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


def submit_search(
    client: Any, job_name: str, spec_yaml: str, pip: Sequence[str] = (), user_modules: Sequence[str] = ()
) -> str:
    """Submit ``textune run`` of the spec, shipping ``user_modules`` (paths) beside textune's packages; returns
    the submission id (``textune-<name>-<8 hex digits>``)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", job_name)[:40]
    return client.submit_job(
        entrypoint=ENTRYPOINT,
        runtime_env=runtime_environment(spec_yaml, pip, user_modules),
        submission_id=f"textune-{slug}-{uuid.uuid4().hex[:8]}",
        metadata={"textune_job": job_name},
    )


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
        raise TextuneError(
            f'no job "{submission_id}" on this cluster.',
            f"Recent jobs: {', '.join(known) or 'none'}; `textune jobs list` shows all.",
        ) from exc
