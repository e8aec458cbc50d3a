"""``textune cluster up|status|down``: a real multi-node Ray cluster on this machine."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from textune.config import validate
from textune.errors import TextuneError
from tune_jobs.cli.params import LocalPath, gcs_address_option

STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=LocalPath("dir"),
    default=None,
    help="Where the cluster's record and token live (default: $TEXTUNE_CACHE_DIR/cluster).",
)


@click.group("cluster")
def cluster_group() -> None:
    """Start, inspect and stop a local multi-node Ray cluster (token auth, dashboard on 127.0.0.1)."""


@cluster_group.command("up")
@click.option("--workers", type=int, default=2, show_default=True, help="Worker nodes besides the head.")
@click.option("--cpus-per-worker", type=int, default=1, show_default=True)
@click.option(
    "--gpus-per-worker",
    type=int,
    default=0,
    show_default=True,
    help="Logical GPUs each worker declares (for scheduling; no device needed).",
)
@click.option("--head-cpus", type=int, default=1, show_default=True, help="CPUs of the head (a CPU-only node).")
@click.option("--object-store-mb", type=int, default=256, show_default=True, help="Object store per node.")
@STATE_DIR_OPTION
def up_command(
    workers: int,
    cpus_per_worker: int,
    gpus_per_worker: int,
    head_cpus: int,
    object_store_mb: int,
    state_dir: Path | None,
) -> None:
    """Start a head and WORKERS worker nodes, each a `ray start --block` process, and wait until all joined."""
    from cluster.local_cluster import LocalClusterSpec, up

    spec = validate(
        LocalClusterSpec,
        {
            "workers": workers,
            "cpus_per_worker": cpus_per_worker,
            "gpus_per_worker": gpus_per_worker,
            "head_cpus": head_cpus,
            "object_store_mb": object_store_mb,
        },
        "cluster up",
        flags={key: "--" + key.replace("_", "-") for key in LocalClusterSpec.model_fields},
    )
    state = up(spec, state_dir)
    down_flags = f" --state-dir {state_dir}" if state_dir is not None else ""
    click.echo(
        f"cluster up: head + {workers} worker(s) ({cpus_per_worker} CPU, {gpus_per_worker} GPU each)\n"
        f"  GCS address:   {state.gcs_address}\n"
        f"  Jobs API:      {state.dashboard_url}  (dashboard, bound to 127.0.0.1)\n"
        f"  auth token:    {state.token_path}  (mode 0600)\n"
        f"Use it:\n"
        f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={state.token_path}\n"
        f"  textune run JOB.yaml --address {state.gcs_address}     # or --address auto\n"
        f"  textune submit JOB.yaml --address {state.dashboard_url}\n"
        f"  textune cluster status{down_flags}\n"
        f"  textune cluster down{down_flags}"
    )


@cluster_group.command("status")
@gcs_address_option("Without it, the cluster `textune cluster up` started.")
@click.option(
    "--gpus-per-trial",
    type=float,
    default=None,
    help="With --cpus-per-trial: also print how many such trials run at once.",
)
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True)
@STATE_DIR_OPTION
def status_command(
    address: str | None, gpus_per_trial: float | None, cpus_per_trial: float, state_dir: Path | None
) -> None:
    """Show the cluster's nodes, resources and running trials."""
    from cluster.cluster_status import format_summary, summarize_cluster
    from cluster.connection import check_connectable, connect, resolve_address
    from cluster.local_state import read_state
    from cluster.resources import cluster_trial_slots

    if address is None:
        state = read_state(state_dir)
        if state is None:
            raise TextuneError(
                "no local cluster is up and no --address was given.",
                "Start one with `textune cluster up`, or pass --address HOST:PORT.",
            )
        address = state.gcs_address
        click.echo(
            f"local cluster {state.gcs_address}, Jobs API {state.dashboard_url}, "
            f"token {state.token_path}, node pids {', '.join(str(n.pid) for n in state.nodes)}"
        )
    resolved = resolve_address(address, state_dir)  # the recorded cluster's address brings its token
    check_connectable(resolved)
    with connect(resolved, logging_level=logging.WARNING, log_to_driver=False):
        click.echo(format_summary(summarize_cluster()))
        if gpus_per_trial is not None:
            slots = cluster_trial_slots(gpus_per_trial, cpus_per_trial)
            click.echo(f"trial slots ({gpus_per_trial:g} GPU + {cpus_per_trial:g} CPU per trial): {slots}")


@cluster_group.command("down")
@STATE_DIR_OPTION
def down_command(state_dir: Path | None) -> None:
    """Stop exactly the node processes `cluster up` started (never other Ray processes)."""
    from cluster.local_cluster import down

    state = down(state_dir)
    click.echo(
        f"cluster down: stopped {len(state.nodes)} node(s) "
        f"(process groups {', '.join(str(node.pid) for node in state.nodes)})"
    )
