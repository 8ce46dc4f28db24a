"""``ps:scale`` grammar and formation arithmetic (heroku-reference §1.4)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.domain.sizes import check_size_for_runtime, get_size
from labctl.errors import InvalidInput

_SCALE_RE = re.compile(r"^([\w-]+)([=+-]\d+)(?::([\w-]+))?$")
MAX_QUANTITY = 100


@dataclass(frozen=True)
class ScaleUpdate:
    """One ``TYPE=N[:SIZE]`` / ``TYPE+N`` / ``TYPE-N`` argument."""

    type: str
    op: str  # "=", "+" or "-"; "" keeps the quantity (a size-only update, as ``ps:type`` sends)
    amount: int
    size: str | None = None


@dataclass(frozen=True)
class Process:
    """One process type of the formation."""

    type: str
    quantity: int
    size: str
    command: str


def parse_scale_args(args: list[str]) -> list[ScaleUpdate]:
    """Parse Heroku's scale grammar; raise InvalidInput naming the bad argument."""
    updates = []
    for arg in args:
        m = _SCALE_RE.match(arg)
        if not m:
            raise InvalidInput(f"Invalid argument {arg!r}: expected TYPE=N, TYPE+N or TYPE-N, e.g. web=2:standard-2x")
        ptype, change, size = m.groups()
        updates.append(ScaleUpdate(ptype, change[0], int(change[1:]), size))
    return updates


def parse_quantity(value: object) -> tuple[str, int]:
    """A formation update's ``quantity``: a whole number, or a string ``"2"``, ``"+1"``, ``"-1"`` (the Heroku CLI
    sends ``ps:scale``'s relative changes so) → (op, amount). Raise InvalidInput otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidInput(f"quantity must be between 0 and {MAX_QUANTITY}, not {value}")
        return "=", value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,6}", value):
        return (value[0], int(value[1:])) if value[0] in "+-" else ("=", int(value))
    raise InvalidInput(f'quantity must be a whole number or a string like "2", "+1" or "-1", not {value!r}')


def apply_updates(current: dict[str, Process], updates: list[ScaleUpdate], space: str | None) -> dict[str, Process]:
    """Return the new formation; the current one is not modified."""
    new = dict(current)
    for u in updates:
        if u.type not in new:
            raise InvalidInput(f"Couldn't find that process type ({u.type}).")
        proc = new[u.type]
        qty = {"=": u.amount, "+": proc.quantity + u.amount, "-": proc.quantity - u.amount, "": proc.quantity}[u.op]
        if qty < 0 or qty > MAX_QUANTITY:
            raise InvalidInput(f"Cannot scale {u.type} to {qty}: quantity must be between 0 and {MAX_QUANTITY}.")
        size = proc.size
        if u.size:
            s = get_size(u.size)
            check_size_for_runtime(s, space)
            size = s.name
        _check_single_dyno_tier(u.type, qty, size)
        new[u.type] = Process(u.type, qty, size, proc.command)
    return new


def _check_single_dyno_tier(ptype: str, qty: int, size: str) -> None:
    # Eco/Basic: one dyno per process type (heroku-reference §6.1, message shape §1.4, UNCONFIRMED exact).
    if size in ("Eco", "Basic") and qty > 1:
        raise InvalidInput(f"Cannot update to more than 1 {size} size dynos per process type.")


def describe(formation: dict[str, Process]) -> str:
    """``web at 3:Standard-2X, worker at 1:Standard-1X`` (the scale command's success line)."""
    return ", ".join(f"{p.type} at {p.quantity}:{p.size}" for p in sorted(formation.values(), key=lambda p: p.type))


def desired_dyno_names(formation: dict[str, Process]) -> dict[str, Process]:
    """Every formation dyno that should exist: ``web.1 … web.N``. Scale-down drops the highest numbers."""
    names = {}
    for proc in formation.values():
        for n in range(1, proc.quantity + 1):
            names[f"{proc.type}.{n}"] = proc
    return names


def initial_formation(procfile: dict[str, str], space: str | None, old: dict[str, Process]) -> dict[str, Process]:
    """Formation after a deploy: keep quantities/sizes of known types; a new ``web`` starts at 1 (as Heroku).

    The ``release`` type is the release phase, never part of the formation.
    """
    from labctl.domain.sizes import default_size

    result = {}
    for ptype, command in procfile.items():
        if ptype == "release":
            continue
        if ptype in old:
            result[ptype] = Process(ptype, old[ptype].quantity, old[ptype].size, command)
        else:
            qty = 1 if ptype == "web" and not old else 0
            result[ptype] = Process(ptype, qty, default_size(space), command)
    return result
