"""The JSON views the API answers with (``ps --json``, ``apps:info --json``, ``instances --json``, features).

Plain functions of store rows: they read nothing else and change nothing. Each returns a view record of
``labctl.records``; the keys are the API's contract (pinned by tests/integration/test_json_shapes.py).
"""

from __future__ import annotations

import time

from labctl import const
from labctl.domain.formation import Process
from labctl.domain.placement import instance_state
from labctl.domain.preboot import FEATURE_STATES, KNOWN_FEATURES
from labctl.records import (
    AppRow,
    AppView,
    DynoExtended,
    DynoRow,
    DynoView,
    FeatureView,
    InstanceRow,
    InstanceView,
    OldDynoRow,
    OldDynoView,
    ProcessDict,
    ReleaseRow,
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def formation_of(app_row: AppRow) -> dict[str, Process]:
    """The app's formation by process type (the store keeps it as plain dicts)."""
    return {k: Process(**v) for k, v in app_row["formation"].items()}


def process_dict(proc: Process) -> ProcessDict:
    """A process type as the store and the API keep it."""
    return {"type": proc.type, "quantity": proc.quantity, "size": proc.size, "command": proc.command}


def formation_dicts(formation: dict[str, Process]) -> dict[str, ProcessDict]:
    """A formation as the store keeps it (by process type)."""
    return {k: process_dict(p) for k, p in formation.items()}


def formation_view(app_row: AppRow) -> list[ProcessDict]:
    return [process_dict(p) for p in formation_of(app_row).values()]


def dyno_view(row: DynoRow) -> DynoView:
    return {
        "name": row["name"],
        "type": row["type"],
        "state": row["state"],
        "size": row["size"],
        "command": row["command"],
        "instance": row["instance"],
        "release": {"version": row["release"]},
        "updated_at": iso(row["updated_at"]),
        "app": {"name": row["app"]},
        "port": row["port"],
        "container": row["container"],
        "attach": bool(row["attach"]),
        "cycle_at": iso(row["cycle_at"]),
        "crashes": row["crashes"],
        "next_start": iso(row["next_start"]),
    }


def dyno_extended(dyno: DynoView | OldDynoView, app_row: AppRow, ip: str | None) -> DynoExtended:
    """Where a dyno runs, as the Platform API's ``?extended=true`` adds it (heroku-reference §1.3): the runtime
    instance, the address the router connects to, and the execution plane (the Common Runtime or the space)."""
    return {
        "region": "lab",
        "execution_plane": f"space:{app_row['space']}" if app_row["space"] else "common",
        "instance": dyno["instance"],
        "ip": ip if dyno["instance"] else None,
        "port": dyno["port"],
    }


def old_dyno_view(old: OldDynoRow) -> OldDynoView:
    """An old generation preboot keeps serving (``ps --all``)."""
    return {
        "name": old["name"],
        "type": old["name"].split(".")[0],
        "state": "up",
        "size": old["size"],
        "command": old["command"],
        "instance": old["instance"],
        "release": {"version": old["release"]},
        "updated_at": iso(old["started_at"]),
        "app": {"name": old["app"]},
        "port": old["port"],
        "container": old["container"],
        "attach": False,
        "old": True,
        "routed": bool(old["routed"]),
        "retire_at": iso(old["retire_at"]),
    }


def instance_views(instances: list[InstanceRow], dynos: list[DynoRow]) -> list[InstanceView]:
    out: list[InstanceView] = []
    now = time.time()
    for inst in instances:
        hosted = [f"{r['app']}/{r['name']}" for r in dynos if r["instance"] == inst["id"] and r["container"]]
        out.append(
            {
                "id": inst["id"],
                "runtime": inst["runtime"],
                "state": instance_state(inst["state"], inst["ready_at"], now),
                "created_at": iso(inst["created_at"]),
                "ready_at": iso(inst["ready_at"]),
                "dynos": hosted,
                "faults": inst["faults"],
            }
        )
    return out


def app_view(app_row: AppRow, rel: ReleaseRow | None) -> AppView:
    return {
        "name": app_row["name"],
        "space": app_row["space"],
        "maintenance": bool(app_row["maintenance"]),
        "stack": const.STACK_NAME,
        "features": app_row["features"],
        "created_at": iso(app_row["created_at"]),
        "release": rel["version"] if rel else None,
        "web_url": None,
        "formation": formation_view(app_row),
        "region": "lab",
    }


def feature_views(app_row: AppRow) -> list[FeatureView]:
    enabled = app_row["features"]
    return [
        {"name": k, "description": v, "enabled": bool(enabled.get(k)), "state": FEATURE_STATES[k]}
        for k, v in KNOWN_FEATURES.items()
    ]
