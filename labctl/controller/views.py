"""The JSON views the API answers with (``ps --json``, ``apps:info --json``, ``instances --json``, features).

Plain functions of store rows: they read nothing else and change nothing. Each returns a view record of
``labctl.records``; the keys are the API's contract (pinned by tests/integration/test_json_shapes.py).

The objects carry the Platform API's fields (heroku-reference §11; the fields of each resource in Heroku's
published schema): a UUID ``id``, ``created_at``/``updated_at`` in ISO 8601 UTC, references nested as ``{id, name}``
(``app``, ``space``, ``stack``, ``region``) and dynos' ``release: {id, version}``. Objects the store keeps no
row for get a stable derived id (``derived_id``): a formation entry, a feature, a size, the lab's stack.
A few lab-only keys stay beside them (an app's ``formation`` and ``features``, a dyno's ``instance``...).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

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
    Ref,
    ReleaseRow,
    SpaceRow,
)

_LAB_NS = uuid.UUID("6f1c2a7e-0d5b-4c1e-9d8a-3b2f4e5a6c70")
REGION_NAME = "lab"
USER_EMAIL = "lab@localhost"  # the one account of a lab (``GET /account``)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def derived_id(*parts: str) -> str:
    """A stable UUID for an object the store keeps no id for (the same parts give the same id)."""
    return str(uuid.uuid5(_LAB_NS, "/".join(parts)))


def named(kind: str, name: str) -> Ref:
    """A reference to a lab-wide named thing (a stack, region, size, generation): ``{id, name}``."""
    return {"id": derived_id(kind, name), "name": name}


def app_ref(app_row: AppRow) -> Ref:
    return {"id": app_row["id"], "name": app_row["name"]}


def user_ref(account_id: str) -> dict[str, str]:
    return {"id": account_id, "email": USER_EMAIL}


def account_view(account_id: str, created_at: float) -> dict[str, Any]:
    """``GET /account``: the lab's one user (every token-holder is it)."""
    return {
        "id": account_id,
        "email": USER_EMAIL,
        "name": "Lab User",
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
        "last_login": iso(created_at),
        "verified": True,
        "beta": False,
        "allow_tracking": False,
        "two_factor_authentication": False,
        "federated": False,
        "default_organization": None,
        "default_team": None,
        "delinquent_at": None,
        "suspended_at": None,
        "identity_provider": None,
        "sms_number": None,
        "country_of_residence": None,
    }


def space_view(space_row: SpaceRow) -> dict[str, Any]:
    return {
        "id": space_row["id"],
        "name": space_row["name"],
        "created_at": iso(space_row["created_at"]),
        "updated_at": iso(space_row["updated_at"] or space_row["created_at"]),
        "state": "allocated",
        "shield": False,
        "region": named("region", REGION_NAME),
        "generation": named("generation", "cedar"),
        "cidr": None,
        "data_cidr": None,
        "organization": None,
        "team": None,
    }


def release_view(rel: ReleaseRow, app_row: AppRow, current: int | None, account_id: str) -> dict[str, Any]:
    """A release: the Platform API's fields, plus the lab's ``image``, ``procfile`` and ``config``."""
    return {
        "id": rel["id"],
        "version": rel["version"],
        "app": app_ref(app_row),
        "created_at": iso(rel["created_at"]),
        "updated_at": iso(rel["updated_at"] or rel["created_at"]),
        "description": rel["description"],
        "status": rel["status"],
        "current": rel["version"] == current,
        "eligible_for_rollback": rel["status"] == "succeeded" and rel["image"] is not None,
        "slug": {"id": derived_id("slug", rel["image"])} if rel["image"] else None,
        "user": user_ref(account_id),
        "addon_plan_names": [],
        "artifacts": [],
        "output_stream_url": None,
        "image": rel["image"],
        "procfile": rel["procfile"],
        "config": rel["config"],
    }


def formation_of(app_row: AppRow) -> dict[str, Process]:
    """The app's formation by process type (the store keeps it as plain dicts)."""
    return {k: Process(**v) for k, v in app_row["formation"].items()}


def formation_entry(proc: Process, app_row: AppRow) -> dict[str, Any]:
    """One process type as the Platform API's formation object (its id derives from the app's and the type)."""
    return {
        "id": derived_id("formation", app_row["id"], proc.type),
        "app": app_ref(app_row),
        "type": proc.type,
        "quantity": proc.quantity,
        "size": proc.size,
        "dyno_size": named("size", proc.size),
        "command": proc.command,
        "created_at": iso(app_row["created_at"]),
        "updated_at": iso(app_row["updated_at"] or app_row["created_at"]),
    }


def process_dict(proc: Process) -> ProcessDict:
    """A process type as the store and the API keep it."""
    return {"type": proc.type, "quantity": proc.quantity, "size": proc.size, "command": proc.command}


def formation_dicts(formation: dict[str, Process]) -> dict[str, ProcessDict]:
    """A formation as the store keeps it (by process type)."""
    return {k: process_dict(p) for k, p in formation.items()}


def formation_view(app_row: AppRow) -> list[dict[str, Any]]:
    return [formation_entry(p, app_row) for p in formation_of(app_row).values()]


def dyno_view(row: DynoRow, app_row: AppRow, release_ids: dict[int, str]) -> DynoView:
    """A dyno; ``release_ids`` maps the app's release versions to their ids."""
    return {
        "id": row.get("id") or derived_id("dyno", app_row["id"], row["name"]),
        "created_at": iso(row.get("created_at") or row["updated_at"]),
        "attach_url": None,
        "name": row["name"],
        "type": row["type"],
        "state": row["state"],
        "size": row["size"],
        "command": row["command"],
        "instance": row["instance"],
        "release": {"id": release_ids.get(row["release"]), "version": row["release"]},
        "updated_at": iso(row["updated_at"]),
        "app": app_ref(app_row),
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


def old_dyno_view(old: OldDynoRow, app_row: AppRow, release_ids: dict[int, str]) -> OldDynoView:
    """An old generation preboot keeps serving (``ps --all``)."""
    return {
        "id": derived_id("old-dyno", old["container"]),
        "created_at": iso(old["started_at"]),
        "attach_url": None,
        "name": old["name"],
        "type": old["name"].split(".")[0],
        "state": "up",
        "size": old["size"],
        "command": old["command"],
        "instance": old["instance"],
        "release": {"id": release_ids.get(old["release"]), "version": old["release"]},
        "updated_at": iso(old["started_at"]),
        "app": app_ref(app_row),
        "port": old["port"],
        "container": old["container"],
        "attach": False,
        "old": True,
        "routed": bool(old["routed"]),
        "retire_at": iso(old["retire_at"]),
    }


def instance_views(
    instances: list[InstanceRow],
    dynos: list[DynoRow],
    budgets: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None,
    usage: dict[str, dict[str, Any]] | None = None,
    enforced: bool = False,
) -> list[InstanceView]:
    """``budgets``: per instance, its budget and what its dynos share now (faults applied); ``usage``: its live
    CPU and memory use (``Instances.live``); ``enforced``: the budgets are parent cgroups on this host."""
    out: list[InstanceView] = []
    now = time.time()
    budgets, usage = budgets or {}, usage or {}
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
                "dedicated_to": inst.get("size"),
                "budget": {**budgets[inst["id"]][0], "enforced": enforced} if inst["id"] in budgets else None,
                "limit": budgets[inst["id"]][1] if inst["id"] in budgets else None,
                "usage": usage.get(inst["id"]),
            }
        )
    return out


def app_view(app_row: AppRow, rel: ReleaseRow | None, space_row: SpaceRow | None, account_id: str) -> AppView:
    """An app: the Platform API's fields, plus the lab's ``release`` (version), ``formation`` and ``features``."""
    stack = named("stack", const.STACK_NAME)
    return {
        "id": app_row["id"],
        "name": app_row["name"],
        "created_at": iso(app_row["created_at"]),
        "updated_at": iso(app_row["updated_at"] or app_row["created_at"]),
        "released_at": iso(rel["created_at"]) if rel else None,
        "space": {"id": space_row["id"], "name": space_row["name"], "shared": False} if space_row else None,
        "maintenance": bool(app_row["maintenance"]),
        "stack": stack,
        "build_stack": stack,
        "region": named("region", REGION_NAME),
        "generation": named("generation", "cedar"),
        "owner": user_ref(account_id),
        "organization": None,
        "team": None,
        "acm": False,
        "internal_routing": False if space_row else None,
        "archived_at": None,
        "buildpack_provided_description": None,
        "git_url": None,
        "web_url": None,
        "repo_size": None,
        "slug_size": None,
        "features": app_row["features"],
        "release": rel["version"] if rel else None,
        "formation": formation_view(app_row),
    }


def feature_views(app_row: AppRow) -> list[FeatureView]:
    enabled = app_row["features"]
    return [
        {
            "id": derived_id("feature", k),
            "name": k,
            "display_name": k,
            "description": v,
            "enabled": bool(enabled.get(k)),
            "state": FEATURE_STATES[k],
            "doc_url": f"https://devcenter.heroku.com/articles/{k}",
            "feedback_email": None,
            "created_at": iso(app_row["created_at"]),
            "updated_at": iso(app_row["updated_at"] or app_row["created_at"]),
        }
        for k, v in KNOWN_FEATURES.items()
    ]
