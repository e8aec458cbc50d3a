"""``textune jobs list|logs|stop``: the Ray jobs on a cluster, through its Jobs API."""

from __future__ import annotations

import datetime

import click

from textune.errors import TextuneError
from tune_jobs.cli.params import JOBS_URL_OPTION


@click.group("jobs")
def jobs_group() -> None:
    """List, read and stop Ray jobs (searches started by `textune submit`, and others)."""


@jobs_group.command("list")
@JOBS_URL_OPTION
def list_command(address: str) -> None:
    """Every job the cluster knows, oldest first."""
    from cluster.jobs import job_client

    jobs = sorted(job_client(address).list_jobs(), key=lambda job: job.start_time or 0)
    if not jobs:
        click.echo("no jobs")
        return
    click.echo(f"{'submission id':<40} {'status':<10} {'started (UTC)':<20} textune job")
    for job in jobs:
        started = (
            datetime.datetime.fromtimestamp(job.start_time / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if job.start_time
            else "-"
        )
        click.echo(
            f"{job.submission_id or job.job_id:<40} {job.status.value:<10} {started:<20} "
            f"{(job.metadata or {}).get('textune_job', '-')}"
        )


@jobs_group.command("logs")
@click.argument("submission_id")
@JOBS_URL_OPTION
@click.option("--follow", is_flag=True, help="Keep streaming until the job ends.")
def logs_command(submission_id: str, address: str, follow: bool) -> None:
    """The driver's log of SUBMISSION_ID."""
    from cluster.jobs import check_known_job, job_client
    from cluster.jobs import follow as follow_job

    client = job_client(address)
    check_known_job(client, submission_id)
    if follow:
        status = follow_job(client, submission_id, lambda text: click.echo(text, nl=False))
        click.echo(f"job {submission_id} {status}")
    else:
        click.echo(client.get_job_logs(submission_id), nl=False)


@jobs_group.command("stop")
@click.argument("submission_id")
@JOBS_URL_OPTION
def stop_command(submission_id: str, address: str) -> None:
    """Stop SUBMISSION_ID (its trials stop with it; finished trials' results stay in storage)."""
    from cluster.jobs import FINISHED, check_known_job, job_client, wait_until_finished

    client = job_client(address)
    info = check_known_job(client, submission_id)
    if str(info.status.value) in FINISHED:
        raise TextuneError(f"job {submission_id} already ended ({info.status.value}).", "Nothing to stop.")
    client.stop_job(submission_id)
    click.echo(f"job {submission_id} {wait_until_finished(client, submission_id)}")
