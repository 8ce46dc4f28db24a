"""Heroku's Python buildpack's main path as the lab builds a slug (issue #8), decided from the app's files alone:
which Python the app asks for, how its dependencies get installed (requirements.txt, else pyproject.toml's
``[project] dependencies``, pinned by uv.lock), whether Django's collectstatic runs, the Dockerfile steps that
do it and the lines the build prints. Pure: it reads the app's directory it is handed and nothing else; no
Docker here (``engine/images.py`` runs the build through ``engine/build.py``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import const
from labctl.domain.procfile import parse_procfile
from labctl.engine.build_output import NOISE
from labctl.errors import BuildFailed, InvalidInput

VENV = "/app/.heroku/python"  # where Heroku's Python buildpack puts Python (heroku-reference.md)
BUILD_TMP = "/tmp/labctl-build"  # build-only files (CA bundle, generated requirements), deleted after pip
PIP_INSTALL = f"{VENV}/bin/pip install --no-cache-dir --no-input --disable-pip-version-check --progress-bar off"
COLLECTSTATIC = "python manage.py collectstatic --noinput"
INDENT = "       "  # the buildpack indents what a step prints under its "-----> " line
DOCKERFILE = ".labctl/Dockerfile"  # the slug's Dockerfile, in the build context next to app/


# -- what the build prints around the engine's build ------------------------------------------------------------
def process_types(src: Path) -> list[str]:
    """The app's process types, sorted; BuildFailed when it has no Procfile or an invalid one."""
    if not (src / "Procfile").is_file():
        raise BuildFailed(f"No Procfile in {src}: a Procfile declares the app's process types.")
    try:
        return sorted(parse_procfile((src / "Procfile").read_text(errors="replace")))
    except InvalidInput as err:
        raise BuildFailed(str(err)) from None


def intro_lines(tag: str, src: Path) -> list[str]:
    """The build's first lines: the image it makes, the app's kind, its Python version."""
    return [
        f"-----> Building {tag} on the {const.STACK_NAME} stack",
        "-----> Python app detected",
        python_version_line(src),
    ]


def outro_lines(types: list[str]) -> list[str]:
    """The build's last lines, once the image is built."""
    return ["-----> Discovering process types", f"{INDENT}Procfile declares types -> {', '.join(types)}"]


# .python-version: "3.13" or "3.13.5" (the buildpack's forms), "3" accepted too; comments on their own lines.
_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def python_version_line(src: Path) -> str:
    """The build's line about the Python version: the app's request honoured, or a warning (the build goes on
    with the stack's Python either way: the lab has one Python)."""
    py = const.STACK_PYTHON
    stack = f"the {const.STACK_NAME} stack has Python {py}.x"
    origin, request = requested_python(src)
    if origin is None:
        return f"-----> No Python version specified: using the {const.STACK_NAME} stack's Python {py}.x"
    m = _VERSION.match(request)
    if not m:
        return f"Warning: {origin} has no valid Python version ({request[:40]!r}); {stack} — building with it"
    major, minor = py.split(".")
    if m.group(1) == major and m.group(2) in (None, minor):
        return f"-----> Using Python {py}.x of the {const.STACK_NAME} stack ({origin} asks for {request})"
    return f"Warning: {origin} asks for {request}; {stack} — building with it"


def requested_python(src: Path) -> tuple[str | None, str]:
    """Which file asks for a Python version and what it asks for; ``(None, "")`` when none does."""
    text = _read(src / ".python-version")
    if text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        return ".python-version", " ".join(lines)
    text = _read(src / "runtime.txt").strip()  # the buildpack's older file: python-3.13
    if text:
        return "runtime.txt", text.removeprefix("python-")
    return None, ""


def collectstatic_disabled(src: Path, build_env: Mapping[str, str]) -> str | None:
    """Why the buildpack would skip collectstatic (its two switches), or None."""
    if build_env.get("DISABLE_COLLECTSTATIC", "0") not in ("", "0"):
        return "the env var DISABLE_COLLECTSTATIC is set"
    if (src / ".heroku" / "collectstatic_disabled").is_file():
        return "the file '.heroku/collectstatic_disabled' exists"
    return None


# -- dependencies -------------------------------------------------------------------------------------------------
@dataclass
class Deps:
    """How the app's dependencies get installed: ``pip`` arguments and the files they need first."""

    header: str = ""  # the step's line; empty: nothing to install (no venv, the stack's Python)
    pip_args: str = ""
    cwd: str = "/app"  # where pip runs (relative paths in requirement lines are relative to it, as on Heroku)
    files: dict[str, bytes] = field(default_factory=dict)  # under BUILD_TMP, copied in before the install
    late: bool = False  # pip needs the whole app (a local path requirement): install after the app's files
    warning: str = ""


def dependencies(src: Path) -> Deps:
    """requirements.txt first (the buildpack's pip path), else pyproject.toml (+ uv.lock).

    Choice for pyproject.toml/uv.lock: the lab has neither uv nor a build backend in the stack, so it does not
    ``pip install .`` (a Django project without [build-system] fails setuptools' flat-layout discovery).
    It installs what ``uv sync --locked --no-default-groups`` installs for such a project: the
    ``[project] dependencies``, not the project itself nor its dependency groups. With a uv.lock, every
    registry package the lock names (once) becomes a pip constraint ``name==version``, so pip installs the
    locked versions; packages that the lock pins from git or a path, or several times (per-platform forks),
    are left to pip's resolver.
    """
    if has_requirements(src / "requirements.txt"):
        # The requirement files alone come first (in BUILD_TMP/app, the layer pip's cache rests on); a
        # requirement that needs the app's own files (-e ., ./pkg) makes pip run in /app after the app's code.
        names, late = requirement_files(src, "requirements.txt")
        header = "-----> Installing requirements with pip"
        if late:
            return Deps(header, "-r requirements.txt", late=True)
        return Deps(
            header, "-r requirements.txt", f"{BUILD_TMP}/app", {f"app/{rel}": (src / rel).read_bytes() for rel in names}
        )
    pyproject = src / "pyproject.toml"
    if pyproject.is_file():
        project = _toml(pyproject).get("project") or {}
        reqs = [str(r) for r in project.get("dependencies") or []]
        lock = src / "uv.lock"
        if not reqs:
            return Deps(
                warning=""
                if "dependencies" in project
                else "Warning: pyproject.toml has no [project] dependencies: nothing to install"
            )
        generated = {"requirements.txt": "".join(f"{r}\n" for r in reqs).encode()}
        args = f"-r {BUILD_TMP}/requirements.txt"
        source = "pyproject.toml"
        if lock.is_file():
            generated["constraints.txt"] = "".join(f"{p}\n" for p in uv_lock_pins(lock)).encode()
            args += f" -c {BUILD_TMP}/constraints.txt"
            source = "uv.lock"
        late = any(local_requirement(r) for r in reqs)
        return Deps(f"-----> Installing dependencies from {source} with pip", args, files=generated, late=late)
    for name in ("Pipfile.lock", "Pipfile", "poetry.lock"):
        if (src / name).is_file():
            return Deps(
                warning=f"Warning: {name} found, which the lab does not install from: add a "
                "requirements.txt (or [project] dependencies in pyproject.toml)"
            )
    return Deps()


def has_requirements(path: Path) -> bool:
    """A requirements.txt with at least one requirement (blank lines and comments don't count)."""
    return any(line.strip() and not line.strip().startswith("#") for line in _read(path).splitlines())


_INCLUDE = re.compile(r"^(?:-r|-c|--requirement|--constraint)(?:\s+|=|(?=[^\s-]))(\S+)")


def requirement_files(src: Path, first: str) -> tuple[list[str], bool]:
    """The requirement files pip will read (``-r``/``-c`` followed, relative to the including file as pip
    resolves them) and whether any line needs the app's own files (``-e .``, ``./pkg``, ``file:``)."""
    root = src.resolve()
    seen: list[str] = []
    late = False
    todo = [first]
    while todo:
        rel = todo.pop()
        if rel in seen or len(seen) > 50:
            continue
        seen.append(rel)
        for raw in _read(src / rel).splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            m = _INCLUDE.match(line)
            if m and "://" not in m.group(1):
                target = (src / rel).parent / m.group(1)
                try:
                    inner = target.resolve().relative_to(root).as_posix()
                except ValueError:
                    late = True  # outside the app: pip will fail, as it would on Heroku
                    continue
                if target.is_file():
                    todo.append(inner)
            elif line and local_requirement(line):
                late = True
    return seen, late


def local_requirement(line: str) -> bool:
    line = re.sub(r"^(-e|--editable)(\s+|=)", "", line.strip())
    return line.startswith((".", "/", "file:")) or bool(re.search(r"@\s*file:", line))


def uv_lock_pins(lock: Path) -> list[str]:
    """``name==version`` for each registry package uv.lock names exactly once."""
    versions: dict[str, list[str]] = {}
    for pkg in _toml(lock).get("package") or []:
        name, version, source = pkg.get("name"), pkg.get("version"), pkg.get("source") or {}
        if name and version and "registry" in source:
            versions.setdefault(re.sub(r"[-_.]+", "-", str(name)).lower(), []).append(str(version))
    return [f"{name}=={vs[0]}" for name, vs in sorted(versions.items()) if len(set(vs)) == 1]


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(errors="replace"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BuildFailed(f"{path.name} is not valid TOML: {str(err).splitlines()[0][:200]}") from None


# -- the slug's Dockerfile and build context -----------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One Dockerfile instruction and what the build output shows for it."""

    instruction: str
    kind: str = ""  # pip | collectstatic | "" (silent)
    header: str = ""  # shown when the step starts
    cached: str = ""  # shown when the engine reuses the step's layer


@dataclass(frozen=True)
class SlugPlan:
    """What a slug build does, decided before the engine is asked: the lines to print first, the Dockerfile's
    steps and the build context's own files (the app goes in as ``app/``)."""

    lines: list[str]
    steps: list[Step]
    context: dict[str, bytes]


def plan_slug(src: Path, *, lab: str, app: str, build_env: Mapping[str, str], ca_bundle: bytes | None) -> SlugPlan:
    """The build of ``src`` for ``app`` of ``lab``. ``build_env`` is what the build may read of the app's
    config (only ``DISABLE_COLLECTSTATIC``); ``ca_bundle`` is the host's CA certificates, for pip to trust
    what the host trusts (None: the host has none)."""
    lines = []
    deps = dependencies(src)
    if deps.warning:
        lines.append(deps.warning)
    collectstatic = (src / "manage.py").is_file()
    if collectstatic and (reason := collectstatic_disabled(src, build_env)):
        lines.append(f"-----> Skipping Django collectstatic since {reason}.")
        collectstatic = False
    steps = slug_steps(lab, app, deps, collectstatic, ca_bundle is not None)
    return SlugPlan(lines, steps, slug_context(steps, deps, ca_bundle))


def slug_labels(lab: str, app: str) -> dict[str, str]:
    """The labels every layer of an app's slug carries (``slug_steps``)."""
    return {const.LABEL_IMAGE: "", const.LABEL_LAB: lab, const.LABEL_KIND: const.KIND_SLUG, const.LABEL_APP: app}


def copy_only(steps: list[Step]) -> bool:
    """Whether a slug's Dockerfile only copies the app onto the stack (no dependencies, no collectstatic): then
    one committed layer makes the same image (``build.commit_copy``)."""
    return [s.instruction.split(" ", 1)[0] for s in steps] == ["FROM", "LABEL", "COPY"] and steps[2].instruction == (
        "COPY app/ /app/"
    )


def slug_steps(lab: str, app: str, deps: Deps, collectstatic: bool, ca_bundle: bool) -> list[Step]:
    """The buildpack's main path as layers that cache like Heroku's build cache: the dependency files, the
    pip install, then the app's code, so a deploy with unchanged dependencies reuses the pip layer.

    The LABEL comes first so every intermediate image carries the lab's labels (``labctl down`` finds
    them), but it names no release: a second deploy with unchanged requirements reuses the pip layer and
    builds in seconds. The release label goes on the final image (build ``labels=``, one more step: the
    engine commits a layer per step, so the other labels are not repeated there). A slug blanks the
    stack's ``io.labctl.image``: it is no shared image (const.py).
    """
    cache = slug_labels(lab, app)
    label = " ".join(f"{k}={json.dumps(v)}" for k, v in cache.items())
    steps = [Step(f"FROM {const.STACK_IMAGE}"), Step(f"LABEL {label}")]
    app_code = Step("COPY app/ /app/")
    if deps.header:
        if ca_bundle or deps.files:
            steps.append(Step(f"COPY .labctl/build/ {BUILD_TMP}/"))
        if deps.late:
            steps.append(app_code)
        cert = f"PIP_CERT={BUILD_TMP}/ca.crt " if ca_bundle else ""
        steps.append(
            Step(
                f"RUN python3 -m venv {VENV} && cd {deps.cwd} && {cert}{PIP_INSTALL} {deps.pip_args}; "
                f"rc=$?; cd /app; rm -rf {BUILD_TMP}; exit $rc",
                "pip",
                deps.header,
                f"{INDENT}Dependencies unchanged: reusing the cached install",
            )
        )
        steps.append(Step(f'ENV PATH="{VENV}/bin:$PATH" VIRTUAL_ENV={VENV}'))
    if not deps.late:
        steps.append(app_code)
    if collectstatic:
        # As the buildpack: only when Django is installed, PYTHONPATH=., the app's config vars absent (the
        # build has none), a failure fails the build.
        fail = (
            f"{{ echo ' !     Error: Unable to generate Django static files: {COLLECTSTATIC} failed "
            "(traceback above). To skip it: labctl config:set DISABLE_COLLECTSTATIC=1'; exit 1; }"
        )
        steps.append(
            Step(
                "RUN if python -c \"import importlib.util as u, sys; sys.exit(not u.find_spec('django'))\" "
                f"2>/dev/null; then echo '-----> $ {COLLECTSTATIC}' && PYTHONPATH=. {COLLECTSTATIC} --traceback "
                f"|| {fail}; fi",
                "collectstatic",
                "",
                f"-----> $ {COLLECTSTATIC}\n{INDENT}App unchanged: reusing the cached static files",
            )
        )
    return steps


def slug_context(steps: list[Step], deps: Deps, ca_bundle: bytes | None) -> dict[str, bytes]:
    """The build context's own files (the app goes in as ``app/``)."""
    files = {DOCKERFILE: ("\n".join(s.instruction for s in steps) + "\n").encode()}
    if any(s.instruction.startswith("COPY .labctl/build/") for s in steps):
        if ca_bundle is not None:
            files[".labctl/build/ca.crt"] = ca_bundle
        files.update({f".labctl/build/{name}": data for name, data in deps.files.items()})
    return files


def build_failure(err: BuildFailed, step: Step | None) -> BuildFailed:
    """The error a failed build reports: a failing collectstatic is named as the buildpack names it."""
    if step and step.kind == "collectstatic":
        return BuildFailed(f"Build failed: $ {COLLECTSTATIC}: {str(err).removeprefix('Build failed: ')}")
    return err


class BuildpackOutput:
    """The engine's build stream shown as the buildpack shows a build: a step's line when it starts, its
    output indented, the engine's own lines (Step N/M, layer ids) left out."""

    _STEP = re.compile(r"^Step (\d+)/\d+ : ")

    def __init__(self, progress: Callable[[str], None], steps: list[Step]):
        self.progress, self.steps = progress, steps
        self.current: Step | None = None

    def __call__(self, line: str) -> None:
        m = self._STEP.match(line)
        if m:
            n = int(m.group(1))
            self.current = self.steps[n - 1] if n <= len(self.steps) else None
            if self.current and self.current.header:
                self.progress(self.current.header)
        elif line.startswith(" ---> Using cache"):
            if self.current and self.current.cached:
                for text in self.current.cached.splitlines():
                    self.progress(text)
        elif NOISE.match(line) or line.startswith(("Successfully tagged ", " ---> ")):
            pass
        elif line.startswith(("-----> ", " !", "Warning: ")):
            self.progress(line)
        else:
            self.progress(INDENT + line)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
