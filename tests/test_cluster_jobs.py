"""What a submitted job ships (cluster.jobs), checked without a cluster: tests/test_cluster_local.py submits one."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from cluster.jobs import runtime_environment, shipped_package_dirs, user_module_paths


def test_a_user_s_module_ships_from_a_source_folder_and_an_installed_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    (source / "my_factories").mkdir(parents=True)
    (source / "my_factories" / "__init__.py").write_text("")
    (source / "my_single_module.py").write_text("")
    monkeypatch.syspath_prepend(str(source))
    importlib.invalidate_caches()

    names = ["my_factories", "my_single_module", "my_factories", "yaml", "json", "models", "no_such_module_here"]
    # yaml is in site-packages and json in the standard library: the nodes have their own; models is textune's
    # (shipped anyway); an unknown module is left to the cluster, where the driver's preflight names it.
    shipped = user_module_paths(names)
    assert shipped == [str(source / "my_factories"), str(source / "my_single_module.py")]

    runtime_env = runtime_environment("name: x\n", user_modules=shipped)
    assert runtime_env["py_modules"] == [*shipped_package_dirs(), *shipped]
