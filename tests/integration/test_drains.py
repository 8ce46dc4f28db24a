"""Log drains against real receivers (issue 19 item 5): Debian's rsyslogd, started by the test with a config of its
own (TCP on 127.0.0.1, octet-counted frames, every message written to a file with the fields it parsed), and an
HTTP server in this process. Every line the app's log has from the drain's creation on arrives at both, once and
in order, with the right app name (source), proc id (dyno) and timestamp; also across a ``kill -9`` of the
controller. Bad input is one line and changes nothing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.domain import logplex
from tests.conftest import SAMPLE_APP, Lab, wait_until
from tests.integration.helpers import controller_pid, one_error_line
from tests.unit.test_drains import HTTP_LINE, HttpReceiver

pytestmark = pytest.mark.docker

RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imtcp")
template(name="fields" type="string"
         string="%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%pri%|%msg%\\n")
ruleset(name="drain") {{
  action(type="omfile" file="{out}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="drain")
"""


class Rsyslog:
    """rsyslogd in the foreground with its own config, pid file and output file; killed by ``stop``."""

    def __init__(self, tmp: Path):
        rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not Path(rsyslogd).exists():
            pytest.fail("rsyslogd is not installed (Debian package rsyslog; .ci/run installs it)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (tmp / "work").mkdir()
        self.out = tmp / "received.log"
        conf = tmp / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(work=tmp / "work", out=self.out, port=self.port))
        self.proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(self._listening, 15, 0.1, "rsyslogd listening")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"rsyslogd exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"syslog://127.0.0.1:{self.port}"

    def records(self) -> list[tuple[str, str, str, str, str, str]]:
        """(timestamp, hostname, app-name, procid, pri, msg) per message rsyslog parsed."""
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_text().splitlines():
            ts, host, app, procid, pri, msg = line.split("|", 5)
            rows.append((ts, host, app, procid, pri, msg.removeprefix(" ")))
        return rows

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    r = Rsyslog(tmp_path)
    yield r
    r.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


def _logged(lab: Lab, app: str) -> list[dict]:
    return lab.json("logs", "-a", app, "-n", "1500")


def _http_records(receiver: HttpReceiver) -> list[tuple[str, str, str, str]]:
    out = []
    for line in receiver.lines():
        m = HTTP_LINE.match(line)
        assert m, line
        out.append((m.group(2), m.group(3), m.group(4), m.group(5)))
    return out


def _assert_all_arrived(lab: Lab, app: str, rsyslog: Rsyslog, http: HttpReceiver, token: str) -> int:
    """Both receivers hold exactly the app's log lines so far, in order, fields intact; answers how many."""

    def caught_up() -> bool:
        n = len(_logged(lab, app))
        return len(rsyslog.records()) >= n and len(http.lines()) >= n

    try:
        wait_until(caught_up, 60, 0.3, "both receivers caught up with the app's log")
    except AssertionError:
        logged = [f"{r['source']}[{r['dyno']}]: {r['msg']}" for r in _logged(lab, app)]
        syslog = [f"{a}[{p}]: {m}" for _, _, a, p, _, m in rsyslog.records()]
        over_http = [f"{a}[{p}]: {m}" for _, a, p, m in _http_records(http)]
        raise AssertionError(
            f"the app logged {len(logged)} lines, rsyslog has {len(syslog)}, the HTTP receiver {len(over_http)};"
            f" not at rsyslog: {[x for x in logged if x not in syslog][:5]},"
            f" not at HTTP: {[x for x in logged if x not in over_http][:5]}"
        ) from None
    rows = _logged(lab, app)
    want = [(logplex.timestamp(r["ts"]), r["source"], r["dyno"], r["msg"]) for r in rows]
    got_syslog = rsyslog.records()[: len(rows)]
    assert [(ts, app_name, procid, msg) for ts, _, app_name, procid, _, msg in got_syslog] == want
    assert {host for _, host, *_ in got_syslog} == {token}
    assert [pri for *_, pri, _ in got_syslog] == [str(logplex.priority(r)) for r in rows]
    assert _http_records(http)[: len(rows)] == want
    return len(rows)


def test_drains_deliver_every_line_once_in_order_across_a_controller_kill(
    lab: Lab, app_name: str, rsyslog: Rsyslog, http_receiver: HttpReceiver
):
    lab.ok("apps:create", app_name)
    assert lab.ok("drains:add", rsyslog.url, "-a", app_name) == f"Successfully added drain {rsyslog.url}\n"
    lab.ok("drains:add", http_receiver.url, "-a", app_name)
    drains = lab.json("drains", "-a", app_name)
    assert [d["url"] for d in drains] == [rsyslog.url, http_receiver.url]
    token = drains[0]["token"]
    lab.ok("deploy", str(SAMPLE_APP), "-a", app_name)
    lab.wait_up(app_name, ["web.1"], timeout=90)
    for i in range(5):
        assert lab.get(app_name, f"/?n={i}").status_code == 200
    n = _assert_all_arrived(lab, app_name, rsyslog, http_receiver, token)
    dynos = {r[3] for r in rsyslog.records()}
    assert {"web.1", "router", "api"} <= dynos, dynos

    old = controller_pid(lab)
    assert old
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: controller_pid(lab) not in (None, old), 30, 0.2, "the controller restarted")
    for i in range(5):
        assert lab.get(app_name, f"/?after={i}").status_code == 200
    m = _assert_all_arrived(lab, app_name, rsyslog, http_receiver, token)
    assert m > n
    time.sleep(1.0)  # nothing arrives twice, even later
    assert len(rsyslog.records()) == len(_logged(lab, app_name)) == len(http_receiver.lines())

    assert lab.ok("drains:remove", token, "-a", app_name) == f"Successfully removed drain {rsyslog.url}\n"
    lab.ok("drains:remove", http_receiver.url, "-a", app_name)
    assert lab.json("drains", "-a", app_name) == []
    lab.ok("apps:destroy", "-a", app_name)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["drains:add", "syslog://logs.example.com:514"], "is not on this machine"),
        (["drains:add", "https://192.0.2.10/logs"], "is not on this machine"),
        (["drains:add", "udp://127.0.0.1:514"], "unsupported scheme"),
        (["drains:remove", "syslog://127.0.0.1:9"], "Couldn't find that log drain"),
    ],
)
def test_bad_drain_input_is_one_line_and_changes_nothing(lab: Lab, app_name: str, args: list[str], says: str):
    lab.ok("apps:create", app_name)
    try:
        r = lab.cli(*args, "-a", app_name)
        assert r.code == 1 and says in one_error_line(r.err) and r.out == ""
        assert lab.json("drains", "-a", app_name) == []
    finally:
        lab.ok("apps:destroy", "-a", app_name)


def test_a_receiver_that_stalls_gets_l10(lab: Lab, app_name: str):
    """1500 lines at once from a one-off while the HTTP receiver does not answer: the drain's 1024-line buffer
    overflows (the frame being retried is outside it, as Logplex's), the app's log says L10, and once the receiver
    answers again its first frame starts with the count of what was dropped; every line it does get is in order,
    none twice, and every line it does not get is counted."""
    receiver = HttpReceiver()
    receiver.open.clear()
    try:
        lab.ok("apps:create", app_name)
        lab.ok("deploy", str(SAMPLE_APP), "-a", app_name)
        lab.ok("drains:add", receiver.url, "-a", app_name)
        # 1 KB lines: a frame (about 100 KB) holds about 95, so the 1024-line buffer is what overflows
        lab.ok("run:detached", "-a", app_name, 'python3 -c \'for i in range(1500): print("n", i, "x" * 1000)\'')
        l10 = wait_until(lambda: lab.json("logs", "-a", app_name, "-d", "logplex"), 60, 0.5, "an L10 line")
        assert (
            re.fullmatch(
                r"Error L10 \(output buffer overflow\): drain 'd\.[0-9a-f-]{36}' dropped \d+ messages since \S+\.",
                l10[0]["msg"],
            )
            and l10[0]["source"] == "heroku"
        )
        wait_until(
            lambda: any(r["msg"].startswith("n 1499 ") for r in lab.json("logs", "-a", app_name, "-p", "run")),
            60,
            0.5,
            "the one-off's 1500 lines in the log",
        )
        time.sleep(0.5)  # the drain has read them all by now
        receiver.open.set()
        wait_until(lambda: any(m.startswith("n 1499 ") for *_, m in _http_records(receiver)), 60, 0.3, "the last line")
        got = [m for *_, m in _http_records(receiver)]
        assert re.fullmatch(r"Error L10 \(output buffer overflow\): \d+ messages dropped since \S+\.", got[0])
        numbers = [int(m.split()[1]) for m in got if m.startswith("n ")]
        assert numbers == sorted(set(numbers)) and len(numbers) <= 1024 + 100, len(numbers)
        notices = [m for m in got if m.startswith("Error L10 (output buffer overflow): ") and "drain '" not in m]
        assert sum(int(m.split(": ")[1].split()[0]) for m in notices) >= 1500 - len(numbers)  # each loss counted
    finally:
        receiver.close()
        lab.cli("apps:destroy", "-a", app_name)
