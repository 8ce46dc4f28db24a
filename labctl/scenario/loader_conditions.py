"""The conditions of a scenario file: what an ``expect``, a ``wait_for`` or a task's ``until`` checks.

Dyno state and instance, snapshots compared, HTTP through the router, log lines; the traffic and command
conditions' own YAML forms are in ``checks``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

from labctl.scenario.checks import command_check, traffic_check
from labctl.scenario.loader_context import _command, _Ctx
from labctl.scenario.model import DEFAULT_REQUESTS, DYNO_STATES, MAX_REQUESTS, Condition, HttpCheck
from labctl.scenario.yamldoc import Doc as _Doc

CONDITION_KEYS = (
    "app",
    "dyno",
    "state",
    "instance",
    "since",
    "changed_since",
    "instance_exists",
    "http",
    "requests",
    "log",
    "no_log",
    "traffic",
    "command",
    "exit",
    "output",
)
WAIT_FOR_KEYS = (*CONDITION_KEYS, "timeout")  # a wait_for's timeout may also sit inside its mapping
HTTP_KEYS = ("status", "dynos", "path")


def _condition(ctx: _Ctx, node: yaml.Node, path: str, wait_for: bool = False) -> Condition:
    doc, snapshots = ctx.doc, ctx.snapshots
    keys = {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
    has_traffic = "traffic" in keys
    # `app` names what the checks look at; a traffic stream knows its app, a command check needs none
    m = doc.mapping(
        node,
        path,
        WAIT_FOR_KEYS if wait_for else CONDITION_KEYS,
        () if keys & {"traffic", "command"} else ("app",),
        what=" (a condition)",
    )

    def snap(key: str) -> str:
        kn, vn = m[key]
        name = doc.string(vn, f"{path}.{key}")
        if name not in snapshots:
            known = ", ".join(snapshots) if snapshots else "none yet"
            doc.fail(vn, f"{path}.{key}", f"no snapshot {name!r} is taken before this step (snapshots: {known})")
        return name

    traffic = (
        traffic_check(doc, m["traffic"][1], f"{path}.traffic", ctx.streams, snapshots, ctx.dyno)
        if has_traffic
        else None
    )
    if "app" in m:
        app = ctx.app(m["app"][1], f"{path}.app")
        if traffic is not None and ctx.streams[traffic.stream] != app:
            doc.fail(
                m["app"][1],
                f"{path}.app",
                f"stream {traffic.stream!r} sends to {ctx.streams[traffic.stream]}, not {app}",
            )
    else:
        app = ctx.streams[traffic.stream] if traffic is not None else ctx.apps[0].name
    cond = Condition(app, traffic=traffic)
    if "dyno" in m:
        cond.dyno = ctx.dyno(m["dyno"][1], f"{path}.dyno", app)
    if "state" in m:
        vn = m["state"][1]
        cond.state = doc.string(vn, f"{path}.state")
        if cond.state not in DYNO_STATES:
            doc.fail(vn, f"{path}.state", f"{cond.state!r} is not a dyno state ({', '.join(DYNO_STATES)})")
    if "instance" in m:
        vn = m["instance"][1]
        cond.instance = doc.string(vn, f"{path}.instance")
        if cond.instance not in ("same", "different"):
            doc.fail(vn, f"{path}.instance", f"{cond.instance!r} is not same or different")
    if "instance_exists" in m:
        cond.instance_exists = doc.boolean(m["instance_exists"][1], f"{path}.instance_exists")
    if "since" in m:
        cond.since = snap("since")
    if "changed_since" in m:
        cond.changed_since = snap("changed_since")
    for key in ("log", "no_log"):
        if key in m:
            text = doc.string(m[key][1], f"{path}.{key}")
            if not text:
                doc.fail(m[key][1], f"{path}.{key}", "an empty string matches every log line")
            setattr(cond, key, text)
    if "http" in m:
        cond.http = _http(doc, m["http"][1], f"{path}.http", lambda n, p: ctx.dyno(n, p, app))
    if "requests" in m:
        if cond.http is None:
            doc.fail(m["requests"][0], f"{path}.requests", "only used with http")
        cond.http.requests = doc.integer(m["requests"][1], f"{path}.requests", 1, MAX_REQUESTS)
    if "command" in m:
        cond.command = command_check(
            doc,
            m["command"][1],
            f"{path}.command",
            lambda n, p, _t: _command(ctx, n, p)[1],
            m["exit"][1] if "exit" in m else None,
            m["output"][1] if "output" in m else None,
        )
    for key in ("exit", "output"):
        if key in m and "command" not in m:
            doc.fail(m[key][0], f"{path}.{key}", "only used with command")
    # what needs what
    needs_dyno = [k for k in ("state", "instance", "changed_since", "instance_exists") if k in m]
    if needs_dyno and cond.dyno is None:
        doc.fail(node, f"{path}.dyno", f"missing required field (needed by {', '.join(needs_dyno)})")
    uses_since = [k for k in ("instance", "instance_exists") if k in m]
    if uses_since and cond.since is None:
        doc.fail(node, f"{path}.since", f"missing required field (the snapshot {uses_since[0]} compares with)")
    if cond.since is not None and not uses_since:
        doc.fail(m["since"][0], f"{path}.since", "only used with instance or instance_exists")
    if not (
        needs_dyno
        or cond.http is not None
        or cond.log is not None
        or cond.no_log is not None
        or traffic is not None
        or cond.command is not None
    ):
        doc.fail(
            node,
            path,
            "nothing to check: give state, instance, changed_since, instance_exists, http, log, "
            "no_log, traffic or command",
        )
    return cond


def _http(doc: _Doc, node: yaml.Node, path: str, dyno: Callable[[yaml.Node, str], str]) -> HttpCheck:
    m = doc.mapping(node, path, HTTP_KEYS, what=" (status, dynos, path)")
    status = doc.integer(m["status"][1], f"{path}.status", 100, 599) if "status" in m else None
    dynos = None
    if "dynos" in m:
        dynos = [dyno(dn, f"{path}.dynos[{j}]") for j, dn in enumerate(doc.sequence(m["dynos"][1], f"{path}.dynos"), 1)]
    where = doc.string(m["path"][1], f"{path}.path", re.compile(r"^/\S*$"), "starts with /") if "path" in m else "/"
    if status is None and dynos is None:
        doc.fail(node, path, "give status, dynos or both")
    return HttpCheck(status, dynos, where, DEFAULT_REQUESTS)
