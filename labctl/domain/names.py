"""Names: apps, spaces, dynos (heroku-reference §1.3, §1.6)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labctl.errors import InvalidInput

if TYPE_CHECKING:
    import random

_APP_RE = re.compile(r"^[a-z][a-z0-9-]{2,29}$")
_DYNO_RE = re.compile(r"^([a-z][a-z0-9_-]*)\.(\d+)$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _validate(kind: str, name: str) -> str:
    if not _APP_RE.match(name or ""):
        raise InvalidInput(
            f"{kind} {name!r} is invalid: it must start with a letter, be 3 to 30 characters long "
            "and contain only lowercase letters, digits and dashes."
        )
    return name


def validate_app_name(name: str) -> str:
    """Heroku's rule: lowercase letters, digits and dashes, 3-30 chars, starting with a letter."""
    return _validate("Name", name)


def validate_space_name(name: str) -> str:
    """Spaces follow the app-name rule."""
    return _validate("Space name", name)


def is_dyno_name(target: str) -> bool:
    """``web.1`` names a dyno; ``web`` names a process type (the old CLI's dot rule, §1.1)."""
    return "." in target


def split_dyno_name(name: str) -> tuple[str, int]:
    """``web.2`` -> (``web``, 2); raises InvalidInput for anything else."""
    m = _DYNO_RE.match(name)
    if not m:
        raise InvalidInput(f"Invalid dyno name {name!r}: expected TYPE.N, e.g. web.1")
    return m.group(1), int(m.group(2))


def validate_process_type(ptype: str) -> str:
    if not _TYPE_RE.match(ptype or ""):
        raise InvalidInput(f"Invalid process type {ptype!r}")
    return ptype


def one_off_name(prefix: str, taken: set[str], rng: random.Random | None = None) -> str:
    """A one-off dyno name like ``run.4821`` (§1.6: a random-ish number), unique among ``taken``."""
    import random  # here: the CLI checks dyno names on every start and never draws one

    rng = rng or random.Random()
    for _ in range(1000):
        name = f"{prefix}.{rng.randint(1000, 9999)}"
        if name not in taken:
            return name
    raise InvalidInput("too many one-off dynos")
