"""Drills without Docker: the pool and its seeds, the learner's commands as remedies, the grading, the drill log,
the health windows (docs/drills.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.cli import drill_log
from labctl.scenario import drill, health
from labctl.scenario import drill_pool as pool

WEBS = ["web.1", "web.2"]


def test_same_seed_same_incident_and_dyno():
    for seed in range(50):
        a, b = pool.choose(seed, WEBS), pool.choose(seed, list(reversed(WEBS)))
        assert a == b
    drawn = {pool.choose(seed, WEBS).incident.name for seed in range(200)}
    assert drawn == set(pool.NAMES)  # every drill of the pool comes up
    assert {pool.choose(s, WEBS).dyno for s in range(200) if pool.choose(s, WEBS).incident.level == "instance"} == {
        "web.1",
        "web.2",
    }


def test_seed_for_finds_each_incident():
    for name in pool.NAMES:
        assert pool.choose(pool.seed_for(name), WEBS).incident.name == name


def test_inject_and_solution_commands():
    c = pool.Chosen(pool.POOL[0], "web.2")  # instance-cpu
    assert pool.inject(c, "shop", "drills", 0.1) == ["faults:add", "cpu", "--cpus", "0.05", "-d", "web.2", "-a", "shop"]
    assert pool.solution(c, "shop", "drills", private_space=True) == ["ps:stop", "-d", "web.2", "-a", "shop"]
    assert pool.solution(c, "shop", "common", private_space=False)[0] == "ps:restart"
    router = pool.Chosen(next(i for i in pool.POOL if i.name == "router-loss"), "web.1")
    assert pool.inject(router, "shop", "drills", 0.1)[-2:] == ["--router", "drills"]
    assert pool.solution(router, "shop", "drills", True) == ["faults:clear", "--router", "drills"]
    slow = pool.Chosen(next(i for i in pool.POOL if i.name == "slow-endpoint"), "web.1")
    assert pool.inject(slow, "shop", "drills", 0.1) == ["config:set", "SLOW_MS=6000", "-a", "shop"]  # 2 × 3 s
    lat = pool.Chosen(next(i for i in pool.POOL if i.name == "instance-latency"), "web.1")
    ms = int(pool.inject(lat, "shop", "drills", 0.05)[3])
    assert 600 <= ms < 1500  # seen over the healthy bar, under the router's 1.5 s first-byte timeout at 0.05


@pytest.mark.parametrize(
    ("argv", "remedy", "extra"),
    [
        (["ps:restart", "-d", "web.1", "-a", "x"], "restart", {"dyno": "web.1"}),
        (["restart", "web.1", "-a", "x"], "restart", {"dyno": "web.1"}),
        (["dyno:kill", "web", "-a", "x"], "stop", {"type": "web", "dyno": None}),
        (["ps:stop", "--dyno-name=web.2", "-a", "x"], "stop", {"dyno": "web.2"}),
        (["rollback", "-a", "x"], "rollback", {}),
        (["config:unset", "CRASH_AFTER", "-a", "x"], "config", {}),
        (["faults:clear", "--router", "drills"], "router-clear", {"router": "drills"}),
        (["faults:clear", "-d", "web.1", "-a", "x"], "fault-clear", {}),
        (["ps:scale", "web=3", "-a", "x"], "scale", {}),
    ],
)
def test_classify(argv, remedy, extra):
    got = pool.classify(argv)
    assert got is not None and got["remedy"] == remedy
    for k, v in extra.items():
        assert got[k] == v


def test_classify_ignores_looking():
    for argv in (["ps", "-a", "x"], ["logs", "-a", "x"], ["faults"], ["drill:answer", "--kind", "cpu"], []):
        assert pool.classify(argv) is None


def _by(name: str, dyno: str = "web.1") -> pool.Chosen:
    return pool.Chosen(next(i for i in pool.POOL if i.name == name), dyno)


def test_restart_for_an_instance_fault_in_a_private_space_does_not_fit():
    j = pool.judge_remedy(_by("instance-cpu"), pool.classify(["ps:restart", "-d", "web.1"]), private_space=True)
    assert j["fits"] is False and "keeps the dyno on its sick instance" in j["why"]
    assert pool.judge_remedy(_by("instance-cpu"), pool.classify(["ps:stop", "web.1"]), True)["fits"] is True
    wrong_dyno = pool.judge_remedy(_by("instance-cpu"), pool.classify(["ps:stop", "web.2"]), True)
    assert wrong_dyno["fits"] is False and "did not reach" in wrong_dyno["why"]
    # In the Common Runtime, a restart lands on another host: it fits there.
    assert pool.judge_remedy(_by("instance-cpu"), pool.classify(["ps:restart", "web.1"]), False)["fits"] is True


def test_restart_of_a_crash_loop_is_not_a_rollback():
    c = _by("crash-loop")
    assert pool.judge_remedy(c, pool.classify(["ps:restart", "-a", "x"]), True)["fits"] is False
    assert pool.judge_remedy(c, pool.classify(["releases:rollback", "-a", "x"]), True)["fits"] is True
    assert pool.judge_remedy(c, pool.classify(["config:unset", "CRASH_AFTER"]), True)["fits"] is True
    assert pool.judge_remedy(c, None, True) == {"fits": False, "why": "no remedy was applied"}
    assert pool.judge_remedy(_by("router-loss"), pool.classify(["ps:stop", "web.1"]), True)["fits"] is False


FACTS = {"instance": "i-sick", "router": "drills", "dynos": WEBS, "release": "v3"}


def test_answers():
    c = _by("instance-loss", "web.2")
    assert pool.judge_answer(c, {"kind": "loss", "dyno": "web.2"}, FACTS)["correct"] is True
    assert pool.judge_answer(c, {"kind": "loss", "instance": "i-sick"}, FACTS)["correct"] is True
    assert pool.judge_answer(c, {"kind": "loss", "dyno": "web.1"}, FACTS)["correct"] is False
    assert pool.judge_answer(c, {"kind": "cpu", "dyno": "web.2"}, FACTS)["correct"] is False
    assert pool.judge_answer(c, {"kind": "loss", "router": "drills"}, FACTS)["correct"] is False
    assert pool.judge_answer(c, None, FACTS)["correct"] is False
    r = _by("router-loss")
    assert pool.judge_answer(r, {"kind": "loss", "router": "drills"}, FACTS)["correct"] is True
    assert pool.judge_answer(r, {"kind": "loss", "dyno": "web.1"}, FACTS)["correct"] is False
    w = _by("wrong-port")
    assert pool.judge_answer(w, {"kind": "port", "release": "v3"}, FACTS)["correct"] is True
    assert pool.judge_answer(w, {"kind": "port", "dyno": "web.2"}, FACTS)["correct"] is True
    assert pool.judge_answer(w, {"kind": "crash", "release": "v3"}, FACTS)["correct"] is False


def test_deciding_remedy_is_the_last_before_recovery():
    cmds = [
        {"t": 1.0, "argv": ["ps:restart", "web.1"], "code": 0},  # before the incident: not counted
        {"t": 12.0, "argv": ["ps:restart", "web.1"], "code": 0},
        {"t": 14.0, "argv": ["ps", "-a", "x"], "code": 0},
        {"t": 15.0, "argv": ["ps:stop", "web.9"], "code": 1},  # failed: not counted
        {"t": 16.0, "argv": ["ps:stop", "web.1"], "code": 0},
        {"t": 40.0, "argv": ["ps:restart", "web.1"], "code": 0},  # after it got well
    ]
    got = pool.deciding_remedy(cmds, injected_at=10.0, mitigated_at=18.0, slack=3.0)
    assert got is not None and got["remedy"] == "stop" and got["t"] == 16.0
    last = pool.deciding_remedy(cmds, injected_at=10.0, mitigated_at=None, slack=3.0)
    assert last is not None and last["t"] == 40.0


def _recs(t0: float, t1: float, rps: float, latency: float, error: bool = False) -> list[dict]:
    n = int((t1 - t0) * rps)
    return [
        {"t": t0 + i / rps, "status": 503 if error else 200, "latency_ms": latency, "code": "H12" if error else None}
        for i in range(n)
    ]


def test_health_windows_and_recovery():
    thr = health.thresholds(_recs(0, 5, 10, 40.0))
    assert thr.p95_ms == 500.0  # max(500 ms, 3 × 40 ms)
    recs = _recs(0, 5, 10, 40) + _recs(5, 10, 10, 40, error=True) + _recs(10, 25, 10, 40)
    ws = health.windows(recs, 5.0, 25.0, 10, thr)
    assert health.first_unhealthy(ws) is not None
    back = health.recovered_at(ws)
    assert back is not None and 9.5 <= back <= 10.5
    # healthy throughout: nothing to recover from
    assert health.recovered_at(health.windows(_recs(0, 20, 10, 40), 0, 20, 10, thr)) is None
    # still sick at the end: not recovered
    assert health.recovered_at(health.windows(_recs(0, 20, 10, 900), 0, 20, 10, thr)) is None
    b = health.budget(recs, 5.0, 25.0, 10, thr)
    assert b["failed"] == 50 and b["time_to_recover_s"] is not None and 4.5 <= b["time_to_recover_s"] <= 5.5


def _look(ts: float, web1: tuple[str, str], web2: tuple[str, str] = ("c2", "up")) -> dict:
    return {"ts": ts, "dynos": {"web.1": {"container": web1[0], "state": web1[1]},
                                "web.2": {"container": web2[0], "state": web2[1]}}}  # fmt: skip


def test_a_release_that_never_boots_shows_in_the_formation_not_the_traffic():
    """The wrong-port drill in a Private Space: the rolling deploy stalls on web.1 (R10, crashed, restarted) while
    web.2 serves the old release, so the traffic stays healthy; the formation shows the trouble, and the drill is
    mitigated only once every web dyno is up again."""
    thr = health.Thresholds(500.0)
    recs = _recs(0, 30, 10, 40)  # healthy traffic throughout
    timeline = [_look(100 + t / 2, ("c1", "up")) for t in range(0, 10)]  # 0-5 s: both up
    timeline += [_look(100 + t / 2, ("n1", "starting")) for t in range(10, 22)]  # 5-11 s: booting on the bad release
    # 11 s: R10, SIGKILL, restarted at once; the half-second look missed the crashed state: only a new container
    timeline += [_look(100 + t / 2, ("n2", "starting")) for t in range(22, 30)]
    timeline += [_look(100 + t / 2, ("n3", "up")) for t in range(30, 60)]  # 15 s on: rolled back, up
    assert health.recovered_at(health.windows(recs, 5.0, 30.0, 10, thr)) is None  # the traffic alone: no trouble
    looks = health.formation(timeline, 100.0)
    assert looks[22].broken and not looks[10].broken
    assert [f.broken for f in looks].count(True) == 2 and looks[30].broken  # replacing a dyno that never booted
    ws = health.windows(recs, 5.0, 30.0, 10, thr, formation=looks)
    trouble = health.first_unhealthy(ws)
    assert trouble is not None and 11.0 <= trouble <= 14.5
    back = health.recovered_at(ws)
    assert back is not None and 14.5 <= back <= 16.0  # the first window with every web dyno up throughout
    # a crashed state seen as such is trouble too; a normal restart (from up) is not
    assert health.formation([_look(1, ("c1", "crashed"))], 0)[0].broken
    assert not any(f.broken for f in health.formation([_look(1, ("c1", "up")), _look(2, ("c9", "starting"))], 0))
    # no trouble at all (the formation only restarted): nothing to recover from
    calm = health.formation([_look(100 + t / 2, ("c1", "starting" if t < 4 else "up")) for t in range(60)], 100.0)
    assert health.recovered_at(health.windows(recs, 0.0, 30.0, 10, thr, formation=calm)) is None


def test_drill_log_only_while_a_drill_is_on(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LABCTL_LAB", raising=False)
    folder = tmp_path / "lab1" / "drill"
    folder.mkdir(parents=True)
    drill_log.record(["ps", "-a", "x", "--lab", "lab1"], 0, 1.0)
    assert not (folder / "commands.jsonl").exists()
    (folder / "active").write_text("d-1")
    drill_log.record(["ps", "-a", "x", "--lab", "lab1"], 0, 1.0)
    drill_log.record(["ps:stop", "web.1", "--lab=lab1"], 0, 2.0)
    drill_log.record(["ps", "--lab", "other"], 0, 3.0)  # another lab
    lines = [json.loads(x) for x in (folder / "commands.jsonl").read_text().splitlines()]
    assert [x["argv"][0] for x in lines] == ["ps", "ps:stop"]
    monkeypatch.setenv("LABCTL_LAB", "lab1")
    assert drill_log.lab_of(["ps"]) == "lab1"
    assert drill_log.lab_of(["run", "--", "--lab", "x"]) == "lab1"


def _files(tmp: Path, *, answer: dict | None, commands: list[dict], sick_until: float) -> dict:
    """A drill's state and files as the worker and the CLI leave them: incident at t=5, sick until ``sick_until``."""
    t0 = 1000.0
    d = tmp / "drill"
    d.mkdir(parents=True)
    recs = _recs(0, 5, 10, 40) + _recs(5, sick_until, 10, 40, error=True) + _recs(sick_until, 30, 10, 40)
    (d / "traffic.jsonl").write_text("".join(json.dumps({**r, "ts": t0 + r["t"]}) + "\n" for r in recs))
    (d / "commands.jsonl").write_text(
        "".join(json.dumps({"ts": t0 + c["t"], "argv": c["argv"], "code": 0}) + "\n" for c in commands)
    )
    secret = {"name": "instance-cpu", "dyno": "web.1", "facts": FACTS, "command": ["labctl", "faults:add", "cpu"]}
    return {
        "id": "d-test",
        "lab": "l",
        "app": "shop",
        "space": "drills",
        "seed": 14,
        "started_at": t0,
        "injected_at": t0 + 5,
        "ended_at": t0 + 30,
        "rps": 10,
        "path": "/",
        "thresholds": {"p95_ms": 300.0, "max_error_rate": 0.05},
        "answer": answer,
        "sealed": drill._seal(secret),
    }


def test_grade_pass_wrong_answer_and_wrong_remedy(tmp_path):
    ok = drill.grade(
        _files(
            tmp_path / "a",
            answer={"ts": 1008.0, "kind": "cpu", "dyno": "web.1", "line": "--kind cpu --dyno web.1"},
            commands=[
                {"t": 9.0, "argv": ["ps", "-a", "shop"]},
                {"t": 10.0, "argv": ["ps:stop", "web.1", "-a", "shop"]},
            ],
            sick_until=11.0,
        ),
        tmp_path / "a" / "drill",
    )
    assert ok["status"] == "pass", ok
    assert ok["answer"]["time_to_detect_s"] == 3.0 and 5.5 <= ok["mitigation"]["time_to_mitigate_s"] <= 6.5
    assert ok["remedy"]["remedy"] == "stop" and ok["remedy"]["fits"] is True
    assert [c["line"] for c in ok["commands"]] == ["labctl ps -a shop", "labctl ps:stop web.1 -a shop"]

    wrong = drill.grade(
        _files(
            tmp_path / "b",
            answer={"ts": 1008.0, "kind": "loss", "dyno": "web.1", "line": "--kind loss --dyno web.1"},
            commands=[{"t": 10.0, "argv": ["ps:stop", "web.1", "-a", "shop"]}],
            sick_until=11.0,
        ),
        tmp_path / "b" / "drill",
    )
    assert wrong["status"] == "fail" and wrong["answer"]["correct"] is False
    assert wrong["remedy"]["fits"] is True and wrong["mitigation"]["mitigated_at"] is not None

    restart = drill.grade(
        _files(
            tmp_path / "c",
            answer={"ts": 1008.0, "kind": "cpu", "dyno": "web.1", "line": "--kind cpu --dyno web.1"},
            commands=[{"t": 10.0, "argv": ["ps:restart", "web.1", "-a", "shop"]}],
            sick_until=11.0,  # even if the traffic got well meanwhile, a restart is not the remedy here
        ),
        tmp_path / "c" / "drill",
    )
    assert restart["status"] == "fail" and restart["remedy"]["remedy"] == "restart"
    assert restart["remedy"]["fits"] is False and "sick instance" in restart["remedy"]["why"]


def test_windows_with_requests_finishing_at_the_same_time():
    recs = [{"t": 1.0, "status": 200, "latency_ms": 100.0}, {"t": 1.05, "status": 503, "latency_ms": 50.0}]
    ws = health.windows(recs * 3, 0.0, 4.0, 1.0, health.Thresholds(500.0))
    assert ws and ws[0].count == 6


def test_a_drill_cut_short_before_its_incident(tmp_path, monkeypatch, capsys):
    """`labctl drill` killed during its warm-up: status says so, drill:end ends it; one line each, no traceback."""
    from labctl.main import main

    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    folder = tmp_path / "l1" / "drill"
    folder.mkdir(parents=True)
    st = {"id": "d-cut", "lab": "l1", "app": "mine", "created_app": False, "status": "warming up", "timeout": 1}
    (folder / "drill.json").write_text(json.dumps(st))
    assert main(["drill:status", "--lab", "l1"]) == 1
    assert "Drill d-cut is still starting" in capsys.readouterr().err
    assert main(["drill:answer", "--kind", "cpu", "--dyno", "web.1", "--lab", "l1"]) == 1
    assert main(["drill:end", "--lab", "l1"]) == 1
    err = capsys.readouterr().err
    assert "never got its incident" in err and "Traceback" not in err
    assert json.loads((folder / "drill.json").read_text())["status"] == "ended"
    assert main(["drill:end", "--lab", "l1"]) == 1
    assert "No drill is running in lab l1" in capsys.readouterr().err
