"""Helpers of the integration tests: "nothing lost" checks (reliability, issue 7), lab containers by label,
steady traffic through the router, the Hypothesis settings of the fuzz tests, headless Chromium."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
from hypothesis import HealthCheck, settings

from labctl import const
from tests.conftest import Lab, wait_until

# The fuzz tests' settings; ``derandomize`` and the rest come from the profile tests/conftest.py loads (CI=true).
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- nothing lost ------------------------------------------------------------------------------------------------
def docker_client() -> docker.DockerClient:
    return docker.from_env()


def lab_containers(lab: str, kind: str, app: str | None = None, **labels: str) -> list[Any]:
    filters = [f"io.labctl.lab={lab}", f"io.labctl.kind={kind}"]
    filters += [f"io.labctl.app={app}"] if app else []
    filters += [f"io.labctl.{k}={v}" for k, v in labels.items()]
    return docker_client().containers.list(all=True, ignore_removed=True, filters={"label": filters})


def formation_of(lab: Lab, app: str) -> dict[str, int]:
    return {f["type"]: f["quantity"] for f in lab.json("ps:scale", "-a", app)}


def nothing_lost_problems(lab: Lab, want: dict[str, dict[str, int]]) -> list[str]:
    """What is wrong with "nothing lost" for these apps right now (empty list: all good)."""
    problems = []
    for app, types in want.items():
        formation = formation_of(lab, app)
        if any(formation.get(t) != q for t, q in types.items()):
            problems.append(f"{app}: formation {formation}, asked {types}")
        dynos = lab.dynos(app)
        expected = {f"{t}.{i}" for t, q in types.items() for i in range(1, q + 1)}
        formation_dynos = {n for n, d in dynos.items() if d["type"] in types}
        if formation_dynos != expected:
            problems.append(f"{app}: dynos {sorted(formation_dynos)}, expected {sorted(expected)}")
        down = [n for n in expected & formation_dynos if dynos[n]["state"] != "up"]
        if down:
            problems.append(f"{app}: not up: {[(n, dynos[n]['state']) for n in down]}")
        running = {c.id for c in lab_containers(lab.name, "dyno", app)}
        app_listed = {d["container"] for d in dynos.values() if d["container"]}
        if running - app_listed:
            problems.append(f"{app}: orphan dyno containers {sorted(c[:12] for c in running - app_listed)}")
        if app_listed - running:
            gone = sorted(c[:12] for c in app_listed - running)
            problems.append(f"{app}: ps names containers that do not exist {gone}")
        if len(running) != len(app_listed):
            problems.append(f"{app}: {len(running)} dyno containers, {len(app_listed)} in ps")
    return problems


def assert_nothing_lost(lab: Lab, want: dict[str, dict[str, int]], timeout: float = 90.0) -> None:
    """Wait for the lab to settle, then require "nothing lost" (the last problems found are the message)."""
    last: list[str] = []

    def settled() -> bool:
        nonlocal last
        last = nothing_lost_problems(lab, want)
        return not last

    try:
        wait_until(settled, timeout, 0.5, "nothing lost")
    except AssertionError:
        raise AssertionError(f"not settled after {timeout:.0f} s: {'; '.join(last)}") from None


def assert_releases_without_gaps(lab: Lab, app: str) -> list[int]:
    versions = sorted(r["version"] for r in lab.json("releases", "-a", app))
    assert versions == list(range(1, len(versions) + 1)), f"{app}: release numbers have gaps: {versions}"
    return versions


def controller_pid(lab: Lab) -> int | None:
    r = lab.cli("status", "--json")
    return json.loads(r.out)["controller_pid"] if r.code == 0 else None


def orphan_problems(lab: Lab, spaces: list[str] = ()) -> list[str]:
    """Docker objects and faults of the lab that its state does not account for (empty list: none).

    One running common router and one per space; every container of the lab running; one running sandbox per
    (instance, app), on an instance ``labctl instances`` lists; the lab's networks are the common one and one
    per space; no fault rule is left on any instance. Dyno containers are checked against ``ps`` by
    ``nothing_lost_problems``.
    """
    problems = []
    routers = lab_containers(lab.name, const.KIND_ROUTER)
    got = sorted((c.labels.get(const.LABEL_SPACE, ""), c.status) for c in routers)
    if got != sorted([("", "running")] + [(s, "running") for s in spaces]):  # the common one, one per space
        problems.append(f"router containers: {[(c.name, c.status) for c in routers]}")
    everything = docker_client().containers.list(
        all=True, ignore_removed=True, filters={"label": f"{const.LABEL_LAB}={lab.name}"}
    )
    stopped = [(c.name, c.status) for c in everything if c.status != "running"]
    if stopped:
        problems.append(f"containers of the lab not running: {stopped}")
    instances = {i["id"]: i for i in lab.json("instances")}
    seen: Counter[tuple[str, str]] = Counter()
    for sb in lab_containers(lab.name, const.KIND_SANDBOX):
        inst, app = sb.labels.get(const.LABEL_INSTANCE), sb.labels.get(const.LABEL_APP)
        seen[(inst, app)] += 1
        if inst not in instances:
            problems.append(f"sandbox {sb.name} on an instance `labctl instances` does not list")
    if any(n > 1 for n in seen.values()):
        problems.append(f"more than one sandbox for {[k for k, n in seen.items() if n > 1]}")
    nets = sorted(n.name for n in docker_client().networks.list(filters={"label": f"{const.LABEL_LAB}={lab.name}"}))
    want = sorted([f"labctl-{lab.name}-common"] + [f"labctl-{lab.name}-space-{s}" for s in spaces])
    if nets != want:
        problems.append(f"networks {nets}, expected {want}")
    faulty = {iid: i["faults"] for iid, i in instances.items() if i["faults"]}
    if faulty or lab.json("faults"):
        problems.append(f"fault rules left: {faulty or lab.json('faults')}")
    return problems


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def ignore_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the controller is killed under this call on purpose
        pass


# -- traffic -------------------------------------------------------------------------------------------------
@dataclass
class Traffic:
    """Steady requests through the router from a background thread (bounded in count and time)."""

    lab: Lab
    app: str
    rps: float = 20.0
    max_seconds: float = 60.0
    records: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        started = time.time()
        for _ in range(int(self.rps * self.max_seconds)):
            if self._stop.is_set() or time.time() - started > self.max_seconds:
                return
            t = time.time()
            rec = {"t": t, "status": 0, "release": None, "dyno": None, "pid": None, "greeting": None}
            try:
                # A new connection per request: a keep-alive connection that nginx closes at a reload
                # while the client reuses it would count as a failure of the client, not of the platform.
                r = session.get(
                    f"http://127.0.0.1:{self.lab.port}/",
                    timeout=5,
                    headers={"Host": f"{self.app}.localhost", "Connection": "close"},
                )
                rec["status"] = r.status_code
                if r.status_code == 200:
                    body = r.json()
                    rec.update(
                        release=body["release"],
                        dyno=body["dyno"],
                        pid=(body["instance"], body["port"]),
                        greeting=body["greeting"],
                    )
            except requests.RequestException as err:
                rec["error"] = f"{type(err).__name__}: {err}"[:300]
            rec["took"] = time.time() - t
            self.records.append(rec)
            self._stop.wait(max(0.0, 1 / self.rps - (time.time() - t)))

    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != 200]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def chromium(profile: Path, *args: str) -> Any:
    """Debian's headless Chromium through its driver (selenium), with a profile of its own; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "apt-get install chromium chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver
