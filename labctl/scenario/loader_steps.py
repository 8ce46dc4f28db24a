"""The steps of a scenario file: each step's YAML form, validated into a ``Step`` (docs/scenarios.md).

A step's conditions (``expect``, ``wait_for``, a task's ``until``) are read by ``loader_conditions``; its labctl
command lines and the names it refers to by ``loader_context``.
"""

from __future__ import annotations

import re

import yaml

from labctl.domain.faults import FAULT_KINDS as FAULT_SPECS
from labctl.scenario.loader_conditions import _condition
from labctl.scenario.loader_context import _command, _Ctx
from labctl.scenario.model import (
    DEFAULT_RUN_TIMEOUT,
    DEFAULT_WAIT_FOR_TIMEOUT,
    FAULT_KINDS,
    MAX_RPS,
    STEP_KINDS,
    FaultStep,
    Step,
    TaskStep,
    TrafficStep,
)
from labctl.scenario.yamldoc import Doc as _Doc
from labctl.scenario.yamldoc import Duration
from labctl.scenario.yamldoc import line_of as _line
from labctl.scenario.yamldoc import node_kind as _what

STEP_OPTIONS = {"run": ("expect_exit", "expect_output", "timeout"), "wait_for": ("timeout",)}
TRAFFIC_START_KEYS = ("name", "app", "rps", "duration", "path", "timeout")
FAULT_PARAMS = ("cpus", "mb", "percent", "rate", "kbit", "ms", "jitter", "bytes", "direction")
FAULT_KEYS = ("kind", "clear", "app", "dyno", "router", *FAULT_PARAMS, "for")
TASK_KEYS = ("prompt", "until", "solution", "hints", "timeout", "settle")

_SNAPSHOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _steps(ctx: _Ctx, node: yaml.Node) -> list[Step]:
    nodes = ctx.doc.sequence(node, "steps")
    if not nodes:
        ctx.doc.fail(node, "steps", "expected at least one step")
    steps: list[Step] = []
    for i, sn in enumerate(nodes):
        if isinstance(sn, yaml.MappingNode) and any(getattr(kn, "value", None) == "task" for kn, _ in sn.value):
            ctx.unbound()  # from a task on, the learner's own commands may scale any app
        step = _step(ctx, sn, i)
        if step.kind == "snapshot":
            ctx.snapshots.append(step.snapshot)  # type: ignore[arg-type]
        if step.kind == "traffic" and step.traffic and step.traffic.action == "start":
            ctx.streams[step.traffic.name] = step.traffic.app
        steps.append(step)
    return steps


def _step(ctx: _Ctx, node: yaml.Node, i: int) -> Step:
    doc = ctx.doc
    path = f"steps[{i + 1}]"
    if not isinstance(node, yaml.MappingNode):
        doc.fail(node, path, f"expected a mapping (a step kind and its options), got {_what(node)}")
    keys = [(kn.value if isinstance(kn, yaml.ScalarNode) else None, kn) for kn, _ in node.value]
    kinds = [k for k, _ in keys if k in STEP_KINDS]
    if not kinds:
        stray = next(((k, kn) for k, kn in keys if k not in _ALL_OPTIONS), None)
        if stray is None:
            doc.fail(node, path, f"no step kind: expected one of {', '.join(STEP_KINDS)}")
        doc.fail(stray[1], path, f"unknown step kind {stray[0]!r} (expected one of: {', '.join(STEP_KINDS)})")
    if len(kinds) > 1:
        doc.fail(node, path, f"a step has exactly one kind, found {' and '.join(kinds)}")
    kind = kinds[0]
    a_kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} step"

    def unknown(key: str) -> str:
        owners = [k for k, opts in STEP_OPTIONS.items() if key in opts]
        if owners:
            return f"not an option of {a_kind} (only of {' and '.join(owners)} steps)"
        mine = STEP_OPTIONS.get(kind, ())
        return f"unknown key ({a_kind} takes " + (", ".join(mine) if mine else "no options") + ")"

    m = doc.mapping(node, path, (kind, *STEP_OPTIONS.get(kind, ())), unknown=unknown)
    vn = m[kind][1]
    sub = f"{path}.{kind}"
    step = Step(i, _line(node), kind)
    if kind == "snapshot":
        name = doc.string(vn, sub, _SNAPSHOT_RE, "letters, digits, '-', '_' and '.'")
        if name in ctx.snapshots:
            doc.fail(vn, sub, f"snapshot {name!r} is already taken by an earlier step")
        step.snapshot = name
    elif kind == "wait":
        step.duration = doc.duration(vn, sub)
    elif kind == "run":
        _run(ctx, step, m, path)
    elif kind == "traffic":
        step.traffic = _traffic(ctx, vn, sub)
    elif kind == "fault":
        step.fault = _fault(ctx, vn, sub)
    elif kind == "task":
        step.task = _task(ctx, vn, sub)
    else:
        step.condition = _condition(ctx, vn, sub, kind == "wait_for")
        if kind == "wait_for":
            inner = next(((kn, tn) for kn, tn in vn.value if kn.value == "timeout"), None)
            if inner and "timeout" in m:
                doc.fail(inner[0], f"{sub}.timeout", f"given twice (also on line {_line(m['timeout'][0])})")
            if inner:
                step.duration = doc.duration(inner[1], f"{sub}.timeout")
            elif "timeout" in m:
                step.duration = doc.duration(m["timeout"][1], f"{path}.timeout")
            else:
                step.duration = Duration(DEFAULT_WAIT_FOR_TIMEOUT, f"{DEFAULT_WAIT_FOR_TIMEOUT:g}s")
    return step


_ALL_OPTIONS = {opt for opts in STEP_OPTIONS.values() for opt in opts}


def _run(ctx: _Ctx, step: Step, m: dict[str, tuple[yaml.Node, yaml.Node]], path: str) -> None:
    doc = ctx.doc
    step.command, step.argv = _command(ctx, m["run"][1], f"{path}.run")
    if "expect_exit" in m:
        step.expect_exit = doc.integer(m["expect_exit"][1], f"{path}.expect_exit", 0, 255)
    if "expect_output" in m:
        step.expect_output = doc.string(m["expect_output"][1], f"{path}.expect_output")
    step.duration = (
        doc.duration(m["timeout"][1], f"{path}.timeout")
        if "timeout" in m
        else Duration(DEFAULT_RUN_TIMEOUT, f"{DEFAULT_RUN_TIMEOUT:g}s")
    )


def _traffic(ctx: _Ctx, node: yaml.Node, path: str) -> TrafficStep:
    doc = ctx.doc
    if isinstance(node, yaml.MappingNode) and any(k.value in ("stop", "wait") for k, _ in node.value):
        m = doc.mapping(node, path, ("stop", "wait"), what=" like {stop: NAME} or {wait: NAME}")
        if len(m) != 1:
            doc.fail(node, path, "give stop or wait, not both")
        action, (_, vn) = next(iter(m.items()))
        name = doc.string(vn, f"{path}.{action}")
        if name not in ctx.streams:
            doc.fail(
                vn,
                f"{path}.{action}",
                f"no traffic stream {name!r} is started before this step "
                f"(streams: {', '.join(ctx.streams) or 'none yet'})",
            )
        return TrafficStep(action, name)
    m = doc.mapping(
        node,
        path,
        TRAFFIC_START_KEYS,
        ("name", "app", "duration"),
        what=" like {name: load, app: demo, rps: 20, duration: 30s}",
    )
    name = doc.string(m["name"][1], f"{path}.name", _SNAPSHOT_RE, "letters, digits, '-', '_' and '.'")
    if name in ctx.streams:
        doc.fail(m["name"][1], f"{path}.name", f"traffic stream {name!r} is already started by an earlier step")
    t = TrafficStep("start", name, ctx.app(m["app"][1], f"{path}.app"))
    if "rps" in m:
        t.rps = doc.number(m["rps"][1], f"{path}.rps", 0.1, MAX_RPS)
    t.duration = doc.duration(m["duration"][1], f"{path}.duration")
    if "path" in m:
        t.path = doc.string(m["path"][1], f"{path}.path", re.compile(r"^/\S*$"), "starts with /")
    if "timeout" in m:
        t.timeout = doc.duration(m["timeout"][1], f"{path}.timeout").seconds
        if t.timeout > 120:
            doc.fail(m["timeout"][1], f"{path}.timeout", "a client timeout is at most 2m")
    return t


def _fault(ctx: _Ctx, node: yaml.Node, path: str) -> FaultStep:
    doc = ctx.doc
    keys = {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
    at_router = "router" in keys  # the router end: {kind: loss, router: tokyo, percent: 40}
    m = doc.mapping(
        node,
        path,
        FAULT_KEYS,
        () if at_router else ("app", "dyno"),
        what=" like {kind: cpu, app: demo, dyno: web.1, cpus: 0.05}",
    )
    if at_router:
        for key in ("app", "dyno"):
            if key in m:
                doc.fail(m[key][0], f"{path}.{key}", "not used with router (a router-end fault is the router's)")
        spaces = sorted({a.space for a in ctx.apps if a.space})
        app = dyno = ""
        router = doc.string(m["router"][1], f"{path}.router")
        if router != "common" and router not in spaces:
            doc.fail(m["router"][1], f"{path}.router", f"not a router here (common or a space of setup.apps: "
                     f"{', '.join(['common', *spaces])})")  # fmt: skip
        target = ["--router", router]
    else:
        app = ctx.app(m["app"][1], f"{path}.app")
        dyno = ctx.dyno(m["dyno"][1], f"{path}.dyno", app)
        target = ["--dyno", dyno, "-a", app]
    clear = doc.boolean(m["clear"][1], f"{path}.clear") if "clear" in m else False
    if clear:
        extra = [k for k in m if k not in ("clear", "app", "dyno", "router", "kind")]
        if extra:
            doc.fail(m[extra[0]][0], f"{path}.{extra[0]}", "not used with clear: true")
        argv = ["faults:clear", *target]
        if "kind" in m:
            argv += ["--kind", _fault_kind(doc, m["kind"][1], f"{path}.kind")]
        return FaultStep(app, dyno, None, argv)
    if "kind" not in m:
        doc.fail(node, f"{path}.kind", f"missing required field (one of {', '.join(FAULT_KINDS)}; or clear: true)")
    kind = _fault_kind(doc, m["kind"][1], f"{path}.kind")
    if at_router and not FAULT_SPECS[kind].network:
        doc.fail(m["kind"][1], f"{path}.kind", f"a {kind} fault acts on instances only, not at the router end")
    argv = ["faults:add", kind, *target]
    spec = FAULT_SPECS[kind]
    for need in spec.params:
        if need not in m:
            doc.fail(node, f"{path}.{need}", f"missing required field (a {kind} fault needs {need})")
    if kind == "bandwidth" and "rate" not in m and "kbit" not in m:
        doc.fail(node, f"{path}.kbit", "missing required field (a bandwidth fault needs kbit or rate)")
    takes = spec.params + spec.optional + (("direction",) if spec.directional else ())
    for key in (*FAULT_PARAMS, "for"):
        if key not in m:
            continue
        vn = m[key][1]
        if key != "for" and key not in takes:
            doc.fail(
                m[key][0],
                f"{path}.{key}",
                f"not an option of a {kind} fault" + (f" (it takes {', '.join(takes)})" if takes else ""),
            )
        if key == "cpus":
            value = f"{doc.number(vn, f'{path}.cpus', 0.01, 64):g}"
        elif key == "percent":
            value = f"{doc.number(vn, f'{path}.percent', 0.1, 100):g}"
        elif key == "bytes":
            value = str(int(doc.number(vn, f"{path}.bytes", 0, 2**31)))
        elif key == "mb":
            value = str(int(doc.number(vn, f"{path}.mb", 1, 1_000_000)))
        elif key in ("kbit", "ms", "jitter"):
            value = f"{doc.number(vn, f'{path}.{key}', 0, 10_000_000):g}"
        elif key == "direction":
            value = doc.string(vn, f"{path}.direction", re.compile(r"^(in|out|both)$"), "in, out or both")
        elif key == "rate":
            value = doc.string(
                vn, f"{path}.rate", re.compile(r"^\d+(\.\d+)?\s*(k|m|g)?bit$", re.I), "a rate like 256kbit or 1mbit"
            )
        else:
            value = doc.duration(vn, f"{path}.{key}").text
        argv += [f"--{key}", value]
    return FaultStep(app, dyno, kind, argv)


def _fault_kind(doc: _Doc, node: yaml.Node, path: str) -> str:
    kind = doc.string(node, path)
    if kind not in FAULT_KINDS:
        doc.fail(node, path, f"{kind!r} is not a fault kind ({', '.join(FAULT_KINDS)})")
    return kind


def _task(ctx: _Ctx, node: yaml.Node, path: str) -> TaskStep:
    doc = ctx.doc
    m = doc.mapping(node, path, TASK_KEYS, ("prompt", "until"), what=" with prompt and until")
    prompt = doc.string(m["prompt"][1], f"{path}.prompt")
    if not prompt.strip():
        doc.fail(m["prompt"][1], f"{path}.prompt", "an empty prompt tells the learner nothing")
    task = TaskStep(prompt.rstrip("\n"), _condition(ctx, m["until"][1], f"{path}.until"))
    if "solution" in m:
        task.solution, task.solution_argv = _command(ctx, m["solution"][1], f"{path}.solution")
    if "hints" in m:
        task.hints = [
            doc.string(hn, f"{path}.hints[{j}]") for j, hn in enumerate(doc.sequence(m["hints"][1], f"{path}.hints"), 1)
        ]
    if "timeout" in m:
        task.timeout = doc.duration(m["timeout"][1], f"{path}.timeout")
    if "settle" in m:
        task.settle = doc.duration(m["settle"][1], f"{path}.settle")
    return task


def _teardown(ctx: _Ctx, node: yaml.Node) -> list[Step]:
    steps = []
    for i, cn in enumerate(ctx.doc.sequence(node, "teardown")):
        step = Step(i, _line(cn), "run", duration=Duration(DEFAULT_RUN_TIMEOUT, f"{DEFAULT_RUN_TIMEOUT:g}s"))
        step.command, step.argv = _command(ctx, cn, f"teardown[{i + 1}]")
        steps.append(step)
    return steps
