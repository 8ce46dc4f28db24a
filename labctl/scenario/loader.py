"""Parse and validate a scenario file (docs/scenarios.md) before anything runs.

Every problem is one ``ScenarioError``: a single line ``FILE:LINE: FIELD: what is wrong``, with the line taken
from PyYAML's node marks (``yaml.compose``) and the field as a path (``steps[3].wait_for.timeout``); indexes
count from 1, like the step numbers of a run's table.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from labctl.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]
SAMPLE_APP = "sample-app"
SAMPLE_APP_DIR = REPO / "images" / "sample-app"
DEFAULT_TIMESCALE = 0.05
DEFAULT_WAIT_FOR_TIMEOUT = 30.0
DEFAULT_RUN_TIMEOUT = 120.0
DEFAULT_REQUESTS = 20
MAX_DURATION = 3600.0
MAX_REQUESTS = 1000

STEP_KINDS = ("snapshot", "run", "wait", "wait_for", "expect")
STEP_OPTIONS = {"run": ("expect_exit", "expect_output", "timeout"), "wait_for": ("timeout",)}
CHECK_STEPS = ("run", "wait_for", "expect")
DYNO_STATES = ("starting", "up", "crashed", "down", "idle")
CONDITION_KEYS = ("app", "dyno", "state", "instance", "since", "changed_since", "instance_exists", "http",
                  "requests", "log")
WAIT_FOR_KEYS = (*CONDITION_KEYS, "timeout")  # a wait_for's timeout may also sit inside its mapping
HTTP_KEYS = ("status", "dynos", "path")
# Commands a `run` step may not use: they would take the lab away from the runner or never return.
FORBIDDEN_COMMANDS = {"up": "the runner brings the lab up", "down": "the runner tears the lab down",
                      "scenario": "scenarios do not nest"}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SNAPSHOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_APP_RE = re.compile(r"^[a-z][a-z0-9-]{2,29}$")
_DYNO_RE = re.compile(r"^[a-z][a-z0-9_-]*\.\d+$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_SCALE_RE = re.compile(r"^\d+(:[A-Za-z0-9-]+)?$")
_CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ScenarioError(InvalidInput):
    """One line: ``FILE:LINE: FIELD: message``."""

    def __init__(self, file: str, line: int, fieldpath: str, message: str):
        self.file, self.line, self.field, self.message = file, line, fieldpath, message
        where = f"{file}:{line}: " + (f"{fieldpath}: " if fieldpath else "")
        super().__init__(where + message)


# -- the model --------------------------------------------------------------------------------------


@dataclass
class Duration:
    seconds: float
    text: str


@dataclass
class HttpCheck:
    status: int | None
    dynos: list[str] | None
    path: str
    requests: int


@dataclass
class Condition:
    app: str
    dyno: str | None = None
    state: str | None = None
    instance: str | None = None  # same | different
    since: str | None = None
    changed_since: str | None = None
    instance_exists: bool | None = None
    http: HttpCheck | None = None
    log: str | None = None

    def describe(self) -> str:
        parts = []
        if self.state:
            parts.append(f"state {self.state}")
        if self.instance:
            parts.append(f"instance {self.instance} since {self.since}")
        if self.changed_since:
            parts.append(f"changed since {self.changed_since}")
        if self.instance_exists is not None:
            parts.append(f"{self.since}'s instance {'exists' if self.instance_exists else 'gone'}")
        if self.http:
            want = []
            if self.http.status is not None:
                want.append(f"status {self.http.status}")
            if self.http.dynos is not None:
                want.append("from " + (", ".join(self.http.dynos) or "no dyno"))
            path = "" if self.http.path == "/" else f" {self.http.path}"
            parts.append(f"http{path} x{self.http.requests}: {' '.join(want)}")
        if self.log is not None:
            parts.append(f"log has {self.log!r}")
        who = f"{self.app} {self.dyno}" if self.dyno else self.app
        return f"{who}: {', '.join(parts)}"


@dataclass
class Step:
    index: int  # 0-based position; ``number`` (1-based) is what field paths and the run's table show
    line: int
    kind: str
    snapshot: str | None = None
    command: str | None = None
    argv: list[str] = field(default_factory=list)
    expect_exit: int = 0
    expect_output: str | None = None
    duration: Duration | None = None  # wait: how long; wait_for/run: the timeout
    condition: Condition | None = None

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def is_check(self) -> bool:
        return self.kind in CHECK_STEPS

    def describe(self) -> str:
        if self.kind == "snapshot":
            return f"snapshot {self.snapshot!r}"
        if self.kind == "run":
            extra = f" -> exit {self.expect_exit}" if self.expect_exit else ""
            if self.expect_output is not None:
                extra += f", output has {self.expect_output!r}"
            return f"labctl {self.command}{extra}"
        if self.kind == "wait":
            return f"wait {self.duration.text}"  # type: ignore[union-attr]
        assert self.condition is not None
        if self.kind == "wait_for":
            return f"{self.condition.describe()} (within {self.duration.text})"  # type: ignore[union-attr]
        return self.condition.describe()


@dataclass
class AppSetup:
    name: str
    space: str | None
    source: Path | None
    source_text: str | None
    formation: dict[str, str]
    config: dict[str, str]
    process_types: list[str]


@dataclass
class Scenario:
    path: Path
    name: str
    description: str
    timescale: float
    spaces: list[str]
    apps: list[AppSetup]
    steps: list[Step]

    @property
    def app_names(self) -> list[str]:
        return [a.name for a in self.apps]

    @property
    def checks(self) -> int:
        return sum(1 for s in self.steps if s.is_check)


# -- node helpers -----------------------------------------------------------------------------------

_KIND_NAMES = {"tag:yaml.org,2002:str": "a string", "tag:yaml.org,2002:int": "a number",
               "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:bool": "a boolean",
               "tag:yaml.org,2002:null": "nothing (null)", "tag:yaml.org,2002:timestamp": "a date"}


def _what(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KIND_NAMES.get(node.tag, "a value")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Doc:
    def __init__(self, file: str):
        self.file = file
        self.loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, fieldpath: str, message: str) -> NoReturn:
        raise ScenarioError(self.file, _line(node) if node is not None else 1, fieldpath, message)

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = (),
                what: str = "", unknown: Callable[[str], str] | None = None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping{what}, got {_what(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not (isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:str"):
                self.fail(knode, path, f"keys must be strings, got {_what(knode)}")
            key = knode.value
            sub = f"{path}.{key}" if path else key
            if key not in allowed:
                why = unknown(key) if unknown else f"unknown key (expected one of: {', '.join(allowed)})"
                self.fail(knode, sub, why)
            if key in out:
                self.fail(knode, sub, "given twice")
            out[key] = (knode, vnode)
        for key in required:
            if key not in out:
                self.fail(node, f"{path}.{key}" if path else key, "missing required field")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got {_what(node)}")
        return list(node.value)

    def string(self, node: yaml.Node, path: str, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"):
            self.fail(node, path, f"expected a string, got {_what(node)}")
        text = node.value
        if pattern is not None and not pattern.match(text):
            self.fail(node, path, f"{text!r} is not valid{': ' + rule if rule else ''}")
        return text

    def integer(self, node: yaml.Node, path: str, lo: int, hi: int) -> int:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(node, path, f"expected a whole number, got {_what(node)}")
        if not lo <= value <= hi:
            self.fail(node, path, f"{value} is out of range ({lo} to {hi})")
        return value

    def number(self, node: yaml.Node, path: str, lo: float, hi: float) -> float:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(node, path, f"expected a number, got {_what(node)}")
        if not lo <= value <= hi:
            self.fail(node, path, f"{value} is out of range ({lo} to {hi})")
        return float(value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            self.fail(node, path, f"expected true or false, got {_what(node)}")
        return value

    def duration(self, node: yaml.Node, path: str) -> Duration:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in ("tag:yaml.org,2002:str",
                                                                       "tag:yaml.org,2002:int",
                                                                       "tag:yaml.org,2002:float"):
            self.fail(node, path, f"expected a duration like 500ms, 3s or 2m, got {_what(node)}")
        m = _DURATION_RE.match(node.value)
        if not m:
            self.fail(node, path, f"{node.value!r} is not a duration (use e.g. 500ms, 3s, 2m)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if not 0 < seconds <= MAX_DURATION:
            self.fail(node, path, f"{node.value!r} is out of range (more than 0, at most 1h)")
        return Duration(seconds, node.value.strip())


# -- the document -----------------------------------------------------------------------------------


def load(path: str | Path, display: str | None = None) -> Scenario:
    """Read, parse and validate ``path``; ``display`` is how the file is named in errors (default: as given)."""
    p = Path(path)
    shown = display or str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{shown}: is a directory, not a scenario file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{shown}: cannot read it: {err}") from None
    return parse(text, shown, base_dir=p.resolve().parent)


def parse(text: str, file: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    doc = _Doc(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise ScenarioError(file, line, "", f"not valid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(file, 1, "", f"not valid YAML: {err}") from None
    if root is None:
        raise ScenarioError(file, 1, "", "the file is empty: a scenario needs name, setup and steps")
    top = doc.mapping(root, "", ("name", "description", "timescale", "setup", "steps"),
                      ("name", "setup", "steps"), what=" with name, setup and steps")
    name = doc.string(top["name"][1], "name", _NAME_RE,
                      "lowercase letters, digits, '-', '_' and '.', starting with a letter or digit")
    description = doc.string(top["description"][1], "description") if "description" in top else ""
    timescale = doc.number(top["timescale"][1], "timescale", 0.001, 100) if "timescale" in top else DEFAULT_TIMESCALE
    spaces, apps = _setup(doc, top["setup"][1], base_dir or Path.cwd())
    steps = _steps(doc, top["steps"][1], apps)
    return Scenario(Path(file), name, description, timescale, spaces, apps, steps)


def _setup(doc: _Doc, node: yaml.Node, base_dir: Path) -> tuple[list[str], list[AppSetup]]:
    m = doc.mapping(node, "setup", ("spaces", "apps"), ("apps",))
    spaces: list[str] = []
    if "spaces" in m:
        for i, sn in enumerate(doc.sequence(m["spaces"][1], "setup.spaces"), 1):
            space = doc.string(sn, f"setup.spaces[{i}]", _APP_RE,
                               "3-30 lowercase letters, digits and dashes, starting with a letter")
            if space in spaces:
                doc.fail(sn, f"setup.spaces[{i}]", f"space {space!r} is listed twice")
            spaces.append(space)
    app_nodes = doc.sequence(m["apps"][1], "setup.apps")
    if not app_nodes:
        doc.fail(m["apps"][1], "setup.apps", "expected at least one app")
    apps: list[AppSetup] = []
    for i, an in enumerate(app_nodes, 1):
        apps.append(_app(doc, an, f"setup.apps[{i}]", spaces, apps, base_dir))
    return spaces, apps


def _app(doc: _Doc, node: yaml.Node, path: str, spaces: list[str], seen: list[AppSetup],
         base_dir: Path) -> AppSetup:
    m = doc.mapping(node, path, ("name", "space", "source", "formation", "config"), ("name",))
    name = doc.string(m["name"][1], f"{path}.name", _APP_RE,
                      "3-30 lowercase letters, digits and dashes, starting with a letter")
    if name in (a.name for a in seen):
        doc.fail(m["name"][1], f"{path}.name", f"app {name!r} is set up twice")
    space = None
    if "space" in m:
        space = doc.string(m["space"][1], f"{path}.space")
        if space not in spaces:
            known = ", ".join(spaces) if spaces else "none"
            doc.fail(m["space"][1], f"{path}.space", f"space {space!r} is not in setup.spaces ({known})")
    source: Path | None = None
    source_text: str | None = None
    types: list[str] = []
    if "source" in m:
        sn = m["source"][1]
        source_text = doc.string(sn, f"{path}.source")
        source = SAMPLE_APP_DIR if source_text == SAMPLE_APP else (base_dir / source_text).resolve()
        if not source.is_dir():
            doc.fail(sn, f"{path}.source", f"{source_text!r} is not a directory (relative to the scenario file)")
        procfile = source / "Procfile"
        if not procfile.is_file():
            doc.fail(sn, f"{path}.source", f"{source_text!r} has no Procfile")
        types = _procfile_types(procfile)
    formation: dict[str, str] = {}
    if "formation" in m:
        fn = m["formation"][1]
        if source is None:
            doc.fail(fn, f"{path}.formation", "a formation needs a source to deploy")
        fm = doc.mapping(fn, f"{path}.formation", tuple(types), what=" of process types to quantities",
                         unknown=lambda k: f"not a process type of {source_text}'s Procfile ({', '.join(types)})")
        for ptype, (_, vn) in fm.items():
            fp = f"{path}.formation.{ptype}"
            if isinstance(vn, yaml.ScalarNode) and vn.tag == "tag:yaml.org,2002:int":
                formation[ptype] = str(doc.integer(vn, fp, 0, 100))
            else:
                formation[ptype] = doc.string(vn, fp, _SCALE_RE, "a quantity, or QUANTITY:SIZE like 2:standard-2x")
    config: dict[str, str] = {}
    if "config" in m:
        cn = m["config"][1]
        if not isinstance(cn, yaml.MappingNode):
            doc.fail(cn, f"{path}.config", f"expected a mapping of config vars, got {_what(cn)}")
        for kn, vn in cn.value:
            key = doc.string(kn, f"{path}.config", _CONFIG_KEY_RE, "letters, digits and _, not starting with a digit")
            if not isinstance(vn, yaml.ScalarNode) or vn.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
                                                                      "tag:yaml.org,2002:float"):
                doc.fail(vn, f"{path}.config.{key}", f"expected a string or a number, got {_what(vn)}")
            config[key] = vn.value
    return AppSetup(name, space, source, source_text, formation, config, types)


def _procfile_types(procfile: Path) -> list[str]:
    types = []
    for raw in procfile.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        ptype = line.split(":", 1)[0].strip()
        if _TYPE_RE.match(ptype) and ptype != "release":
            types.append(ptype)
    return types


def _steps(doc: _Doc, node: yaml.Node, apps: list[AppSetup]) -> list[Step]:
    nodes = doc.sequence(node, "steps")
    if not nodes:
        doc.fail(node, "steps", "expected at least one step")
    snapshots: list[str] = []
    steps: list[Step] = []
    for i, sn in enumerate(nodes):
        step = _step(doc, sn, i, apps, snapshots)
        if step.kind == "snapshot":
            snapshots.append(step.snapshot)  # type: ignore[arg-type]
        steps.append(step)
    return steps


def _step(doc: _Doc, node: yaml.Node, i: int, apps: list[AppSetup], snapshots: list[str]) -> Step:
    path = f"steps[{i + 1}]"
    if not isinstance(node, yaml.MappingNode):
        doc.fail(node, path, f"expected a mapping (a step kind and its options), got {_what(node)}")
    keys = [(kn.value if isinstance(kn, yaml.ScalarNode) else None, kn) for kn, _ in node.value]
    kinds = [k for k, _ in keys if k in STEP_KINDS]
    if not kinds:
        unknown = next(((k, kn) for k, kn in keys if k not in _ALL_OPTIONS), None)
        if unknown is None:
            doc.fail(node, path, f"no step kind: expected one of {', '.join(STEP_KINDS)}")
        doc.fail(unknown[1], path, f"unknown step kind {unknown[0]!r} (expected one of: {', '.join(STEP_KINDS)})")
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
        if name in snapshots:
            doc.fail(vn, sub, f"snapshot {name!r} is already taken by an earlier step")
        step.snapshot = name
    elif kind == "wait":
        step.duration = doc.duration(vn, sub)
    elif kind == "run":
        _run(doc, step, m, path, apps)
    else:
        step.condition = _condition(doc, vn, sub, apps, snapshots, kind == "wait_for")
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


def _run(doc: _Doc, step: Step, m: dict[str, tuple[yaml.Node, yaml.Node]], path: str, apps: list[AppSetup]) -> None:
    vn = m["run"][1]
    sub = f"{path}.run"
    command = doc.string(vn, sub)
    try:
        argv = shlex.split(command)
    except ValueError as err:
        doc.fail(vn, sub, f"cannot split {command!r}: {err}")
    if not argv:
        doc.fail(vn, sub, "an empty command")
    if argv[0] == "labctl":
        argv = argv[1:]
    known = labctl_commands()
    if not argv or argv[0] not in known:
        doc.fail(vn, sub, f"{(argv or [''])[0]!r} is not a labctl command (e.g. ps:restart, ps:stop, run, logs)")
    if argv[0] in FORBIDDEN_COMMANDS:
        doc.fail(vn, sub, f"`{argv[0]}` is not allowed in a step: {FORBIDDEN_COMMANDS[argv[0]]}")
    head = argv if argv[0] not in ("run", "run:detached") else _run_options(argv)
    if any(a == "--lab" or a.startswith("--lab=") for a in head):
        doc.fail(vn, sub, "do not pass --lab: the runner adds the scenario's lab")
    if argv[0] == "logs" and any(a in ("-t", "--tail") for a in head):
        doc.fail(vn, sub, "`logs --tail` never returns; use an expect with `log:` instead")
    for j, a in enumerate(head):
        app = a.split("=", 1)[1] if a.startswith("--app=") else (head[j + 1] if a in ("-a", "--app")
                                                                   and j + 1 < len(head) else None)
        if app is not None and app not in (x.name for x in apps):
            doc.fail(vn, sub, f"app {app!r} is not in setup.apps ({', '.join(x.name for x in apps)})")
    text = command.strip()
    step.command, step.argv = (text[len("labctl"):].strip() if text.startswith("labctl ") else text), argv
    if "expect_exit" in m:
        step.expect_exit = doc.integer(m["expect_exit"][1], f"{path}.expect_exit", 0, 255)
    if "expect_output" in m:
        step.expect_output = doc.string(m["expect_output"][1], f"{path}.expect_output")
    step.duration = (doc.duration(m["timeout"][1], f"{path}.timeout") if "timeout" in m
                     else Duration(DEFAULT_RUN_TIMEOUT, f"{DEFAULT_RUN_TIMEOUT:g}s"))


def labctl_commands() -> set[str]:
    """The names of labctl's commands (``ps:restart``, ``run``…), from the CLI's own registry."""
    from labctl.cli import typer_app

    return {c.name for c in typer_app.registered_commands if c.name} | {
        g.name for g in typer_app.registered_groups if g.name}


def _run_options(argv: list[str]) -> list[str]:
    """`run`'s own options: everything up to the first word of the one-off command."""
    out = [argv[0]]
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-a", "--app", "-s", "--size", "--lab"):
            out += argv[i:i + 2]
            i += 2
        elif a.startswith("-"):
            out.append(a)
            i += 1
        else:
            break
    return out


def _condition(doc: _Doc, node: yaml.Node, path: str, apps: list[AppSetup], snapshots: list[str],
               wait_for: bool = False) -> Condition:
    m = doc.mapping(node, path, WAIT_FOR_KEYS if wait_for else CONDITION_KEYS, ("app",), what=" (a condition)")

    def snap(key: str) -> str:
        kn, vn = m[key]
        name = doc.string(vn, f"{path}.{key}")
        if name not in snapshots:
            known = ", ".join(snapshots) if snapshots else "none yet"
            doc.fail(vn, f"{path}.{key}", f"no snapshot {name!r} is taken before this step (snapshots: {known})")
        return name

    an = m["app"][1]
    app = doc.string(an, f"{path}.app")
    if app not in (a.name for a in apps):
        doc.fail(an, f"{path}.app", f"app {app!r} is not in setup.apps ({', '.join(a.name for a in apps)})")
    cond = Condition(app)
    if "dyno" in m:
        cond.dyno = doc.string(m["dyno"][1], f"{path}.dyno", _DYNO_RE, "a dyno name like web.1")
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
    if "log" in m:
        cond.log = doc.string(m["log"][1], f"{path}.log")
        if not cond.log:
            doc.fail(m["log"][1], f"{path}.log", "an empty string matches every log")
    if "http" in m:
        cond.http = _http(doc, m["http"][1], f"{path}.http")
    if "requests" in m:
        if cond.http is None:
            doc.fail(m["requests"][0], f"{path}.requests", "only used with http")
        cond.http.requests = doc.integer(m["requests"][1], f"{path}.requests", 1, MAX_REQUESTS)
    # what needs what
    needs_dyno = [k for k in ("state", "instance", "changed_since", "instance_exists") if k in m]
    if needs_dyno and cond.dyno is None:
        doc.fail(node, f"{path}.dyno", f"missing required field (needed by {', '.join(needs_dyno)})")
    uses_since = [k for k in ("instance", "instance_exists") if k in m]
    if uses_since and cond.since is None:
        doc.fail(node, f"{path}.since", f"missing required field (the snapshot {uses_since[0]} compares with)")
    if cond.since is not None and not uses_since:
        doc.fail(m["since"][0], f"{path}.since", "only used with instance or instance_exists")
    if not (needs_dyno or cond.http is not None or cond.log is not None):
        doc.fail(node, path, "nothing to check: give state, instance, changed_since, instance_exists, http or log")
    return cond


def _http(doc: _Doc, node: yaml.Node, path: str) -> HttpCheck:
    m = doc.mapping(node, path, HTTP_KEYS, what=" (status, dynos, path)")
    status = doc.integer(m["status"][1], f"{path}.status", 100, 599) if "status" in m else None
    dynos = None
    if "dynos" in m:
        dynos = [doc.string(dn, f"{path}.dynos[{j}]", _DYNO_RE, "a dyno name like web.1")
                 for j, dn in enumerate(doc.sequence(m["dynos"][1], f"{path}.dynos"), 1)]
    where = doc.string(m["path"][1], f"{path}.path", re.compile(r"^/\S*$"), "starts with /") if "path" in m else "/"
    if status is None and dynos is None:
        doc.fail(node, path, "give status, dynos or both")
    return HttpCheck(status, dynos, where, DEFAULT_REQUESTS)
