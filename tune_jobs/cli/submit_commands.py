"""``textune submit JOB.yaml --address http://HEAD:8265``: run a search on a cluster as a Ray job."""

from __future__ import annotations

from pathlib import Path

import click

from textune.errors import TextuneError
from tune_jobs.cli.params import JOBS_URL_OPTION, LocalPath


@click.command("submit")
@click.argument("job_path", metavar="JOB.yaml", type=LocalPath("file", must_exist=True))
@JOBS_URL_OPTION
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key (repeatable).")
@click.option(
    "--pip",
    "pip_packages",
    multiple=True,
    metavar="PACKAGE",
    help="Install PACKAGE for the job (repeatable; needs network on the nodes). Default: none, the "
    "cluster's environment already holds textune's dependencies.",
)
@click.option("--follow", is_flag=True, help="Stream the job's logs until it ends; exit non-zero if it fails.")
def submit_command(
    job_path: Path, address: str, overrides: tuple[str, ...], pip_packages: tuple[str, ...], follow: bool
) -> None:
    """Submit the search JOB.yaml describes as a Ray job; its driver runs `textune run` on the head."""
    from cluster.jobs import follow as follow_job
    from cluster.jobs import job_client, submit_search, user_module_paths
    from models.config import BUILT_IN_FAMILIES
    from textune.config import apply_overrides, dump_yaml, load_yaml
    from tune_jobs.preflight import trial_key_values
    from tune_jobs.spec import load_spec

    spec = load_spec(job_path, list(overrides))  # a bad spec fails here, not minutes later on the cluster
    if "://" not in spec.storage and not Path(spec.storage).is_absolute():
        raise TextuneError(
            f'job spec {job_path}: storage "{spec.storage}" is a relative path; on the cluster it '
            "would land in the job's temporary working directory and be lost.",
            "Use storage every node reaches: --set storage=s3://BUCKET/PREFIX, or an absolute "
            "path on a shared file system.",
        )
    spec_yaml = dump_yaml(apply_overrides(load_yaml(job_path), list(overrides)))
    # A user's model factory travels with the job when it is imported from a source folder here (docs/models.md).
    factories = [family for family in trial_key_values(spec, "family") if family not in (None, *BUILT_IN_FAMILIES)]
    user_modules = user_module_paths(family.partition(":")[0].split(".")[0] for family in factories)
    client = job_client(address)
    submission_id = submit_search(client, spec.name, spec_yaml, pip_packages, user_modules)
    shipped = "".join(f"  ships:  {path}\n" for path in user_modules)
    click.echo(
        f"submitted {submission_id} to {address}\n{shipped}"
        f"  logs:   textune jobs logs {submission_id} --address {address} [--follow]\n"
        f"  stop:   textune jobs stop {submission_id} --address {address}\n"
        f"  results: {spec.storage.rstrip('/')}/{spec.name}"
    )
    if follow:
        status = follow_job(client, submission_id, lambda text: click.echo(text, nl=False))
        if status != "SUCCEEDED":
            raise TextuneError(
                f"job {submission_id} ended {status}.",
                f"See the logs above, or `textune jobs logs {submission_id} --address {address}`.",
            )
        click.echo(f"job {submission_id} SUCCEEDED")
