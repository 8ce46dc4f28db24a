"""Reliability (issue 7): malformed API bodies and CLI arguments (Hypothesis, and the cases it found pinned).
Never a 5xx or a traceback; a refused call is a clean JSON 4xx and changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from labctl.client import Client
from labctl.labdir import LabDir
from tests.conftest import Lab, cli, deploy_sample, wait_until
from tests.integration.helpers import HYPOTHESIS, assert_nothing_lost

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_api_input")]  # module fixtures: one worker


# -- malformed API bodies and CLI arguments (Hypothesis) -------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=6,
)


def bodies(*keys: str) -> st.SearchStrategy:
    """Any JSON, objects with the endpoint's own keys (any values), and bytes that are not JSON at all."""
    return st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), json_values, max_size=3),
        st.binary(max_size=24),
    )


# What an API call answers: a success, or a clean error whose body's ``id`` goes with its status (labctl.errors).
ACCEPTED = {200, 201, 202}
REFUSED = {400: "bad_request", 404: "not_found", 409: "conflict", 422: "invalid_params"}


class Probe:
    """Sends one body and checks: never a 5xx; a 4xx is a clean JSON error and changes nothing."""

    def __init__(self, lab: Lab, app: str):
        self.lab = lab
        self.app = app
        self.client = Client(lab.name, timeout=60)

    def snapshot(self) -> dict[str, Any]:
        c, app = self.client, self.app
        dynos = c.get(f"/apps/{app}/dynos")
        return {
            "apps": sorted(a["name"] for a in c.get("/apps")),
            "spaces": sorted(s["name"] for s in c.get("/spaces")),
            "formation": c.get(f"/apps/{app}/formation"),
            "config": c.get(f"/apps/{app}/config-vars"),
            "releases": [(r["version"], r["description"]) for r in c.get(f"/apps/{app}/releases")],
            "dynos": sorted((d["name"], d["container"], d["size"]) for d in dynos if d["type"] != "run"),
            "runs": sorted(d["name"] for d in dynos if d["type"] == "run"),
        }

    def send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = requests.request(
            method,
            self.client.base + path,
            data=data,
            timeout=60,
            headers={**self.client.headers, "Content-Type": "application/json"},
        )
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def check(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        before = self.snapshot()
        status, answer = self.send(method, path, body)
        assert status in ACCEPTED or status in REFUSED, f"{method} {path} {body!r} -> {status} {answer}"
        if status >= 400:
            assert isinstance(answer, dict) and isinstance(answer.get("message"), str) and answer["message"], answer
            assert answer.get("id") == REFUSED[status], f"error id {answer.get('id')!r} with status {status}"
            assert "Traceback" not in answer["message"]
            after = self.snapshot()
            if before["runs"] != after["runs"]:  # one-offs of earlier accepted bodies may finish meanwhile
                assert set(after["runs"]) <= set(before["runs"]), f"rejected {body!r} left a one-off: {after['runs']}"
                before["runs"] = after["runs"]
            assert after == before, f"rejected {method} {path} {body!r} ({status}) changed the state"
        return status, answer

    def refused(self, method: str, path: str, body: Any, status: int = 422) -> dict[str, Any]:
        """``check``, and the body must be refused with exactly ``status`` (a 2xx or another 4xx fails)."""
        got, answer = self.check(method, path, body)
        assert got == status, f"{method} {path} {body!r}: {got} {str(answer)[:160]}, expected {status}"
        return answer

    def settle(self) -> None:
        want = {f["type"]: f["quantity"] for f in self.client.get(f"/apps/{self.app}/formation")}
        assert_nothing_lost(self.lab, {self.app: want}, timeout=60)


@pytest.fixture(scope="module")
def fuzz_app(lab: Lab) -> Iterator[str]:
    app = f"z{uuid.uuid4().hex[:8]}"
    deploy_sample(lab, app)
    yield app
    lab.cli("apps:destroy", "-a", app)


@HYPOTHESIS
@given(
    body=bodies("updates")
    | st.fixed_dictionaries(
        {"updates": st.lists(st.dictionaries(st.sampled_from(["type", "quantity", "size"]), json_values), max_size=2)}
    )
)
@example(body={"updates": [{"type": "web", "quantity": 1, "size": "no-such-size"}]})
@example(body={"updates": [{"type": "web", "size": 3}]})
def test_fuzz_patch_formation(lab: Lab, fuzz_app: str, body: Any):
    p = Probe(lab, fuzz_app)
    before = p.snapshot()["formation"]
    status, _ = p.check("PATCH", f"/apps/{fuzz_app}/formation", body)
    if status < 300:  # accepted: put the formation back as it was
        back = [{"type": f["type"], "quantity": f["quantity"], "size": f["size"]} for f in before]
        p.send("PATCH", f"/apps/{fuzz_app}/formation", {"updates": back})
        p.settle()


NO_NUL = st.characters(blacklist_characters="\x00")


@HYPOTHESIS
@given(
    body=bodies("A_KEY", "B")
    | st.dictionaries(st.text(max_size=8), st.text(NO_NUL, max_size=12) | st.none(), max_size=3)
)
@example(body={"": "x"})
@example(body={"A-B": "x"})
def test_fuzz_patch_config_vars(lab: Lab, fuzz_app: str, body: Any):
    """Random bodies (values without NUL: see the next test)."""
    if isinstance(body, dict) and any(isinstance(v, str) and "\x00" in v for v in body.values()):
        return
    p = Probe(lab, fuzz_app)
    status, _ = p.check("PATCH", f"/apps/{fuzz_app}/config-vars", body)
    if status < 300:
        p.settle()


def test_config_value_with_nul_is_refused(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    try:
        p.refused("PATCH", f"/apps/{fuzz_app}/config-vars", {"NUL_VALUE": "a\x00b"})
    finally:
        p.send("PATCH", f"/apps/{fuzz_app}/config-vars", {"NUL_VALUE": None})
        p.settle()


@HYPOTHESIS
@given(
    body=bodies("name")
    | st.fixed_dictionaries({"name": json_values}, optional={"space": st.text(max_size=8) | st.none()})
)
@example(body={"name": "Bad Name"})
@example(body={"name": "abc", "space": "no-such-space"})
def test_fuzz_post_apps(lab: Lab, fuzz_app: str, body: Any):
    """Random bodies; a non-string ``space`` is the next test."""
    if isinstance(body, dict) and not isinstance(body.get("space"), (str, type(None))):
        body = {**body, "space": None}
    p = Probe(lab, fuzz_app)
    status, answer = p.check("POST", "/apps", body)
    if status < 300:
        p.send("DELETE", f"/apps/{answer['name']}", None)


def test_post_apps_with_non_string_space_is_a_clean_4xx(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    for space in (["x"], {"a": 1}):
        answer = p.refused("POST", "/apps", {"name": "okname", "space": space})
        assert "'space' must be a non-empty string" in answer["message"]


# The bodies Hypothesis found (its @examples) and their kin, each refused with its exact status: a handler that
# accepted one (a 2xx) or refused it for another reason would pass the random tests above, not this one.
KNOWN_BAD = [
    (
        "PATCH",
        "/apps/{app}/formation",
        {"updates": [{"type": "web", "quantity": 1, "size": "no-such-size"}]},
        422,
        "Unknown dyno size 'no-such-size'",
    ),
    ("PATCH", "/apps/{app}/formation", {"updates": [{"type": "web", "size": 3}]}, 422, "'size' must be a dyno size"),
    ("PATCH", "/apps/{app}/formation", {"args": ["web=2"]}, 422, "body must have a non-empty list 'updates'"),
    ("PATCH", "/apps/{app}/formation", {"updates": [{"type": "web", "quantity": -1}]}, 422, "quantity must be"),
    ("PATCH", "/apps/{app}/formation", {"updates": [{"type": "web", "quantity": True}]}, 422, "quantity must be"),
    ("PATCH", "/apps/{app}/formation", b"not json", 422, "request body is not valid JSON"),
    ("PATCH", "/apps/{app}/formation", [1], 422, "request body must be a JSON object"),
    ("PATCH", "/apps/{app}/config-vars", {"": "x"}, 422, "Invalid config var name ''"),
    ("PATCH", "/apps/{app}/config-vars", {"A-B": "x"}, 422, "Invalid config var name 'A-B'"),
    ("POST", "/apps", {"name": "Bad Name"}, 422, "Name 'Bad Name' is invalid"),
    ("POST", "/apps", {"name": "abc", "space": "no-such-space"}, 404, "Couldn't find that space."),
    ("POST", "/spaces", {"name": 5}, 422, "body must have a non-empty string 'name'"),
    ("POST", "/spaces", b"\xff", 422, "request body is not valid JSON"),
    ("POST", "/apps/{app}/dynos", {"command": ""}, 422, "body must have a non-empty string 'command'"),
    ("POST", "/apps/{app}/dynos", {"command": "   "}, 422, "Usage: labctl run COMMAND -a APP"),
    ("POST", "/apps/{app}/dynos", {"command": "echo a\x00b"}, 422, "The command has a NUL byte"),
    ("POST", "/apps/{app}/dynos", {"command": 5}, 422, "body must have a non-empty string 'command'"),
]


def test_known_bad_bodies_are_refused_with_their_status(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    wrong = []
    for method, path, body, status, needle in KNOWN_BAD:
        got, answer = p.check(method, path.format(app=fuzz_app), body)
        message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
        if got != status or needle not in message:
            wrong.append(f"{method} {path} {body!r}: {got} {message[:100]!r}, expected {status} {needle!r}")
    assert not wrong, "\n".join(wrong)


@HYPOTHESIS
@given(body=bodies("name"))
def test_fuzz_post_spaces(lab: Lab, fuzz_app: str, body: Any):
    p = Probe(lab, fuzz_app)
    status, answer = p.check("POST", "/spaces", body)
    if status < 300:
        p.send("DELETE", f"/spaces/{answer['name']}", None)


@settings(HYPOTHESIS, max_examples=15)
@given(command=json_values | st.text(max_size=40))
@example(command="")
@example(command="   ")
@example(command="echo a\x00b")
def test_fuzz_run_command_strings(lab: Lab, fuzz_app: str, command: Any):
    """Random ``command`` values: a string runs as a one-off dyno (wrapped in ``timeout 5`` so that a random word
    like ``yes`` cannot run on); anything else is refused and changes nothing."""
    p = Probe(lab, fuzz_app)
    status, answer = p.check(
        "POST",
        f"/apps/{fuzz_app}/dynos",
        {"command": f"timeout 5 {command}" if isinstance(command, str) and command.strip() else command},
    )
    if status < 300:
        wait_until(
            lambda: answer["name"] not in {d["name"] for d in lab.dynos(fuzz_app).values()},
            30,
            0.3,
            f"one-off {answer['name']} finished and gone from ps",
        )


def test_run_with_a_bad_size_changes_nothing(lab: Lab, fuzz_app: str):
    p = Probe(lab, fuzz_app)
    try:
        for size, needle in (
            ("no-such-size", "Unknown dyno size 'no-such-size'"),
            (["x"], "'size' must be a non-empty string"),
        ):
            answer = p.refused("POST", f"/apps/{fuzz_app}/dynos", {"command": "true", "size": size})
            assert needle in answer["message"], answer
        lab.ok("ps:restart", "web.1", "-a", fuzz_app)
        assert_nothing_lost(lab, {fuzz_app: {"web": 1}}, timeout=20)
    finally:
        for name, d in lab.dynos(fuzz_app).items():
            if d["type"] == "run":
                lab.cli("ps:stop", name, "-a", fuzz_app)
        p.settle()


def test_malformed_content_length_is_a_clean_4xx(lab: Lab):
    import socket

    d = LabDir(lab.name)
    with socket.create_connection(("127.0.0.1", d.api()["port"]), timeout=10) as s:
        s.sendall(
            f"PATCH /apps/nosuch/config-vars HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {d.token()}\r\n"
            "Content-Length: abc\r\nConnection: close\r\n\r\n{}".encode()
        )
        chunks = []
        for _ in range(20):  # Connection: close: read until the server closes (bounded)
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
        head = b"".join(chunks).decode(errors="replace")
    assert head.startswith("HTTP/1.1 422 "), head
    body = head.split("\r\n\r\n", 1)[-1]
    assert "Content-Length must be a whole number" in body, head


CLI_WORDS = [
    "web",
    "web.1",
    "web.0",
    "web=",
    "web=-1",
    "web=2x",
    "web+",
    "web=99999",
    "worker=0",
    "=x",
    "A=",
    "a-b=1",
    "-p",
    "-d",
    "--process-type",
    "--dyno-name",
    "--json",
    "-a",
    "--lab",
    "--bogus",
    "web.1.2",
    "x.y",
]


@HYPOTHESIS
@given(
    command=st.sampled_from(["ps:scale", "config:set", "ps:restart"]),
    args=st.lists(st.sampled_from(CLI_WORDS) | st.text(max_size=10), max_size=4),
)
@example(command="ps:scale", args=["web=1:no-such-size"])
@example(command="config:set", args=["NOEQUALS"])
@example(command="ps:restart", args=["web.1", "-p", "web"])
def test_fuzz_cli_arguments(lab: Lab, fuzz_app: str, command: str, args: list[str]):
    p = Probe(lab, fuzz_app)
    before = p.snapshot()
    r = cli(command, "-a", fuzz_app, *args, lab=lab.name)
    assert "Traceback" not in r.err + r.out
    assert "internal error" not in r.err, r.err
    if r.code != 0:
        assert r.err.strip(), f"labctl {command} {args} failed ({r.code}) without a word on stderr"
        assert p.snapshot() == before, f"rejected `labctl {command} {args}` changed the state"
    else:
        p.settle()
