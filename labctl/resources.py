"""Files labctl ships beside its code: the built-in scenarios, the sample app and the image recipes.

In a checkout they are the repository's top-level folders (``scenarios/``, ``images/``), where a reader of the
README finds them. An installed wheel carries the same folders as package data under ``labctl/_data``
(``pyproject.toml`` maps them there), so ``labctl`` works from any directory after ``pipx install``.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[1]


def data_path(*parts: str) -> Path:
    """``data_path("scenarios")``: the wheel's copy when installed, else the checkout's folder."""
    installed = PACKAGE_DATA.joinpath(*parts)
    return installed if installed.exists() else CHECKOUT.joinpath(*parts)


def scenarios_dir() -> Path:
    return data_path("scenarios")


def sample_app_dir() -> Path:
    return data_path("images", "sample-app")


def stack_dockerfile_path() -> Path:
    return data_path("images", "stack", "Dockerfile")


def builtin_scenario(name: str) -> Path | None:
    """The built-in scenario called ``name`` (file stem, with or without ``.yaml``), if there is one."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if not stem or "/" in stem or stem.startswith("."):
        return None
    path = scenarios_dir() / f"{stem}.yaml"
    return path if path.is_file() else None
