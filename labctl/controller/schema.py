"""``GET /schema``: a JSON Hyper-Schema (draft 04, the form of Heroku's published Platform API schema) of what
the lab serves, built from the API's own route table so that it cannot drift from the code.

Each definition lists the properties the lab's object carries (a subset of Heroku's, plus the lab's own keys)
and its links: ``href`` (path parameters as ``{(#/definitions/<resource>/definitions/identity)}``), ``method``,
``rel``, ``title``, the request ``schema`` where a body is taken, ``targetSchema`` and the lab's ``status`` for a
success. ``tests/integration/test_api_schema.py`` walks it against a running lab.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Route:
    """One API route: what it matches, what it calls, and how the schema describes it."""

    method: str
    pattern: str
    rx: re.Pattern[str]
    fn: Callable[..., Any]
    status: int = 200  # what a success answers: 201 for a create, 202 for a restart or stop
    resource: str = ""  # the schema definition it belongs to ("app", "dyno"...; "" for unlisted routes)
    title: str = ""
    ranges: tuple[str, ...] = ()  # a list paged by Range over these fields (the first is the default)
    public: bool = False  # answered without a token (a build's output stream: its UUID is the secret)


@dataclass
class TextStream:
    """A handler's answer streamed as ``text/plain`` until ``chunks`` ends (a build's ``output_stream_url``)."""

    chunks: Iterator[str]


S, INT, B, OBJ, A = "string", "integer", "boolean", "object", "array"
N = "null"
DATE = {"type": [S], "format": "date-time"}
DATE_N = {"type": [S, N], "format": "date-time"}
UUID = {"type": [S], "format": "uuid"}
REF = {"type": [OBJ], "properties": {"id": UUID, "name": {"type": [S]}}, "required": ["id", "name"]}
REF_N = {**REF, "type": [OBJ, N]}


def _t(*types: str) -> dict[str, Any]:
    return {"type": list(types)}


# The properties each object has (every one is present in an answer: all are "required").
OBJECTS: dict[str, dict[str, Any]] = {
    "account": {"id": UUID, "email": _t(S), "created_at": DATE, "updated_at": DATE, "verified": _t(B)},
    "rate-limit": {"remaining": _t(INT)},
    "space": {
        "id": UUID,
        "name": _t(S),
        "state": _t(S),
        "shield": _t(B),
        "region": REF,
        "created_at": DATE,
        "updated_at": DATE,
    },
    "app": {
        "id": UUID,
        "name": _t(S),
        "created_at": DATE,
        "updated_at": DATE,
        "released_at": DATE_N,
        "maintenance": _t(B),
        "space": REF_N,
        "stack": REF,
        "build_stack": REF,
        "region": REF,
        "owner": _t(OBJ),
        "web_url": _t(S, N),
        "git_url": _t(S, N),
        "acm": _t(B),
        "features": _t(OBJ),
        "release": _t(INT, N),
        "formation": _t(A),
    },
    "release": {
        "id": UUID,
        "version": _t(INT),
        "app": REF,
        "created_at": DATE,
        "updated_at": DATE,
        "description": _t(S),
        "status": _t(S),
        "current": _t(B),
        "eligible_for_rollback": _t(B),
        "slug": _t(OBJ, N),
        "user": _t(OBJ),
        "addon_plan_names": _t(A),
        "output_stream_url": _t(S, N),
    },
    "config-var": {},  # a map of names to strings (``additionalProperties``)
    "formation": {
        "id": UUID,
        "app": REF,
        "type": _t(S),
        "quantity": _t(INT),
        "size": _t(S),
        "dyno_size": REF,
        "command": _t(S),
        "created_at": DATE,
        "updated_at": DATE,
    },
    "app-feature": {
        "id": UUID,
        "name": _t(S),
        "display_name": _t(S),
        "description": _t(S),
        "enabled": _t(B),
        "state": _t(S),
        "doc_url": _t(S),
        "created_at": DATE,
        "updated_at": DATE,
    },
    "dyno": {
        "id": UUID,
        "name": _t(S),
        "type": _t(S),
        "state": _t(S),
        "size": _t(S),
        "command": _t(S),
        "app": REF,
        "release": _t(OBJ),
        "attach_url": _t(S, N),
        "created_at": DATE_N,
        "updated_at": DATE_N,
    },
    "build": {
        "id": UUID,
        "app": _t(OBJ),
        "status": _t(S),
        "output_stream_url": _t(S),
        "source_blob": _t(OBJ),
        "release": _t(OBJ, N),
        "created_at": DATE,
        "updated_at": DATE,
    },
    "lab": {"lab": _t(S), "router": _t(OBJ), "api": _t(OBJ), "timescale": _t("number")},
    "log-line": {"id": _t(INT), "ts": _t("number"), "source": _t(S), "dyno": _t(S), "msg": _t(S)},
    "instance": {"id": _t(S), "runtime": _t(S), "state": _t(S), "dynos": _t(A), "faults": _t(A)},
    # the lab's own: faults at either end of the router-instance path (docs/api.md "Faults"), plus the kind's
    # own parameters (cpus, percent, ms…), which differ by kind and are left out here
    "fault": {
        "id": _t(S),
        "kind": _t(S),
        "end": _t(S),
        "instance": _t(S, N),
        "runtime": _t(S),
        "description": _t(S),
        "dynos": _t(A),
    },
    "fault-support": {},  # a map of fault kinds to {supported, reason, mechanism} (``additionalProperties``)
    "log-drain": {
        "id": _t(S),
        "addon": _t(OBJ, N),
        "app": _t(OBJ),
        "token": _t(S),
        "url": _t(S),
        "created_at": DATE,
        "updated_at": DATE,
    },
    "log-session": {"id": _t(S), "logplex_url": _t(S), "created_at": DATE, "updated_at": DATE},
    "traffic-generator": {
        "app": _t(S),
        "rps": _t("number"),
        "duration": _t("number"),
        "started_at": DATE,
        "elapsed": _t(INT),
        "sent": _t(INT),
        "error": _t(S, N),
    },
    "dashboard-link": {"url": _t(S), "expires_at": DATE, "expires_in": _t(INT)},
    "schema": {"$schema": _t(S), "definitions": _t(OBJ), "links": _t(A)},
}

# Request bodies by (method, resource, title): the properties a call reads; unknown keys are ignored.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("space", "Create"): {"properties": {"name": _t(S)}, "required": ["name"]},
    ("app", "Create"): {"properties": {"name": _t(S), "space": _t(S, OBJ, N)}, "required": ["name"]},
    ("app", "Update"): {"properties": {"maintenance": _t(B), "name": _t(S)}},
    ("release", "Rollback"): {"properties": {"release": _t(S, INT)}},  # none: the previous release (lab)
    ("fault", "Create"): {"properties": {"kind": _t(S)}, "required": ["kind"]},  # + the kind's parameters
    ("log-drain", "Create"): {"properties": {"url": _t(S)}, "required": ["url"]},
    ("log-session", "Create"): {
        "properties": {"lines": _t(INT), "dyno": _t(S), "type": _t(S), "source": _t(S), "tail": _t(B)}
    },
    ("traffic-generator", "Create"): {"properties": {"rps": _t("number"), "duration": _t("number")}},
    ("config-var", "Update"): {"additionalProperties": _t(S, N)},
    ("formation", "Batch Update"): {
        "properties": {
            "updates": {
                "type": [A],
                "items": {
                    "type": [OBJ],
                    "properties": {"type": _t(S), "quantity": _t(INT, S), "size": _t(S)},
                    "required": ["type"],
                },
            }
        },
        "required": ["updates"],
    },
    ("formation", "Update"): {"properties": {"quantity": _t(INT, S), "size": _t(S)}},
    ("app-feature", "Update"): {"properties": {"enabled": _t(B)}, "required": ["enabled"]},
    ("dyno", "Create"): {"properties": {"command": _t(S), "attach": _t(B), "size": _t(S)}, "required": ["command"]},
    ("build", "Create"): {
        "properties": {"source_blob": {"type": [OBJ], "properties": {"url": _t(S), "version": _t(S, N)}}},
        "required": ["source_blob"],
    },
    ("lab", "Update"): {"properties": {"timescale": _t("number")}, "required": ["timescale"]},
}
_GROUP_RX = re.compile(r"\(\?P<(\w+)>\[\^/\]\+\)")
_GROUP_RESOURCE = {
    "app": "app",
    "space": "space",
    "dyno": "dyno",
    "ptype": "formation",
    "release": "release",
    "feature": "app-feature",
    "instance": "instance",
    "iid": "instance",
    "ident": "log-drain",
}


def href(pattern: str) -> str:
    """``/apps/(?P<app>[^/]+)/dynos`` → ``/apps/{(#/definitions/app/definitions/identity)}/dynos``."""
    return _GROUP_RX.sub(
        lambda m: "{(#/definitions/" + _GROUP_RESOURCE.get(m[1], m[1]) + "/definitions/identity)}", pattern
    )


def _rel(route: Route) -> str:
    if route.title.startswith("List"):
        return "instances"
    if route.status == 202:
        return "empty"
    return {"GET": "self", "POST": "create", "PATCH": "update", "DELETE": "destroy"}.get(route.method, "self")


def _object(resource: str) -> dict[str, Any]:
    props = OBJECTS.get(resource, {})
    if resource == "config-var":
        return {"type": [OBJ], "additionalProperties": _t(S)}
    if resource == "fault-support":
        return {"type": [OBJ], "additionalProperties": _t(OBJ)}
    return {"type": [OBJ], "properties": props, "required": sorted(props)}


def document(routes: list[Route]) -> dict[str, Any]:
    """The schema of ``routes`` (those with a ``resource``)."""
    definitions: dict[str, Any] = {}
    for route in routes:
        if not route.resource:
            continue
        d = definitions.setdefault(
            route.resource,
            {
                "$schema": "http://json-schema.org/draft-04/hyper-schema",
                "title": f"Lab Platform API - {route.resource}",
                "stability": "production",
                "definitions": {"identity": {"anyOf": [UUID, _t(S)]}},
                **_object(route.resource),
                "links": [],
            },
        )
        rel = _rel(route)
        link: dict[str, Any] = {
            "href": href(route.pattern),
            "method": route.method,
            "rel": rel,
            "title": route.title,
            "status": route.status,
        }
        if rel == "instances":
            link["targetSchema"] = {"type": [A], "items": {"$ref": f"#/definitions/{route.resource}"}}
            if route.ranges:
                link["ranges"] = list(route.ranges)
        elif rel == "empty":
            link["targetSchema"] = {"type": [OBJ]}
        elif route.title in ("Batch Update", "Clear"):  # several objects: the updated / the cleared ones
            link["targetSchema"] = {"type": [A], "items": {"$ref": f"#/definitions/{route.resource}"}}
        else:
            link["targetSchema"] = {"$ref": f"#/definitions/{route.resource}"}
        body = BODIES.get((route.resource, route.title))
        if body is not None:
            link["schema"] = {"type": [OBJ], **body}
        d["links"].append(link)
    return {
        "$schema": "http://interagent.github.io/interagent-hyper-schema",
        "type": [OBJ],
        "title": "labctl's Platform API",
        "description": "The part of Heroku's Platform API v3 the lab serves, and the lab's own resources.",
        "definitions": definitions,
        "properties": {name: {"$ref": f"#/definitions/{name}"} for name in definitions},
        "links": [{"href": "http://127.0.0.1", "rel": "self"}],
    }
