"""``labctl swarm:local`` against the real engine: two Docker-in-Docker nodes form a swarm, standalone containers
on different nodes reach each other by name over the overlay network, the stack image is on every node, ``down``
leaves nothing, and the host engine's own Swarm state is the same before and after (issue 23 item 5).

One 2-node swarm for the module (~30 s to start here, most of it loading the stack image), removed at the end
even when a test fails; the interrupted-up test uses a 1-node swarm of its own.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from labctl import const, swarm_local
from labctl.engine import swarm_tls
from labctl.engine.docker import Engine
from labctl.engine.engines import connect_nodes
from tests.conftest import CliResult, cli

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("test_swarm_local")]  # one module swarm: one worker


def _host_swarm() -> dict[str, Any]:
    """The host engine's own Swarm state, as ``docker info`` shows it."""
    sw = docker.from_env().info()["Swarm"]
    return {k: sw.get(k) for k in ("LocalNodeState", "NodeID", "NodeAddr", "ControlAvailable", "Cluster", "Nodes")}


def _leftovers(lab: str) -> list[str]:
    host = docker.from_env()
    label = f"{const.LABEL_SWARM}={lab}"
    found = [c.name for c in host.containers.list(all=True, filters={"label": label})]
    found += [v.name for v in host.volumes.list(filters={"label": label})]
    found += [n.name for n in host.networks.list(filters={"label": label})]
    return found


def _swarm_cli(command: str, lab: str, *args: str) -> CliResult:
    """``labctl swarm:local COMMAND --lab LAB ARGS`` (the option after the group's command)."""
    return cli("swarm:local", command, "--lab", lab, *args)


def _node(url: str) -> docker.DockerClient:
    """A client of a node's API with the local swarm's client certificate (the only way in)."""
    return swarm_tls.client(url, swarm_tls.tls_config(_TLS_DIR[0]), timeout=120)


_TLS_DIR: list[str] = []  # the module swarm's client certificate directory, once it is up


@pytest.fixture(scope="module")
def host_before() -> dict[str, Any]:
    return _host_swarm()


@pytest.fixture(scope="module")
def swarm(host_before: dict[str, Any], lab_state: Path) -> Iterator[dict[str, Any]]:
    """A 2-node local swarm (``up --json``'s answer, with the lab's name); removed at the end whatever happened."""
    lab = f"t{uuid.uuid4().hex[:8]}"
    try:
        r = _swarm_cli("up", lab, "--nodes", "2", "--json")
        assert r.code == 0, r.err + r.out
        answer = json.loads(r.out)
        _TLS_DIR[:] = [answer["tls_dir"]]
        yield {"lab": lab, **answer}
    finally:
        _swarm_cli("down", lab)
        assert _leftovers(lab) == []


def test_bad_input_is_one_line_and_a_non_zero_exit():
    r = _swarm_cli("up", f"t{uuid.uuid4().hex[:8]}", "--nodes", "0")
    assert r.code == 1 and r.out == ""
    assert r.err.splitlines() == [" ▸    --nodes must be between 1 and 9 (got 0)"]


def test_an_interrupted_up_leaves_nothing_behind(host_before: dict[str, Any]):
    """Ctrl-C (here raised by the progress callback) once the node runs and the swarm is formed."""
    lab = f"t{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def progress(line: str) -> None:
        seen.append(line)
        if line.startswith("Loading "):
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            swarm_local.up(lab, progress, nodes=1)
        assert any(line.startswith("Formed the swarm") for line in seen), seen
        assert seen[-1] == f"Removing the partial local swarm of lab {lab}…"
        assert _leftovers(lab) == []
        assert not swarm_local.certificates(lab).root.exists()  # the CA made on the way is gone too
        assert _host_swarm() == host_before
    finally:
        swarm_local.down(lab)


def test_every_node_is_ready_and_the_first_one_leads(swarm: dict[str, Any]):
    nodes = swarm["nodes"]
    assert [n["name"] for n in nodes] == [f"labctl-{swarm['lab']}-swarm-1", f"labctl-{swarm['lab']}-swarm-2"]
    assert [(n["role"], n["leader"], n["status"], n["swarm"]) for n in nodes] == [
        ("manager", True, "ready", "active"),
        ("worker", False, "ready", "active"),
    ]
    listed = _node(nodes[0]["docker_host"]).nodes.list()  # the manager's own view, not labctl's
    assert sorted((n.attrs["Description"]["Hostname"], n.attrs["Status"]["State"]) for n in listed) == [
        (nodes[0]["name"], "ready"),
        (nodes[1]["name"], "ready"),
    ]


def test_a_node_api_answers_only_a_client_with_the_swarms_certificate(swarm: dict[str, Any]):
    """TLS with client certificates: no plain TCP (2375 closed, plain HTTP on 2376 gets no API answer), a TLS
    client without a certificate fails the handshake, the swarm's client certificate gets the engine."""
    tls_dir = Path(swarm["tls_dir"])
    assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in tls_dir.iterdir())
    for n in swarm["nodes"]:
        host = n["docker_host"].removeprefix("tcp://").rsplit(":", 1)[0]
        assert n["docker_host"] == f"tcp://{host}:2376"
        with pytest.raises(OSError):
            socket.create_connection((host, 2375), timeout=3).close()
        plain = requests.get(f"http://{host}:2376/version", timeout=5)
        assert plain.status_code == 400 and "ApiVersion" not in plain.text  # "an HTTP request to an HTTPS server"
        ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))  # verifies the node, offers no cert
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with (
                socket.create_connection((host, 2376), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname=host) as tls,
            ):
                tls.sendall(b"GET /version HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
                if not tls.recv(1024):  # TLS 1.3: the refusal of the missing certificate arrives on read
                    raise ConnectionResetError("closed without an answer")
        assert _node(n["docker_host"]).version()["ApiVersion"]
        labels = docker.from_env().containers.get(n["name"]).labels
        assert not any("PRIVATE KEY" in v for v in labels.values())


def test_the_stack_image_is_on_every_node(swarm: dict[str, Any]):
    want = docker.from_env().images.get(const.STACK_IMAGE).id
    for n in swarm["nodes"]:
        assert const.STACK_IMAGE in n["images"]
        assert _node(n["docker_host"]).images.get(const.STACK_IMAGE).id == want


def test_a_container_on_one_node_reaches_one_on_another_by_name(swarm: dict[str, Any]):
    a, b = (_node(n["docker_host"]) for n in swarm["nodes"])
    overlay = swarm["overlay"]
    net = a.networks.get(overlay).attrs  # on the manager (a worker sees it once a container there joins it)
    assert (net["Driver"], net["Scope"], net["Attachable"]) == ("overlay", "swarm", True)
    name = f"srv{uuid.uuid4().hex[:6]}"
    server = a.containers.run(
        const.STACK_IMAGE,
        ["python3", "-m", "http.server", "8000"],
        name=name,
        network=overlay,
        detach=True,
    )
    try:
        probe = (
            f"for i in $(seq 40); do curl -s -m 2 -o /dev/null -w '%{{http_code}}' http://{name}:8000/ && exit 0; "
            "sleep 0.25; done; exit 1"
        )
        out = b.containers.run(const.STACK_IMAGE, ["sh", "-c", probe], network=overlay, remove=True)
        assert out.decode().strip() == "200"
    finally:
        server.remove(force=True)


def test_the_engine_adapter_acts_on_a_container_where_it_lives(swarm: dict[str, Any]):
    """The seam of the swarm backend: an Engine given the nodes finds a lab's container on a worker, reads it and
    stops and removes it there; an Engine without nodes (the default) sees only the home engine."""
    nodes = connect_nodes([n["docker_host"] for n in swarm["nodes"]], swarm["tls_dir"])
    worker = swarm["nodes"][1]["name"]
    assert sorted(nodes) == [n["name"] for n in swarm["nodes"]]
    lab = swarm["lab"]
    c = nodes[worker].containers.run(
        const.STACK_IMAGE,
        ["sleep", "infinity"],
        name=f"labctl-{lab}-probe",
        init=True,
        detach=True,
        labels={const.LABEL_LAB: lab, const.LABEL_KIND: const.KIND_DYNO},
    )
    try:
        assert Engine(docker.from_env(), lab).containers(const.KIND_DYNO) == []
        assert [(i.id, i.node) for i in Engine(docker.from_env(), lab, nodes).containers()] == [(c.id, worker)]
        engine = Engine(docker.from_env(), lab, nodes)  # has listed nothing: finds the container by asking
        info = engine.info(c.id)
        assert (info.node, info.status, info.name) == (worker, "running", f"labctl-{lab}-probe")
        assert (engine.memory_bytes(c.id) or 0) > 0
        assert engine.terminate(c.id, grace=10) == (143, False)  # SIGTERM through the init, no SIGKILL
        engine.remove(c.id)
        assert engine.try_info(c.id) is None
        assert nodes[worker].containers.list(all=True, filters={"label": f"{const.LABEL_LAB}={lab}"}) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def test_a_lab_given_the_nodes_and_their_certificate_reaches_each_over_tls_and_down_leaves_them(
    swarm: dict[str, Any],
):
    """`labctl up` with the exact line `swarm:local up` printed (same lab name: the swarm's certificates are
    beside the lab's state directory, not in it): the controller reaches every node over TLS, the lab keeps its
    own 0600 copy of the client certificate, and `labctl down` leaves the nodes, their swarm and their
    certificates as they were."""
    lab, urls = swarm["lab"], swarm["urls"]
    line = shlex.split(swarm["labctl_up"])
    assert line == ["labctl", "up", "--lab", lab, *(a for u in urls for a in ("--swarm-node", u))] + [
        "--swarm-tls-dir",
        swarm["tls_dir"],
    ]
    try:
        r = cli(*line[1:], "--http-port", "0", "--json")
        assert r.code == 0, r.err + r.out
        status = json.loads(r.out)
        want = [(n["name"], n["docker_host"].replace("tcp://", "https://"), True) for n in swarm["nodes"]]
        assert sorted((n["name"], n["url"], n["tls"]) for n in status["swarm_nodes"]) == want
        settings = json.loads((Path(status["state_dir"]) / "lab.json").read_text())
        copy = Path(status["state_dir"]) / "swarm-tls"
        assert (settings["swarm_nodes"], settings["swarm_tls_dir"]) == (urls, str(copy))
        assert sorted((p.name, p.stat().st_mode & 0o777) for p in copy.iterdir()) == [
            ("ca.pem", 0o600),
            ("cert.pem", 0o600),
            ("key.pem", 0o600),
        ]
        again = cli(*line[1:], "--http-port", "0", "--json")  # the same nodes and certificate: nothing to do
        assert again.code == 0 and json.loads(again.out)["changed"] is False, again.err
    finally:
        down = cli("down", "--lab", lab)
    assert down.code == 0, down.err
    after = json.loads(_swarm_cli("status", lab, "--json").out)
    assert [(n["container"], n["status"], n["swarm"]) for n in after["nodes"]] == [("running", "ready", "active")] * 2
    assert after["tls_dir"] == swarm["tls_dir"] and Path(swarm["tls_dir"], "key.pem").is_file()
    for url in urls:
        assert _node(url).version()["ApiVersion"]


def test_up_again_changes_nothing_and_a_new_size_is_refused(swarm: dict[str, Any]):
    again = _swarm_cli("up", swarm["lab"], "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["changed"] is False
    other = _swarm_cli("up", swarm["lab"], "--nodes", "3")
    assert other.code == 1
    assert other.err.splitlines() == [
        f" ▸    The local swarm of lab {swarm['lab']!r} has 2 nodes; run `labctl swarm:local down` to change that"
    ]


def test_down_removes_everything_and_the_host_swarm_is_untouched(swarm: dict[str, Any], host_before: dict[str, Any]):
    r = _swarm_cli("down", swarm["lab"], "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"nodes": 2, "volumes": 2, "networks": 1}
    assert _leftovers(swarm["lab"]) == []
    assert not Path(swarm["tls_dir"]).parent.exists()  # the CA and every certificate are gone too
    assert _host_swarm() == host_before
    assert json.loads(_swarm_cli("status", swarm["lab"], "--json").out)["nodes"] == []
