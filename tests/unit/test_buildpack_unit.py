"""The buildpack emulation's decisions and output lines (engine/buildpack.py), from the app's files alone: no Docker.

tests/integration/test_buildpack.py builds the same apps on the engine; the lines it expects are pinned here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl import const
from labctl.engine import build_output
from labctl.engine import buildpack as bp
from labctl.errors import BuildFailed
from tests.fixtures import DJANGO_APP

TAG = "labctl-slug/lab-web:v1"


def _app(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "Procfile").write_text("web: python app.py\n")
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/").replace("_dot_", ".")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _plan(src: Path, build_env: dict[str, str] | None = None, ca: bytes | None = None) -> bp.SlugPlan:
    return bp.plan_slug(src, lab="lab", app="web", build_env=build_env or {}, ca_bundle=ca)


# -- Procfile, first and last lines ----------------------------------------------------------------------------
def test_no_procfile_fails_naming_the_directory(tmp_path):
    with pytest.raises(BuildFailed) as err:
        bp.process_types(tmp_path)
    assert str(err.value) == f"No Procfile in {tmp_path}: a Procfile declares the app's process types."


def test_an_invalid_procfile_fails_the_build_with_the_grammar_error(tmp_path):
    (tmp_path / "Procfile").write_text("web python app.py\n")
    with pytest.raises(BuildFailed, match="Procfile line 1: expected 'TYPE: COMMAND'"):
        bp.process_types(tmp_path)


def test_first_and_last_lines_of_the_django_build():
    assert bp.intro_lines(TAG, DJANGO_APP) == [
        f"-----> Building {TAG} on the lab-24 stack",
        "-----> Python app detected",
        "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3.13)",
    ]
    assert bp.outro_lines(bp.process_types(DJANGO_APP)) == [
        "-----> Discovering process types",
        "       Procfile declares types -> release, web",
    ]


# -- the Python version ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("files", "line"),
    [
        ({}, "-----> No Python version specified: using the lab-24 stack's Python 3.13.x"),
        (
            {".python-version": "3.13\n"},
            "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3.13)",
        ),
        ({".python-version": "3\n"}, "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3)"),
        (
            {".python-version": "3.13.5\n"},
            "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3.13.5)",
        ),
        (
            {".python-version": "# the version we develop with\n3.12\n"},
            "Warning: .python-version asks for 3.12; the lab-24 stack has Python 3.13.x — building with it",
        ),
        (
            {".python-version": "pypy3.10\n"},
            "Warning: .python-version has no valid Python version ('pypy3.10'); the lab-24 stack has Python 3.13.x"
            " — building with it",
        ),
        (
            {"runtime.txt": "python-3.13.1\n"},
            "-----> Using Python 3.13.x of the lab-24 stack (runtime.txt asks for 3.13.1)",
        ),
        (
            {"runtime.txt": "python-3.11.9", ".python-version": "3.13"},  # .python-version wins
            "-----> Using Python 3.13.x of the lab-24 stack (.python-version asks for 3.13)",
        ),
    ],
)
def test_python_version_line(tmp_path, files, line):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert bp.python_version_line(tmp_path) == line


def test_the_stack_python_is_the_one_constant():
    assert const.STACK_PYTHON == "3.13"


# -- dependencies ----------------------------------------------------------------------------------------------
def test_requirements_txt_files_go_in_first_and_pip_runs_among_them(tmp_path):
    src = _app(
        tmp_path,
        requirements_dot_txt="-r requirements/base.txt  # shared\n",
        requirements__base_dot_txt="Django>=6,<7\n--constraint=pins.txt\n",
        requirements__pins_dot_txt="asgiref<4\n",
    )
    deps = bp.dependencies(src)
    assert (deps.header, deps.pip_args, deps.cwd, deps.late, deps.warning) == (
        "-----> Installing requirements with pip",
        "-r requirements.txt",
        "/tmp/labctl-build/app",
        False,
        "",
    )
    assert deps.files == {
        "app/requirements.txt": b"-r requirements/base.txt  # shared\n",
        "app/requirements/base.txt": b"Django>=6,<7\n--constraint=pins.txt\n",
        "app/requirements/pins.txt": b"asgiref<4\n",
    }


@pytest.mark.parametrize(
    "line", ["-e .", "./pkg", "--editable=./lib", "pkg @ file:///app/pkg", "file:wheels/x.whl", "-r ../outside.txt"]
)
def test_a_requirement_needing_the_apps_files_installs_after_them(tmp_path, line):
    deps = bp.dependencies(_app(tmp_path, requirements_dot_txt=f"six\n{line}\n"))
    assert (deps.cwd, deps.late, deps.files, deps.pip_args) == ("/app", True, {}, "-r requirements.txt")
    steps = [s.instruction for s in _plan(tmp_path).steps]
    assert steps.index("COPY app/ /app/") < next(i for i, s in enumerate(steps) if "pip install" in s)


def test_a_requirements_txt_of_comments_only_falls_through_to_pyproject(tmp_path):
    src = _app(
        tmp_path,
        requirements_dot_txt="# nothing yet\n\n",
        pyproject_dot_toml='[project]\nname = "svc"\ndependencies = ["six>=1.15"]\n',
    )
    deps = bp.dependencies(src)
    assert deps.header == "-----> Installing dependencies from pyproject.toml with pip"
    assert deps.pip_args == "-r /tmp/labctl-build/requirements.txt"
    assert deps.files == {"requirements.txt": b"six>=1.15\n"} and not deps.late


def test_uv_lock_pins_registry_packages_named_once(tmp_path):
    lock = (
        "version = 1\n\n"
        '[[package]]\nname = "Six"\nversion = "1.16.0"\nsource = { registry = "https://pypi.org/simple" }\n\n'
        '[[package]]\nname = "numpy"\nversion = "2.0.0"\nsource = { registry = "https://pypi.org/simple" }\n\n'
        '[[package]]\nname = "numpy"\nversion = "1.26.4"\nsource = { registry = "https://pypi.org/simple" }\n\n'
        '[[package]]\nname = "mylib"\nversion = "0.1"\nsource = { git = "https://example.org/mylib" }\n\n'
        '[[package]]\nname = "svc"\nversion = "0.1.0"\nsource = { virtual = "." }\n'
    )
    src = _app(
        tmp_path, pyproject_dot_toml='[project]\nname = "svc"\ndependencies = ["six", "numpy"]\n', uv_dot_lock=lock
    )
    deps = bp.dependencies(src)
    assert deps.header == "-----> Installing dependencies from uv.lock with pip"
    assert deps.pip_args == "-r /tmp/labctl-build/requirements.txt -c /tmp/labctl-build/constraints.txt"
    assert deps.files == {"requirements.txt": b"six\nnumpy\n", "constraints.txt": b"six==1.16.0\n"}


def test_pyproject_without_dependencies_warns_and_installs_nothing(tmp_path):
    deps = bp.dependencies(_app(tmp_path, pyproject_dot_toml='[project]\nname = "svc"\n'))
    assert (deps.header, deps.warning) == (
        "",
        "Warning: pyproject.toml has no [project] dependencies: nothing to install",
    )
    assert _plan(tmp_path).lines == ["Warning: pyproject.toml has no [project] dependencies: nothing to install"]


def test_pyproject_with_an_empty_dependency_list_is_silent(tmp_path):
    deps = bp.dependencies(_app(tmp_path, pyproject_dot_toml='[project]\nname = "svc"\ndependencies = []\n'))
    assert (deps.header, deps.warning) == ("", "")


def test_invalid_pyproject_fails_the_build_in_one_line(tmp_path):
    with pytest.raises(BuildFailed) as err:
        bp.dependencies(_app(tmp_path, pyproject_dot_toml="[project\n"))
    assert str(err.value).startswith("pyproject.toml is not valid TOML: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["Pipfile.lock", "Pipfile", "poetry.lock"])
def test_other_lock_files_warn_they_are_not_installed(tmp_path, name):
    (tmp_path / name).write_text("")
    assert bp.dependencies(tmp_path).warning == (
        f"Warning: {name} found, which the lab does not install from: add a requirements.txt "
        "(or [project] dependencies in pyproject.toml)"
    )


def test_no_dependencies_means_no_virtualenv(tmp_path):
    plan = _plan(_app(tmp_path, app_dot_py="print('hi')\n"), ca=b"CA")
    assert [s.instruction for s in plan.steps][2:] == ["COPY app/ /app/"]
    assert list(plan.context) == [".labctl/Dockerfile"]  # no CA bundle without a pip step


# -- collectstatic ---------------------------------------------------------------------------------------------
def test_django_app_runs_collectstatic_after_the_app_code():
    plan = _plan(DJANGO_APP)
    assert plan.lines == []
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("collectstatic") == 1 and kinds[-1] == "collectstatic"
    last = plan.steps[-1]
    assert "PYTHONPATH=. python manage.py collectstatic --noinput --traceback" in last.instruction
    assert last.cached == (
        "-----> $ python manage.py collectstatic --noinput\n       App unchanged: reusing the cached static files"
    )


@pytest.mark.parametrize(("value", "skipped"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_disable_collectstatic_in_the_build_env(value, skipped):
    plan = _plan(DJANGO_APP, {"DISABLE_COLLECTSTATIC": value})
    assert (
        plan.lines == ["-----> Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set."]
    ) is skipped
    assert ("collectstatic" not in [s.kind for s in plan.steps]) is skipped


def test_collectstatic_disabled_by_file(tmp_path):
    src = _app(tmp_path, manage_dot_py="", _dot_heroku__collectstatic_disabled="")
    assert _plan(src).lines == [
        "-----> Skipping Django collectstatic since the file '.heroku/collectstatic_disabled' exists."
    ]


def test_config_vars_other_than_the_switch_do_not_reach_the_build():
    plan = _plan(DJANGO_APP, {"SECRET_KEY": "x"})
    assert "SECRET_KEY" not in plan.context[".labctl/Dockerfile"].decode()


# -- the Dockerfile and its context ----------------------------------------------------------------------------
def test_the_slug_dockerfile_layers_cache_like_the_buildpack(tmp_path):
    plan = _plan(_app(tmp_path, requirements_dot_txt="six\n"), ca=b"CA BUNDLE")
    steps = [s.instruction for s in plan.steps]
    labels = {const.LABEL_IMAGE: "", const.LABEL_LAB: "lab", const.LABEL_KIND: "slug", const.LABEL_APP: "web"}
    assert steps[:3] == [
        "FROM labctl/stack:lab-24",
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()),
        "COPY .labctl/build/ /tmp/labctl-build/",
    ]
    assert steps[3] == (
        "RUN python3 -m venv /app/.heroku/python && cd /tmp/labctl-build/app && "
        "PIP_CERT=/tmp/labctl-build/ca.crt /app/.heroku/python/bin/pip install --no-cache-dir "
        "--no-input --disable-pip-version-check --progress-bar off -r requirements.txt; rc=$?; "
        "cd /app; rm -rf /tmp/labctl-build; exit $rc"
    )
    assert steps[4:] == ['ENV PATH="/app/.heroku/python/bin:$PATH" VIRTUAL_ENV=/app/.heroku/python', "COPY app/ /app/"]
    assert plan.context == {
        ".labctl/Dockerfile": ("\n".join(steps) + "\n").encode(),
        ".labctl/build/ca.crt": b"CA BUNDLE",
        ".labctl/build/app/requirements.txt": b"six\n",
    }


def test_without_a_host_ca_bundle_pip_uses_its_own(tmp_path):
    plan = _plan(_app(tmp_path, requirements_dot_txt="six\n"), ca=None)
    assert not any("PIP_CERT" in s.instruction for s in plan.steps)
    assert ".labctl/build/ca.crt" not in plan.context


# -- the build's output ----------------------------------------------------------------------------------------
def _shown(plan: bp.SlugPlan, stream: list[str]) -> tuple[list[str], bp.Step | None]:
    lines: list[str] = []
    out = bp.BuildpackOutput(lines.append, plan.steps)
    for line in stream:
        out(line)
    return lines, out.current


def test_build_output_shows_steps_as_the_buildpack_does(tmp_path):
    plan = _plan(DJANGO_APP, ca=b"CA")
    n = len(plan.steps)
    pip = 1 + [s.kind for s in plan.steps].index("pip")
    stream = [
        f"Step 1/{n} : FROM labctl/stack:lab-24",
        " ---> 0123abcd",
        f"Step {pip}/{n} : RUN python3 -m venv …",
        " ---> Running in 89ab",
        "Collecting Django",
        "Successfully installed Django-6.0",
        "Removing intermediate container 89ab",
        " ---> 4567cdef",
        f"Step {n}/{n} : RUN if python -c …",
        "-----> $ python manage.py collectstatic --noinput",
        "1 static file copied to '/app/staticfiles'.",
        " !     Error: something",
        "Warning: careful",
        "Successfully built 0123",
        "Successfully tagged labctl-slug/lab-web:v1",
    ]
    lines, current = _shown(plan, stream)
    assert lines == [
        "-----> Installing requirements with pip",
        "       Collecting Django",
        "       Successfully installed Django-6.0",
        "-----> $ python manage.py collectstatic --noinput",
        "       1 static file copied to '/app/staticfiles'.",
        " !     Error: something",
        "Warning: careful",
    ]
    assert current is not None and current.kind == "collectstatic"


def test_cached_steps_say_so():
    plan = _plan(DJANGO_APP, ca=b"CA")
    n = len(plan.steps)
    pip = 1 + [s.kind for s in plan.steps].index("pip")
    lines, _ = _shown(
        plan,
        [f"Step {pip}/{n} : RUN …", " ---> Using cache", " ---> 4567", f"Step {n}/{n} : RUN …", " ---> Using cache"],
    )
    assert lines == [
        "-----> Installing requirements with pip",
        "       Dependencies unchanged: reusing the cached install",
        "-----> $ python manage.py collectstatic --noinput",
        "       App unchanged: reusing the cached static files",
    ]


def test_a_failing_collectstatic_is_named_as_the_buildpack_names_it():
    plan = _plan(DJANGO_APP)
    err = BuildFailed(
        "Build failed: django.core.exceptions.ImproperlyConfigured: Set the SECRET_KEY environment variable"
    )
    assert str(bp.build_failure(err, plan.steps[-1])) == (
        "Build failed: $ python manage.py collectstatic --noinput: "
        "django.core.exceptions.ImproperlyConfigured: Set the SECRET_KEY environment variable"
    )
    pip_step = next(s for s in plan.steps if s.kind == "pip")
    assert bp.build_failure(err, pip_step) is err and bp.build_failure(err, None) is err


# -- the engine's build stream ---------------------------------------------------------------------------------
def test_stream_lines_lose_colours_blank_lines_and_trailing_space():
    assert list(build_output.lines("\x1b[31mERROR: x\x1b[0m\n\n   \nCollecting six  \nok")) == [
        "ERROR: x",
        "Collecting six",
        "ok",
    ]


def test_the_meaningful_line_of_a_failed_build():
    pip = [
        "Step 3/6 : RUN pip install",
        "Collecting zz9",
        "ERROR: No matching distribution found for zz9",
        "The command '/bin/sh -c pip' returned a non-zero code: 1",
    ]
    assert build_output.meaningful(["Step 1/6 : FROM x", "ERROR: earlier step", *pip]) == (
        "ERROR: No matching distribution found for zz9"
    )
    tb = [
        "Step 6/6 : RUN collectstatic",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        "django.core.exceptions.ImproperlyConfigured: Set SECRET_KEY",
        " !     Error: Unable to generate",
    ]
    assert build_output.meaningful(tb) == "django.core.exceptions.ImproperlyConfigured: Set SECRET_KEY"
    assert build_output.meaningful(["Step 2/2 : RUN false", "it broke", " ---> Running in 12"]) == "it broke"
    assert build_output.meaningful([]) == ""
