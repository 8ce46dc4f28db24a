"""The JSON views the API answers with (``ps --json``, ``apps:info --json``, ``instances --json``, features).

Plain functions of store rows: they read nothing else and change nothing.
"""

from __future__ import annotations

import time
from typing import Any

from labctl.domain.formation import Process
from labctl.domain.preboot import KNOWN_FEATURES

STACK = "lab-24"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def formation_of(app: dict[str, Any]) -> dict[str, Process]:
    """The app's formation by process type (the store keeps it as plain dicts)."""
    return {k: Process(**v) for k, v in app["formation"].items()}


def formation_view(app: dict[str, Any]) -> list[dict[str, Any]]:
    return [vars(p) for p in formation_of(app).values()]


def dyno_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "type": row["type"], "state": row["state"], "size": row["size"],
            "command": row["command"], "instance": row["instance"], "release": {"version": row["release"]},
            "updated_at": iso(row["updated_at"]), "app": {"name": row["app"]}, "port": row["port"],
            "container": row["container"], "attach": bool(row["attach"]), "cycle_at": iso(row["cycle_at"]),
            "crashes": row["crashes"], "next_start": iso(row["next_start"])}


def old_dyno_view(old: dict[str, Any], app: str) -> dict[str, Any]:
    """An old generation preboot keeps serving (``ps --all``)."""
    return {"name": old["name"], "type": old["name"].split(".")[0], "state": "up", "size": old["size"],
            "command": old["command"], "instance": old["instance"],
            "release": {"version": old["release"]}, "updated_at": iso(old["started_at"]),
            "app": {"name": app}, "port": old["port"], "container": old["container"],
            "attach": False, "old": True, "routed": bool(old["routed"]),
            "retire_at": iso(old["retire_at"])}


def instance_views(instances: list[dict[str, Any]], dynos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for inst in instances:
        hosted = [f"{r['app']}/{r['name']}" for r in dynos if r["instance"] == inst["id"] and r["container"]]
        out.append({"id": inst["id"], "runtime": inst["runtime"], "state": inst["state"],
                    "created_at": iso(inst["created_at"]), "dynos": hosted, "faults": inst["faults"]})
    return out


def app_view(app: dict[str, Any], release: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": app["name"], "space": app["space"], "maintenance": bool(app["maintenance"]),
            "stack": STACK, "features": app["features"], "created_at": iso(app["created_at"]),
            "release": release["version"] if release else None, "web_url": None,
            "formation": formation_view(app), "region": "lab"}


def feature_views(app: dict[str, Any]) -> list[dict[str, Any]]:
    enabled = app["features"]
    return [{"name": k, "description": v, "enabled": bool(enabled.get(k)), "state": "general"}
            for k, v in KNOWN_FEATURES.items()]
