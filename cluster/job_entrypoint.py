"""The driver of a submitted search, on the head node: write the shipped spec to a file, then `textune run` it.

``textune submit`` carries the spec in an environment variable, so a spec kept outside the project still
reaches the cluster. The driver starts in a new temporary folder of its own (``cluster.jobs.ENTRYPOINT``),
and the spec is written there. Extra arguments go to ``textune run`` unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

JOB_SPEC_VAR = "TEXTUNE_SUBMITTED_JOB_SPEC"


def main(argv: list[str]) -> None:
    spec_yaml = os.environ.get(JOB_SPEC_VAR)
    if spec_yaml is None:
        sys.exit(f"error: {JOB_SPEC_VAR} is not set; this entry point is meant for jobs `textune submit` starts.")
    descriptor, spec_file = tempfile.mkstemp(prefix="submitted-job-", suffix=".yaml", dir=".")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(spec_yaml)
    command = [sys.executable, "-m", "tune_jobs.cli.main", "run", spec_file, *argv]
    # Which copy of textune runs the job (the submitter's packages, as Ray unpacked them on this node), for
    # whoever reads the job's log wondering whether the cluster ran their code.
    shipped = importlib.util.find_spec("tune_jobs")
    print(f"# tune_jobs from {shipped.origin if shipped is not None else 'nowhere'}", flush=True)
    print("+", " ".join(command), flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
