"""What a step of a scenario may refer to and run, while it is validated.

The apps of the setup and their dynos, the snapshots and traffic streams of the steps before it (``_Ctx``), and
labctl command lines (``_command``): labctl's own commands, less those a scenario may not use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from labctl.scenario.checks import split_command
from labctl.scenario.model import SAMPLE_APP, SAMPLE_APP_DIR, AppSetup
from labctl.scenario.yamldoc import Doc as _Doc

# Commands a `run` step may not use: they would take the lab away from the runner or never return.
FORBIDDEN_COMMANDS = {
    "up": "the runner brings the lab up",
    "down": "the runner tears the lab down",
    "scenario": "scenarios do not nest",
}

_DYNO_RE = re.compile(r"^[a-z][a-z0-9_-]*\.\d+$")
_SCALE_ARG_RE = re.compile(r"^([a-z][a-z0-9_-]*)([=+-])(\d+)(:.*)?$")


@dataclass
class _Ctx:
    """What a step may refer to: the apps, and the snapshots and traffic streams of the steps before it."""

    doc: _Doc
    apps: list[AppSetup]
    base_dir: Path
    snapshots: list[str] = field(default_factory=list)
    streams: dict[str, str] = field(default_factory=dict)  # name -> app
    # (app, process type) -> the highest dyno number it can have by this step: the setup's formation, raised
    # by the `ps:scale` steps so far; None (no bound) once a command could scale it in a way not read here
    most: dict[tuple[str, str], int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for a in self.apps:
            for ptype, quantity in a.formation.items():
                self.most[(a.name, ptype)] = int(quantity.split(":", 1)[0])

    def unbound(self, app: str | None = None) -> None:
        """Any dyno number may exist from now on (a learner's own commands in a task, an unread scale)."""
        for key in self.most:
            if app is None or key[0] == app:
                self.most[key] = None

    def scaled(self, argv: list[str], app: str | None) -> None:
        """A `ps:scale` step: ``web=3`` / ``web+1`` raise the bound (scaling down keeps the higher one)."""
        if app is None:
            self.unbound()
            return
        for arg in argv[1:]:
            m = _SCALE_ARG_RE.match(arg)
            key = (app, m.group(1)) if m else None
            if key is None or key not in self.most:
                continue
            now, n = self.most[key], int(m.group(3))  # type: ignore[union-attr]
            if now is not None:
                self.most[key] = max(now, n) if m.group(2) == "=" else now + n if m.group(2) == "+" else now  # type: ignore[union-attr]

    def app(self, node: yaml.Node, path: str) -> str:
        name = self.doc.string(node, path)
        if name not in (a.name for a in self.apps):
            self.doc.fail(node, path, f"app {name!r} is not in setup.apps ({', '.join(a.name for a in self.apps)})")
        return name

    def dyno(self, node: yaml.Node, path: str, app: str) -> str:
        """A dyno name whose process type the app's Procfile declares (``web.1``; ``wbe.1`` is refused)."""
        name = self.doc.string(node, path, _DYNO_RE, "a dyno name like web.1")
        setup = next(a for a in self.apps if a.name == app)
        ptype = name.split(".", 1)[0]
        if setup.process_types and ptype not in (*setup.process_types, "run"):
            self.doc.fail(
                node,
                path,
                f"no dyno {name!r} on {app}: {ptype!r} is not a process type of its Procfile "
                f"({', '.join(setup.process_types)})",
            )
        limit = self.most.get((app, ptype))
        if limit is not None and int(name.rsplit(".", 1)[1]) > limit:
            self.doc.fail(
                node,
                path,
                f"no dyno {name!r} on {app}: its formation has {ptype}={limit} at most by "
                "this step (setup's formation and the ps:scale steps before it)",
            )
        return name


def _command(ctx: _Ctx, node: yaml.Node, path: str) -> tuple[str, list[str]]:
    """A labctl command line of a step (``run``, a task's ``solution``, a ``command`` check, ``teardown``):
    split like a shell, a leading ``labctl`` dropped, checked against labctl's commands and the forbidden ones."""
    doc = ctx.doc
    command = doc.string(node, path)
    argv = split_command(doc, node, path, command)
    if argv[0] in FORBIDDEN_COMMANDS:  # first: `scenario` is not among the CLI's own commands
        doc.fail(node, path, f"`{argv[0]}` is not allowed in a step: {FORBIDDEN_COMMANDS[argv[0]]}")
    if argv[0] not in labctl_commands():
        doc.fail(node, path, f"{argv[0]!r} is not a labctl command (e.g. ps:restart, ps:stop, run, logs)")
    head = argv if argv[0] not in ("run", "run:detached") else _run_options(argv)
    if any(a == "--lab" or a.startswith("--lab=") for a in head):
        doc.fail(node, path, "do not pass --lab: the runner adds the scenario's lab")
    if argv[0] == "logs" and any(a in ("-t", "--tail") for a in head):
        doc.fail(node, path, "`logs --tail` never returns; use an expect with `log:` instead")
    for j, a in enumerate(head):
        app = (
            a.split("=", 1)[1]
            if a.startswith("--app=")
            else (head[j + 1] if a in ("-a", "--app") and j + 1 < len(head) else None)
        )
        if app is not None and app not in (x.name for x in ctx.apps):
            doc.fail(node, path, f"app {app!r} is not in setup.apps ({', '.join(x.name for x in ctx.apps)})")
        if app is not None and argv[0] == "ps:scale":
            ctx.scaled(argv, app)
    if argv[0] == "ps:scale" and not any(a in ("-a", "--app") or a.startswith("--app=") for a in head):
        ctx.scaled(argv, None)
    if argv[0] == "deploy":  # `deploy sample-app` / a directory relative to the scenario file, as in setup
        for j, a in enumerate(argv[1:], 1):
            if a.startswith("-") or (j > 1 and argv[j - 1] in ("-a", "--app", "--lab")):
                continue
            src = SAMPLE_APP_DIR if a == SAMPLE_APP else (ctx.base_dir / a).resolve()
            if not (src / "Procfile").is_file():
                doc.fail(
                    node,
                    path,
                    f"deploy: {a!r} is not a directory with a Procfile (relative to the scenario "
                    f"file, or {SAMPLE_APP})",
                )
            argv = [*argv[:j], str(src), *argv[j + 1 :]]
            break
    text = command.strip()
    return (text[len("labctl") :].strip() if text.startswith("labctl ") else text), argv


def labctl_commands() -> set[str]:
    """The names of labctl's commands (``ps:restart``, ``run``…), from the CLI's own registry (without the
    ``scenario`` group unless ``labctl.main`` added it: scenarios may not run it anyway)."""
    from labctl.cli import typer_app

    return {c.name for c in typer_app.registered_commands if c.name} | {
        g.name for g in typer_app.registered_groups if g.name
    }


def _run_options(argv: list[str]) -> list[str]:
    """`run`'s own options: everything up to the first word of the one-off command."""
    out = [argv[0]]
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-a", "--app", "-s", "--size", "--lab"):
            out += argv[i : i + 2]
            i += 2
        elif a.startswith("-"):
            out.append(a)
            i += 1
        else:
            break
    return out
