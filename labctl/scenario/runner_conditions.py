"""Evaluating a scenario's conditions against the lab: one ``Check`` per thing a condition asks.

Dyno state, instance and container compared with a snapshot, HTTP through the router, log lines, the requests of
a traffic stream (their figures are computed by ``checks``), and labctl commands.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any

import requests

from labctl.scenario import checks as checklib
from labctl.scenario.model import Condition
from labctl.scenario.result import Check
from labctl.scenario.runner_lab import DEFAULT_RUN_TIMEOUT, HTTP_TIMEOUT, LabAccess, _short
from labctl.scenario.runner_signals import StepTimeout


class ConditionChecks(LabAccess):
    """The condition evaluation of ``Runner``: ``_evaluate`` returns the checks of one condition."""

    # -- conditions ---------------------------------------------------------------------------------
    def _evaluate(self, cond: Condition, deadline: float | None = None) -> list[Check]:
        checks: list[Check] = []
        d = None
        if cond.dyno:
            d = self._dynos(cond.app).get(cond.dyno)
        if cond.state:
            now = d["state"] if d else "absent"
            checks.append(Check("state", now == cond.state, now, cond.state))
        if cond.instance:
            checks.append(self._instance_check(cond, d))
        if cond.changed_since:
            was = self._snap_dyno(cond.changed_since, cond.app, cond.dyno)  # type: ignore[arg-type]
            old = (was or {}).get("container")
            new = d["container"] if d else None
            changed = bool(new) and new != old
            checks.append(
                Check(
                    "changed_since",
                    changed,
                    f"container {_short(new)} ({'changed' if changed else 'unchanged'})",
                    f"a container other than {cond.changed_since}'s {_short(old)}",
                )
            )
        if cond.instance_exists is not None:
            was = (self._snap_dyno(cond.since, cond.app, cond.dyno) or {}).get("instance")  # type: ignore[arg-type]
            live = {i["id"]: i for i in self.client.instances()}
            exists = was in live
            measured = f"{was} {'exists (' + live[was]['state'] + ')' if exists else 'is gone'}"
            checks.append(
                Check(
                    "instance_exists",
                    exists == cond.instance_exists,
                    measured,
                    f"{was} {'exists' if cond.instance_exists else 'is gone'}",
                )
            )
        if cond.http:
            checks += self._http_checks(cond, deadline)
        if cond.log is not None:
            checks.append(self._log_check(cond))
        if cond.no_log is not None:
            checks.append(self._log_check(cond, absent=True))
        if cond.traffic is not None:
            checks += self._traffic_checks(cond, deadline)
        if cond.command is not None:
            checks += self._command_checks(cond)
        return checks

    def _traffic_checks(self, cond: Condition, deadline: float | None) -> list[Check]:
        tc = cond.traffic
        assert tc is not None and self.streams is not None
        stream = self.streams.by_name.get(tc.stream)
        if stream is None:
            return [Check("traffic", False, f"stream {tc.stream!r} was not started", tc.describe())]
        w = tc.window
        if w.last is None and w.end == "end" and stream.running:
            if deadline is None:  # an expect on the whole stream: wait for its end (bounded by its duration)
                self.streams.wait(tc.stream)
        now = self._t()
        missing = [e for e in (w.start, w.end) if w.last is None and e not in ("start", "end") and e not in self.snaps]
        if missing:
            return [Check("traffic", False, f"snapshot {missing[0]!r} was not taken (its step failed)", tc.describe())]
        if w.last is not None:
            t_from, t_to = now - w.last.seconds, now
        else:
            t_from = stream.start if w.start == "start" else self.snaps[w.start]["t"]
            t_to = (stream.end if stream.end is not None else now) if w.end == "end" else self.snaps[w.end]["t"]
        if deadline is None:  # an expect: requests of the window still in flight are measured, not left out
            stream.settle(t_to)
        instance = None
        if tc.instance_of is not None:
            dyno, snap = tc.instance_of
            instance = (self._snap_dyno(snap, cond.app, dyno) or {}).get("instance")
        records = checklib.select(stream.run_records(), tc, t_from, t_to, instance)
        where = [tc.stream]
        if tc.dyno:
            where.append(tc.dyno)
        if tc.instance_of is not None:
            where.append(f"on {instance or '(no instance)'}")
        where.append(f"{t_from:.1f}-{t_to:.1f}s")
        prefix = " ".join(where) + ": "
        return [
            Check(name, held, prefix + measured, expected)
            for name, held, measured, expected in checklib.evaluate(tc, records)
        ]

    def _command_checks(self, cond: Condition) -> list[Check]:
        cc = cond.command
        assert cc is not None
        try:
            call = self._lab_cli(cc.argv, timeout=DEFAULT_RUN_TIMEOUT)
        except StepTimeout:
            return [Check("command", False, f"`labctl {cc.command}` did not finish", cc.describe())]
        out: list[Check] = []
        if cc.exit is not None:
            out.append(
                Check(
                    "command exit", call.code == cc.exit, f"`labctl {cc.command}` exit {call.code}", f"exit {cc.exit}"
                )
            )
        if cc.output is not None:
            text = call.out + call.err
            found = cc.output in text
            last = (text.strip().splitlines() or ["(no output)"])[-1][:80]
            out.append(
                Check(
                    "command output",
                    found,
                    f"output has {cc.output!r}" if found else f"output without it (last line: {last!r})",
                    f"output has {cc.output!r}",
                )
            )
        return out

    def _instance_check(self, cond: Condition, d: dict[str, Any] | None) -> Check:
        was = (self._snap_dyno(cond.since, cond.app, cond.dyno) or {}).get("instance")  # type: ignore[arg-type]
        now = d["instance"] if d else None
        want = (
            f"the same instance as at {cond.since!r}: {was}"
            if cond.instance == "same"
            else f"an instance other than {cond.since!r}'s {was}"
        )
        if was is None:
            return Check("instance", False, f"{cond.dyno} was not running at snapshot {cond.since!r}", want)
        if now is None:
            return Check("instance", False, f"{cond.dyno} has no instance now", want)
        same = now == was
        measured = f"{now} ({'the same' if same else 'a different'} instance)"
        return Check("instance", same == (cond.instance == "same"), measured, want)

    def _http_checks(self, cond: Condition, deadline: float | None) -> list[Check]:
        h = cond.http
        assert h is not None
        statuses: Counter[str] = Counter()
        dynos: Counter[str] = Counter()
        for _ in range(h.requests):
            if deadline is not None and time.monotonic() > deadline + HTTP_TIMEOUT:
                break
            try:
                resp = self._get(cond.app, h.path)
            except requests.RequestException as err:
                statuses[f"error ({type(err).__name__})"] += 1
                continue
            statuses[str(resp.status_code)] += 1
            dyno = ""  # the router names no dyno to clients (heroku-reference §3.3): the app's JSON body does
            if resp.headers.get("Content-Type", "").startswith("application/json"):
                with contextlib.suppress(ValueError, AttributeError):
                    dyno = resp.json().get("dyno") or ""
            if dyno and dyno not in ("-",):
                dynos[dyno] += 1
        n = sum(statuses.values())
        checks = []
        if h.status is not None:
            ok = statuses == Counter({str(h.status): n}) and n > 0
            measured = ", ".join(f"{c}x {s}" for s, c in statuses.most_common()) or "no answer"
            checks.append(Check("http status", ok, measured, f"{h.requests}x {h.status}"))
        if h.dynos is not None:
            seen = sorted(dynos, key=_dyno_key)
            measured = ", ".join(f"{d} x{dynos[d]}" for d in seen) or "no dyno answered"
            checks.append(
                Check(
                    "http dynos",
                    set(seen) == set(h.dynos),
                    measured,
                    "answers from " + (", ".join(h.dynos) or "no dyno"),
                )
            )
        return checks

    def _log_check(self, cond: Condition, absent: bool = False) -> Check:
        from labctl.cli.render import log_line

        text = cond.no_log if absent else cond.log
        assert text is not None
        session = self.client.log_session(cond.app, lines=1500)  # the route `labctl logs` and Heroku's CLI use
        rows = list(self.client.log_session_rows(session["logplex_url"]))
        lines = [log_line(r) for r in rows]
        hit = next((ln for ln in reversed(lines) if text in ln), None)
        shown = hit.split(" ", 1)[-1] if hit else ""  # without the timestamp
        measured = f"found: {_clip(shown, 110)}" if hit else f"not in the last {len(lines)} lines"
        if absent:
            return Check("no_log", hit is None, measured, f"no line containing {text!r}")
        return Check("log", hit is not None, measured, f"a line containing {text!r}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _dyno_key(name: str) -> tuple[str, int]:
    kind, _, num = name.partition(".")
    return kind, int(num) if num.isdigit() else 0
