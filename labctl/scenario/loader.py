"""Parse and validate a scenario file (docs/scenarios.md) before anything runs.

Every problem is one ``ScenarioError``: a single line ``FILE:LINE: FIELD: what is wrong``, with the line taken
from PyYAML's node marks (``yaml.compose``) and the field as a path (``steps[3].wait_for.timeout``); indexes
count from 1, like the step numbers of a run's table.

The model is in ``model``; a file's steps are read by ``loader_steps``, their conditions by ``loader_conditions``,
the names and commands they refer to by ``loader_context``. This module reads the document and its setup.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from labctl.domain.placement import POLICIES
from labctl.errors import InvalidInput
from labctl.scenario import loader_variants
from labctl.scenario.loader_context import _Ctx
from labctl.scenario.loader_steps import _steps, _teardown
from labctl.scenario.model import DEFAULT_REQUESTS as DEFAULT_REQUESTS
from labctl.scenario.model import DEFAULT_TIMESCALE, SAMPLE_APP, SAMPLE_APP_DIR, AppSetup, Scenario
from labctl.scenario.model import DEFAULT_WAIT_FOR_TIMEOUT as DEFAULT_WAIT_FOR_TIMEOUT
from labctl.scenario.model import Condition as Condition
from labctl.scenario.model import Step as Step
from labctl.scenario.yamldoc import Doc as _Doc
from labctl.scenario.yamldoc import Duration as Duration
from labctl.scenario.yamldoc import ScenarioError
from labctl.scenario.yamldoc import node_kind as _what

# Names imported ``as`` themselves are re-exported: they were defined here before ``model`` was split out.
__all__ = ["Condition", "Duration", "Scenario", "ScenarioError", "Step", "load", "parse"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_APP_RE = re.compile(r"^[a-z][a-z0-9-]{2,29}$")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_SCALE_RE = re.compile(r"^\d+(:[A-Za-z0-9-]+)?$")
_CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- the document -----------------------------------------------------------------------------------


def load(path: str | Path, display: str | None = None, variant: str | None = None) -> Scenario:
    """Read, parse and validate ``path``; ``display`` is how the file is named in errors (default: as given);
    ``variant``: which of the file's ``variants`` (default: the first)."""
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
    return parse(text, shown, base_dir=p.resolve().parent, variant=variant)


def parse(text: str, file: str = "<scenario>", base_dir: Path | None = None, variant: str | None = None) -> Scenario:
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
    top = doc.mapping(
        root,
        "",
        (
            "name",
            "description",
            "timescale",
            "provision_time",
            "cycle_period",
            "placement",
            "setup",
            "steps",
            "teardown",
            "variants",
        ),
        ("name", "setup", "steps"),
        what=" with name, setup and steps",
    )
    variants: dict[str, dict[str, yaml.Node]] = {}
    if "variants" in top:
        variants = loader_variants.read(doc, top["variants"][1])
        chosen = variant or next(iter(variants))
        if chosen not in variants:
            raise InvalidInput(f"{file}: no variant {chosen!r} (variants: {', '.join(variants)})")
        top = {
            k: (kn, vn if k == "variants" else loader_variants.apply(doc, vn, variants[chosen], chosen, k))
            for k, (kn, vn) in top.items()
        }
        variant = chosen
    else:
        if variant is not None:
            raise InvalidInput(f"{file}: declares no variants (asked for {variant!r})")
        for k, (_, vn) in top.items():
            loader_variants.placeholders_without_variants(doc, vn, k)
    name = doc.string(
        top["name"][1], "name", _NAME_RE, "lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
    )
    description = doc.string(top["description"][1], "description") if "description" in top else ""
    timescale = doc.number(top["timescale"][1], "timescale", 0.001, 100) if "timescale" in top else DEFAULT_TIMESCALE
    provision = doc.number(top["provision_time"][1], "provision_time", 0, 3600) if "provision_time" in top else 0.0
    cycle = doc.number(top["cycle_period"][1], "cycle_period", 10, 86400) if "cycle_period" in top else None
    placement = None
    if "placement" in top:
        placement = doc.string(top["placement"][1], "placement")
        if placement not in POLICIES:
            doc.fail(top["placement"][1], "placement", f"expected one of {', '.join(POLICIES)}, got {placement!r}")
    spaces, apps = _setup(doc, top["setup"][1], base_dir or Path.cwd())
    ctx = _Ctx(doc, apps, base_dir or Path.cwd())
    steps = _steps(ctx, top["steps"][1])
    teardown = _teardown(ctx, top["teardown"][1]) if "teardown" in top else []
    return Scenario(
        Path(file),
        name,
        description,
        timescale,
        spaces,
        apps,
        steps,
        teardown,
        provision_time=provision,
        cycle_period=cycle,
        placement=placement,
        variant=variant,
        variants=list(variants),
    )


def _setup(doc: _Doc, node: yaml.Node, base_dir: Path) -> tuple[list[str], list[AppSetup]]:
    m = doc.mapping(node, "setup", ("spaces", "apps"), ("apps",))
    spaces: list[str] = []
    if "spaces" in m:
        for i, sn in enumerate(doc.sequence(m["spaces"][1], "setup.spaces"), 1):
            space = doc.string(
                sn, f"setup.spaces[{i}]", _APP_RE, "3-30 lowercase letters, digits and dashes, starting with a letter"
            )
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


def _app(doc: _Doc, node: yaml.Node, path: str, spaces: list[str], seen: list[AppSetup], base_dir: Path) -> AppSetup:
    m = doc.mapping(node, path, ("name", "space", "source", "formation", "config", "features"), ("name",))
    name = doc.string(
        m["name"][1], f"{path}.name", _APP_RE, "3-30 lowercase letters, digits and dashes, starting with a letter"
    )
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
        fm = doc.mapping(
            fn,
            f"{path}.formation",
            tuple(types),
            what=" of process types to quantities",
            unknown=lambda k: f"not a process type of {source_text}'s Procfile ({', '.join(types)})",
        )
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
            if not isinstance(vn, yaml.ScalarNode) or vn.tag not in (
                "tag:yaml.org,2002:str",
                "tag:yaml.org,2002:int",
                "tag:yaml.org,2002:float",
            ):
                doc.fail(vn, f"{path}.config.{key}", f"expected a string or a number, got {_what(vn)}")
            config[key] = vn.value
    features: list[str] = []
    if "features" in m:
        from labctl.domain.preboot import KNOWN_FEATURES

        for j, fnode in enumerate(doc.sequence(m["features"][1], f"{path}.features"), 1):
            feature = doc.string(fnode, f"{path}.features[{j}]")
            if feature not in KNOWN_FEATURES:
                doc.fail(
                    fnode,
                    f"{path}.features[{j}]",
                    f"{feature!r} is not a feature labctl knows ({', '.join(KNOWN_FEATURES)})",
                )
            features.append(feature)
    return AppSetup(name, space, source, source_text, formation, config, types, features)


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
