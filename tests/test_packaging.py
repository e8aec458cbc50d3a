"""Installing textune: the build is quiet and the package carries its YAML recipes and cluster definitions.

setup.cfg once let setuptools warn, at every install, that the YAML folders (``tune_jobs/configs``,
``models/configs``, ``cluster/kuberay``) were importable packages missing from ``packages``: about 150 lines
on a fresh ``make demo``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from conftest import REPO_ROOT, build_wheel

PACKAGES = ("textune", "data_pipeline", "models", "tune_jobs", "cluster")


def test_the_wheel_builds_without_setuptools_warnings_and_carries_the_yaml_files(tmp_path: Path) -> None:
    wheel, output = build_wheel(tmp_path)
    for warning in ("absent from the `packages` configuration", "BuildBackendWarning", "SetuptoolsDeprecationWarning"):
        assert warning not in output, output[-3000:]

    names = zipfile.ZipFile(wheel).namelist()
    expected = {
        str(path.relative_to(REPO_ROOT))
        for folder in ("tune_jobs/configs", "models/configs", "cluster")
        for path in (REPO_ROOT / folder).rglob("*.yaml")
    }
    assert expected and expected <= set(names)
    assert {name.split("/")[0] for name in names} == {
        *PACKAGES,
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
