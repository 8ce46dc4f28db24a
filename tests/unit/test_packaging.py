"""The wheel carries every package and the data labctl reads (pyproject's explicit package list)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from labctl import resources

REPO = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_labctl_package_is_in_the_wheel():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "labctl").rglob("__init__.py")
        if "_data" not in p.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def test_the_data_folders_map_to_package_data():
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"labctl._data.scenarios": "scenarios", "labctl._data.images": "images"}


def test_a_checkout_reads_its_own_folders():
    assert resources.scenarios_dir() == REPO / "scenarios"
    assert (resources.sample_app_dir() / "Procfile").is_file()
    assert resources.stack_dockerfile_path() == REPO / "images" / "stack" / "Dockerfile"


def test_built_in_scenarios_by_name():
    assert resources.builtin_scenario("private-space-restart-vs-stop") == REPO / "scenarios" / (
        "private-space-restart-vs-stop.yaml"
    )
    assert resources.builtin_scenario("private-space-restart-vs-stop.yaml") is not None
    for bad in ("", "nope", "../pyproject", ".hidden", "scenarios/x"):
        assert resources.builtin_scenario(bad) is None
