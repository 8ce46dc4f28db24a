"""Shared fixtures. Integration tests (marker ``docker``) run against the real engine and clean up by label."""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, settings

# Hypothesis in CI (CI=true): the same examples on every run (derandomize), a fixed budget, no deadline (a call
# into the lab's API can take seconds on a loaded machine) and no example database carried between runs. Tests
# that set ``max_examples`` themselves keep it; the rest inherit from the profile loaded here, before any test
# module builds its own ``settings``.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_APP = REPO / "images" / "sample-app"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli(*args: str, lab: str | None = None) -> CliResult:
    """Run the labctl CLI in-process (same code path as the console script)."""
    from labctl.main import main

    argv = list(args)
    if lab and "--lab" not in argv:
        argv[1:1] = ["--lab", lab]  # right after the command name: `run` takes everything after its command
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return CliResult(code, out.getvalue(), err.getvalue())


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = ""):
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})")


@dataclass
class Lab:
    name: str
    port: int

    def cli(self, *args: str) -> CliResult:
        return cli(*args, lab=self.name)

    def ok(self, *args: str) -> str:
        r = self.cli(*args)
        assert r.code == 0, f"labctl {' '.join(args)} failed ({r.code}): {r.err}{r.out}"
        return r.out

    def json(self, *args: str):
        import json

        return json.loads(self.ok(*args, "--json"))

    def get(self, app: str, path: str = "/", timeout: float = 10.0, rid: str | None = None) -> requests.Response:
        headers = {"Host": f"{app}.localhost", **({"X-Request-Id": rid} if rid else {})}
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=timeout)

    def router_line(self, app: str, rid: str, timeout: float = 10.0) -> dict[str, str]:
        """The fields of the app's ``heroku[router]`` line for request ``rid`` (with ``line``: the whole text)."""
        from labctl.client import Client
        from labctl.engine.router_log import parse_router_fields

        def find():
            rows = Client(self.name).log_lines(app, n=5000, dyno="router", source="heroku")
            msg = next((r["msg"] for r in rows if f"request_id={rid} " in r["msg"]), None)
            return {**parse_router_fields(msg), "line": msg} if msg else None

        return wait_until(find, timeout, 0.1, f"the router line of {rid}")

    def answer(self, app: str, path: str = "/", timeout: float = 10.0) -> tuple[requests.Response, dict[str, str]]:
        """A GET and its router line's fields (``code``, ``dyno``, …): the router names neither to the client."""
        import uuid

        rid = f"labctl-test-{uuid.uuid4().hex}"
        r = self.get(app, path, timeout, rid)
        return r, self.router_line(app, rid)

    def dynos(self, app: str) -> dict[str, dict]:
        return {d["name"]: d for d in self.json("ps", "-a", app)}

    def wait_up(self, app: str, names: list[str], timeout: float = 60.0) -> dict[str, dict]:
        def check():
            d = self.dynos(app)
            return d if all(n in d and d[n]["state"] == "up" for n in names) and len(d) >= len(names) else None

        return wait_until(check, timeout, 0.2, f"{names} up on {app}")

    def logs(self, app: str) -> str:
        return self.ok("logs", "-a", app, "-n", "1500")


@pytest.fixture(scope="session")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("state")
    old = os.environ.get("LABCTL_STATE_DIR")
    os.environ["LABCTL_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("LABCTL_STATE_DIR", None)
    else:
        os.environ["LABCTL_STATE_DIR"] = old


def _leftovers(name: str) -> list[str]:
    import docker

    client = docker.from_env()
    label = f"io.labctl.lab={name}"
    found = [c.name for c in client.containers.list(all=True, ignore_removed=True, filters={"label": label})]
    found += [n.name for n in client.networks.list(filters={"label": label})]
    found += [i.id for i in client.images.list(all=True, filters={"label": label})]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/labctl.{name}.*")]  # instances' parent cgroups
    return found


def start_lab(name: str, timescale: float = 0.05, provision_time: float = 0) -> Lab:
    """``labctl up`` a lab (time scale 0.05 unless told, a free HTTP port) in the current state directory and
    engine. New instances are ready at once unless ``provision_time`` says otherwise (as in the bench): the
    tests of provisioning ask for it."""
    import json

    r = cli(
        "up",
        "--timescale",
        str(timescale),
        "--provision-time",
        str(provision_time),
        "--http-port",
        "0",
        "--json",
        lab=name,
    )
    assert r.code == 0, r.err + r.out
    port = json.loads(r.out)["router"]["port"]
    if not port:  # never send a request to 127.0.0.1:0 (urllib3 reads it as :80)
        cli("down", lab=name)
        pytest.fail(f"up --http-port 0 answered port {port!r}: {r.out}")
    return Lab(name, port)


@contextlib.contextmanager
def running_lab(down_must_succeed: bool = True, timescale: float = 0.05, provision_time: float = 0) -> Iterator[Lab]:
    """A lab of a new random name, removed at the end; nothing labelled with it may remain.

    ``down_must_succeed=False`` for tests that take the lab down themselves (a second ``down`` may then fail)."""
    name = f"t{uuid.uuid4().hex[:8]}"
    lab = start_lab(name, timescale, provision_time)
    try:
        yield lab
    finally:
        down = cli("down", lab=name)
        if down_must_succeed:
            assert down.code == 0, down.err
        assert _leftovers(name) == []


@pytest.fixture(scope="session")
def lab(lab_state: Path) -> Iterator[Lab]:
    """One lab for the session (time scale 0.05), removed at the end; nothing of it may remain."""
    with running_lab() as shared:
        yield shared


@pytest.fixture
def fresh_lab(lab_state: Path) -> Iterator[Lab]:
    """A lab of its own for tests that break things (kill -9 of the controller, down)."""
    with running_lab(down_must_succeed=False) as own:
        yield own


@pytest.fixture
def app_name() -> str:
    return f"a{uuid.uuid4().hex[:8]}"


def deploy_sample(lab: Lab, name: str, web: int = 1, *, space: str | None = None) -> str:
    """``apps:create`` (in ``space`` if given), deploy the sample app, scale ``web`` and wait until those are up."""
    lab.ok("apps:create", name, *(["--space", space] if space else []))
    lab.ok("deploy", str(SAMPLE_APP), "-a", name)
    if web != 1:
        lab.ok("ps:scale", f"web={web}", "-a", name)
    lab.wait_up(name, [f"web.{i}" for i in range(1, web + 1)], timeout=90)
    return name


@pytest.fixture
def space_app(lab: Lab, app_name: str) -> Iterator[str]:
    """The sample app with web=2 in a Private Space of its own (both removed afterwards)."""
    space = f"s{app_name[1:]}"
    lab.ok("spaces:create", space)
    deploy_sample(lab, app_name, web=2, space=space)
    yield app_name
    lab.ok("apps:destroy", "-a", app_name)
    lab.ok("spaces:destroy", space)


@pytest.fixture
def cr_app(lab: Lab, app_name: str) -> Iterator[str]:
    """The sample app with web=2 in the Common Runtime (removed afterwards)."""
    deploy_sample(lab, app_name, web=2)
    yield app_name
    lab.ok("apps:destroy", "-a", app_name)
