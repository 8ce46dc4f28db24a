"""Incident drills (docs/drills.md): ``labctl drill`` injects one incident from the pool without saying which,
``drill:answer`` records what the learner names, ``drill:status`` shows the traffic, ``drill:end`` grades and
writes the report; ``--solve`` does the learner's part with the known remedy.

State lives in the lab's state folder, ``drill/``: ``drill.json`` (the drill; the incident sealed until the end),
``commands.jsonl`` (every labctl command typed for this lab meanwhile, written by ``labctl.cli.drill_log``), and
what the background process ``drill_traffic`` measures (``traffic.jsonl``, ``timeline.jsonl``, ``faults.jsonl``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.cli.drill_log import ACTIVE, COMMANDS
from labctl.errors import InvalidInput, LabError
from labctl.scenario import drill_pool as pool
from labctl.scenario import health

SPACE = "drills"
RPS = 10.0
PATH = "/work?ms=10"  # a fixed amount of CPU per request: a starved instance shows as slow answers
WARMUP_S = 4.0
SETUP_TIMEOUT = 120.0
SOLVE_SYMPTOM_TIMEOUT = 45.0
SOLVE_MITIGATE_TIMEOUT = 90.0
MAX_SEED = 1_000_000


def folder(lab: str) -> Path:
    from labctl.labdir import LabDir

    return LabDir(lab).path / "drill"


def _read(lab: str) -> dict[str, Any] | None:
    try:
        return json.loads((folder(lab) / "drill.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(lab: str, st: dict[str, Any]) -> None:
    path = folder(lab) / "drill.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(st, indent=1), encoding="utf-8")
    tmp.replace(path)


def _seal(obj: dict[str, Any]) -> str:
    """Not a secret, just out of sight: a learner who opens drill.json does not read the answer by accident."""
    return base64.b64encode(json.dumps(obj).encode()).decode()


def _unseal(text: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(text)))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def cli(lab: str, argv: list[str], solve: bool = False) -> tuple[int, str]:
    """A labctl command in ``lab``, in-process, output captured: (exit code, output)."""
    from labctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("LABCTL_DRILL_SOLVE")
    if solve:
        os.environ["LABCTL_DRILL_SOLVE"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([argv[0], "--lab", lab, *argv[1:]])
    finally:
        if solve and old is None:
            os.environ.pop("LABCTL_DRILL_SOLVE", None)
    return code, out.getvalue() + err.getvalue()


def _must(lab: str, argv: list[str]) -> str:
    code, output = cli(lab, argv)
    if code != 0:
        last = (output.strip().splitlines() or [f"exit {code}"])[-1].strip(" ▸")
        raise LabError(f"drill setup failed: labctl {' '.join(argv)}: {last}")
    return output


def running(lab: str) -> dict[str, Any] | None:
    st = _read(lab)
    return st if st is not None and st.get("status") != "ended" else None


def _on(lab: str) -> dict[str, Any]:
    """The running drill whose incident is on, or one clear error."""
    st = running(lab)
    if st is None:
        raise LabError(f"No drill is running in lab {lab}: start one with `labctl drill`")
    if "sealed" not in st:
        raise LabError(f"Drill {st['id']} is still starting (or its start was cut short: `labctl drill:end` ends it)")
    return st


# -- start --------------------------------------------------------------------------------------------------
def start(
    lab: str, *, app: str | None, seed: int | None, progress: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    from labctl.client import Client

    if seed is not None and not 0 <= seed < MAX_SEED:
        raise InvalidInput(f"--seed must be from 0 to {MAX_SEED - 1}, not {seed}")
    api = Client(lab, timeout=30)
    status = api.lab_status()  # the lab is up, or one clear error
    st = running(lab)
    if st is not None:
        raise LabError(f"A drill is already running in lab {lab} (⬢ {st['app']}): `labctl drill:end` ends it first")
    seed = seed if seed is not None else secrets.randbelow(MAX_SEED)
    drill_id = f"d-{secrets.token_hex(3)}"
    created = False
    if app is None:
        app, created = f"drill-{drill_id[2:]}", True
        try:
            _setup_app(lab, api, app, progress)
        except BaseException:
            with contextlib.suppress(Exception):
                cli(lab, ["apps:destroy", app, "--confirm", app])
            raise
    info = api.app_info(app)
    space = (info.get("space") or {}).get("name") if isinstance(info.get("space"), dict) else info.get("space")
    webs = [d["name"] for d in api.dynos(app) if d["name"].startswith("web.")]
    if not webs:
        raise InvalidInput(f"⬢ {app} has no web dynos: a drill sends traffic through the router (ps:scale web=2)")
    chosen = pool.choose(seed, webs)
    timescale = float(status.get("timescale", 1.0))
    router = space or "common"
    d = folder(lab)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    from labctl.traffic import default_timeout

    t0 = time.time()
    st = {
        "id": drill_id,
        "lab": lab,
        "app": app,
        "created_app": created,
        "space": space,
        "seed": seed,
        "status": "warming up",
        "started_at": t0,
        "rps": RPS,
        "path": PATH,
        "timeout": default_timeout(timescale),
        "timescale": timescale,
        "router_port": int(status["router"]["port"]),
    }
    _write(lab, st)
    worker = subprocess.Popen(
        [sys.executable, "-m", "labctl.scenario.drill_traffic", lab],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(d / "worker.log", "wb"),  # noqa: SIM115 - the child owns it
        start_new_session=True,
    )
    st["worker_pid"] = worker.pid
    _write(lab, st)
    try:
        _inject(lab, api, st, chosen, webs, router, timescale, progress)
    except BaseException:  # Ctrl-C or a failure before the incident is on: nothing of the drill stays
        _abandon(lab, st)
        raise
    return st


def _inject(
    lab: str,
    api: Any,
    st: dict[str, Any],
    chosen: pool.Chosen,
    webs: list[str],
    router: str,
    timescale: float,
    progress: Callable[[str], None],
) -> None:
    """Measure the healthy traffic, make the incident, and from then on log the lab's commands."""
    d, app, t0 = folder(lab), st["app"], st["started_at"]
    progress(f"Traffic on ⬢ {app}: {RPS:g} req/s on {PATH}; measuring the healthy state for {WARMUP_S:g} s…")
    time.sleep(WARMUP_S)
    base = [r for r in _jsonl(d / "traffic.jsonl") if r.get("ts", 0) >= t0 + 1.0]  # past the connections' setup
    thr = health.thresholds(base)
    dynos = {x["name"]: x for x in api.dynos(app)}
    releases = api.releases(app)
    facts = {
        "instance": dynos[chosen.dyno]["instance"],
        "router": router,
        "dynos": sorted(webs),
        "release": f"v{releases[0]['version']}" if releases else None,
    }
    argv = pool.inject(chosen, app, router, timescale, thr.p95_ms)
    code, output = cli(lab, argv)
    injected_at = time.time()
    if code != 0:
        last = (output.strip().splitlines() or [f"exit {code}"])[-1].strip(" ▸")
        raise LabError(f"could not start the incident: {last}")
    if chosen.incident.level == pool.RELEASE:
        rel = api.releases(app)
        facts["release"] = f"v{rel[0]['version']}" if rel else None
    st.update(
        status="running",
        injected_at=injected_at,
        thresholds=thr.to_json(),
        sealed=_seal({"name": chosen.incident.name, "dyno": chosen.dyno, "facts": facts, "command": ["labctl", *argv]}),
    )
    _write(lab, st)
    (d.parent / COMMANDS).touch()
    (d.parent / ACTIVE).write_text(st["id"])  # from now on, every labctl command for this lab is logged


def _abandon(lab: str, st: dict[str, Any]) -> None:
    """A drill that never got its incident: stop its traffic, remove the app it created."""
    st["status"] = "ended"
    with contextlib.suppress(OSError):
        _write(lab, st)
    _stop_worker(lab, st)
    if st.get("created_app"):
        with contextlib.suppress(Exception):
            cli(lab, ["apps:destroy", st["app"], "--confirm", st["app"]])


def _setup_app(lab: str, api: Any, app: str, progress: Callable[[str], None]) -> None:
    from labctl.scenario.model import SAMPLE_APP_DIR

    if SPACE not in {s.get("name") for s in api.spaces()}:
        progress(f"Creating the Private Space {SPACE}…")
        _must(lab, ["spaces:create", SPACE])
    progress(f"Setting up ⬢ {app} in {SPACE}: the sample app, 2 web dynos…")
    _must(lab, ["apps:create", app, "--space", SPACE])
    _must(lab, ["deploy", str(SAMPLE_APP_DIR), "-a", app])
    _must(lab, ["ps:scale", "web=2", "-a", app])
    _wait(lambda: _formation_up(lab, api, app), SETUP_TIMEOUT, f"⬢ {app}'s two web dynos up and served")


def _formation_up(lab: str, api: Any, app: str) -> bool:
    import requests

    dynos = [d for d in api.dynos(app) if d["name"].startswith("web.")]
    if len(dynos) < 2 or any(d["state"] != "up" for d in dynos):
        return False
    port = int(api.lab_status()["router"]["port"])
    s = requests.Session()
    s.trust_env = False
    try:
        return s.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{app}.localhost"}, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise LabError(f"drill: timed out waiting for {what} ({timeout:.0f} s)")
        time.sleep(0.5)


# -- answer, status --------------------------------------------------------------------------------------------
def answer(
    lab: str, *, kind: str, dyno: str | None, instance: str | None, router: str | None, release: str | None
) -> dict[str, Any]:
    st = _on(lab)
    if kind not in pool.KINDS:
        raise InvalidInput(f"Unknown --kind {kind!r}: one of {', '.join(pool.KINDS)}")
    given = {k: v for k, v in (("dyno", dyno), ("instance", instance), ("router", router), ("release", release)) if v}
    if len(given) != 1:
        raise InvalidInput("Name exactly one place: --dyno web.N, --instance ID, --router SPACE|common or --release vN")
    if st.get("answer"):
        raise LabError(f"You already answered ({st['answer']['line']}); one answer counts")
    line = f"--kind {kind} " + " ".join(f"--{k} {v}" for k, v in given.items())
    st["answer"] = {"ts": time.time(), "kind": kind, **given, "line": line}
    _write(lab, st)
    return {"answered_after_s": round(st["answer"]["ts"] - st["injected_at"], 1), "answer": st["answer"]}


def status(lab: str) -> dict[str, Any]:
    st = _on(lab)
    now = time.time()
    recs = [r for r in _jsonl(folder(lab) / "traffic.jsonl") if r["ts"] >= now - 10 - st["timeout"]]
    thr = health.Thresholds(st["thresholds"]["p95_ms"], st["thresholds"]["max_error_rate"])
    rel = [{**r, "t": r["ts"] - st["started_at"]} for r in recs]
    t_now = now - st["started_at"]
    ws = health.windows(rel, t_now - health.WINDOW_S - 1, t_now, st["rps"], thr)
    last = ws[-1] if ws else None
    return {
        "id": st["id"],
        "app": st["app"],
        "seed": st["seed"],
        "elapsed_s": round(now - st["injected_at"], 1),
        "answered": bool(st.get("answer")),
        "commands": len(_jsonl(folder(lab).parent / COMMANDS)),
        "last_window": last.to_json() if last else None,
        "healthy_now": bool(last and last.healthy),
        "thresholds": st["thresholds"],
    }


# -- end: grading and report -----------------------------------------------------------------------------------
def _stop_worker(lab: str, st: dict[str, Any]) -> None:
    pid = st.get("worker_pid")
    deadline = time.monotonic() + st.get("timeout", 10) + 5
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def end(lab: str, report_dir: Path | None, *, keep_app: bool = False, asked_at: float | None = None) -> dict[str, Any]:
    """``asked_at``: when the learner typed drill:end (its process's start): the traffic is judged up to then."""
    from labctl.scenario import drill_report

    st = running(lab)
    if st is None:
        raise LabError(f"No drill is running in lab {lab}: start one with `labctl drill`")
    d = folder(lab)
    if "sealed" not in st:  # its start was cut short (the process killed) before the incident was on
        _abandon(lab, st)
        raise LabError(f"Drill {st['id']} never got its incident (its start was interrupted): it is ended now")
    with contextlib.suppress(OSError):
        (d.parent / ACTIVE).unlink()
    st["status"] = "ended"
    st["ended_at"] = time.time()
    if asked_at is not None and st["injected_at"] < asked_at < st["ended_at"]:
        st["ended_at"] = asked_at
    _write(lab, st)
    _stop_worker(lab, st)
    try:
        result = grade(st, d)
        directory = report_dir or Path("reports") / f"drill-{st['id']}-{time.strftime('%Y%m%d-%H%M%S')}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        result["report"] = str(drill_report.write(result, directory))
    finally:  # the lab is given back even if the report cannot be written
        cleanup = _cleanup(lab, st, keep_app)
    result["cleanup"] = cleanup
    return result


def _cleanup(lab: str, st: dict[str, Any], keep_app: bool) -> list[str]:
    """Take back what the drill left: its router fault, its instance fault, the app it created."""
    secret = _unseal(st["sealed"])
    done = []
    inc = next(i for i in pool.POOL if i.name == secret["name"])
    if inc.level == pool.ROUTER:
        code, _ = cli(lab, ["faults:clear", "--router", secret["facts"]["router"]])
        done.append(f"faults:clear --router {secret['facts']['router']} (exit {code})")
    if inc.level == pool.INSTANCE:
        code, _ = cli(lab, ["faults:clear", "--instance", secret["facts"]["instance"]])
        done.append(f"faults:clear --instance {secret['facts']['instance']} (exit {code})")
    if st.get("created_app") and not keep_app:
        code, _ = cli(lab, ["apps:destroy", st["app"], "--confirm", st["app"]])
        done.append(f"apps:destroy {st['app']} (exit {code})")
    return done


def grade(st: dict[str, Any], d: Path) -> dict[str, Any]:
    """Everything ``drill:end`` reports, from the state and the files of ``d``."""
    t0 = st["started_at"]
    secret = _unseal(st["sealed"])
    inc = next(i for i in pool.POOL if i.name == secret["name"])
    chosen = pool.Chosen(inc, secret["dyno"])
    facts = secret["facts"]
    private = st.get("space") is not None
    inj = st["injected_at"] - t0
    until = st.get("ended_at", time.time()) - t0
    recs = sorted(({**r, "t": round(r["ts"] - t0, 4)} for r in _jsonl(d / "traffic.jsonl")), key=lambda r: r["t"])
    thr = health.Thresholds(st["thresholds"]["p95_ms"], st["thresholds"]["max_error_rate"])
    ws = health.windows(recs, inj, until, st["rps"], thr, formation=_formation(inc, d, t0))
    trouble = health.first_unhealthy(ws)
    mitigated = health.recovered_at(ws)
    commands = []
    for c in _jsonl(d.parent / COMMANDS):
        c = {**c, "t": round(c["ts"] - t0, 2)}
        commands.append(c)
    ans = st.get("answer")
    answer_j = pool.judge_answer(chosen, ans, facts)
    remedy = pool.deciding_remedy(commands, inj, mitigated, health.WINDOW_S)
    remedy_j = pool.judge_remedy(chosen, remedy, private)
    verdict = answer_j["correct"] and mitigated is not None and remedy_j["fits"]
    return {
        "drill": st["id"],
        "lab": st["lab"],
        "app": st["app"],
        "space": st.get("space"),
        "seed": st["seed"],
        "solved_by": "solve" if any(c.get("by") == "solve" for c in commands) else "learner",
        "status": "pass" if verdict else "fail",
        "incident": {
            "name": inc.name,
            "kind": inc.kind,
            "level": inc.level,
            "summary": inc.summary,
            "dyno": chosen.dyno if inc.level == pool.INSTANCE else None,
            "facts": facts,
            "command": " ".join(secret["command"]),
            "t": round(inj, 2),
            "fits": list(inc.fits(private)),
        },
        "started_at": t0,
        "duration_s": round(until, 2),
        "answer": {
            **(ans or {}),
            **answer_j,
            "t": round(ans["ts"] - t0, 2) if ans else None,
            "time_to_detect_s": round(ans["ts"] - st["injected_at"], 1) if ans else None,
        },
        "mitigation": {
            "trouble_at": trouble,
            "mitigated_at": mitigated,
            "time_to_mitigate_s": round(mitigated - inj, 1) if mitigated is not None else None,
            "thresholds": thr.to_json(),
        },
        "remedy": {**(remedy or {}), **remedy_j},
        "commands": [
            {"t": c["t"], "line": "labctl " + " ".join(c["argv"]), "code": c.get("code"), "by": c.get("by", "learner")}
            for c in commands
        ],
        "traffic": {"rps": st["rps"], "path": st["path"], "records": recs},
        "timeline": [{**s, "t": round(s["ts"] - t0, 3)} for s in _jsonl(d / "timeline.jsonl")],
        "faults_seen": _fault_spans(_jsonl(d / "faults.jsonl"), t0),
    }


def _formation(inc: pool.Incident, d: Path, t0: float) -> list[health.Formation] | None:
    """The web dynos' states for a release incident (None for the others: their remedy may replace a dyno, and
    its new start is not trouble). In a Private Space a release that never boots stalls its rolling deploy at the
    first batch and the other dynos keep serving the old release (heroku-reference §4.5): the traffic alone may
    never show a wrong port, the crashed dyno does."""
    if inc.level != pool.RELEASE:
        return None
    return health.formation(_jsonl(d / "timeline.jsonl"), t0)


def _fault_spans(rows: list[dict[str, Any]], t0: float) -> list[dict[str, Any]]:
    from labctl.scenario.streams import FaultSpans

    spans = FaultSpans()
    for row in rows:
        spans.observe(round(row["ts"] - t0, 3), row.get("faults") or [])
    return spans.to_json()


# -- solve ------------------------------------------------------------------------------------------------------
def solve(lab: str, st: dict[str, Any], progress: Callable[[str], None] = lambda s: None) -> None:
    """The learner's part with the known answer and remedy: wait for the symptom, answer, fix, wait for health."""
    secret = _unseal(st["sealed"])
    inc = next(i for i in pool.POOL if i.name == secret["name"])
    chosen = pool.Chosen(inc, secret["dyno"])
    facts = secret["facts"]
    thr = health.Thresholds(st["thresholds"]["p95_ms"], st["thresholds"]["max_error_rate"])
    d = folder(lab)
    t0, inj = st["started_at"], st["injected_at"] - st["started_at"]

    def ws() -> list[health.Window]:
        recs = [{**r, "t": r["ts"] - t0} for r in _jsonl(d / "traffic.jsonl")]
        return health.windows(recs, inj, time.time() - t0, st["rps"], thr, formation=_formation(inc, d, t0))

    progress("--solve: waiting for the incident to show in the traffic…")
    _wait(lambda: health.first_unhealthy(ws()) is not None, SOLVE_SYMPTOM_TIMEOUT, "the incident to show")
    where: dict[str, Any] = {"dyno": None, "instance": None, "router": None, "release": None}
    if inc.level == pool.INSTANCE:
        where["dyno"] = chosen.dyno
    elif inc.level == pool.ROUTER:
        where["router"] = facts["router"]
    else:
        where["release"] = facts["release"]
    answer(lab, kind=inc.kind, **where)
    remedy = pool.solution(chosen, st["app"], facts["router"], st.get("space") is not None)
    progress(f"--solve: answered {inc.kind}; remedy: labctl {' '.join(remedy)}")
    code, output = cli(lab, remedy, solve=True)
    if code != 0:
        raise LabError(f"--solve: labctl {' '.join(remedy)} failed: {output.strip()}")
    _wait(lambda: health.recovered_at(ws()) is not None, SOLVE_MITIGATE_TIMEOUT, "the traffic to be healthy again")
