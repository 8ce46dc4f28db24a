"""The parts of ``labctl swarm:local`` that need no engine: the nodes' DNS servers, the save-to-many-loads tee,
the node count check, the node image's recipe and the status text."""

from __future__ import annotations

import threading
from pathlib import Path

import docker.errors
import pytest
import requests

from labctl.cli.swarm import status_text
from labctl.engine import swarm_nodes
from labctl.engine.swarm_images import _Tee
from labctl.errors import EngineError, InvalidInput, LabError
from labctl.swarm_local import check_nodes


def test_resolvers_skip_the_hosts_own_stub_and_fall_back_to_the_next_file(tmp_path: Path):
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    real = tmp_path / "systemd.conf"
    real.write_text("# comment\nnameserver 10.0.0.2\nnameserver ::1\n nameserver 192.0.2.9\nsearch lan\n")
    assert swarm_nodes.host_resolvers((stub, real)) == ["10.0.0.2", "192.0.2.9"]
    assert swarm_nodes.host_resolvers((stub, tmp_path / "missing")) == []


def test_the_node_count_and_lab_name_are_checked_before_anything_runs():
    from labctl import swarm_local

    for call in (lambda: swarm_local.up("Bad_Name", print, 2), lambda: swarm_local.down("x y")):
        with pytest.raises(InvalidInput, match="Invalid lab name"):
            call()
    check_nodes(None)
    check_nodes(1)
    check_nodes(swarm_nodes.MAX_NODES)
    for bad in (0, -1, swarm_nodes.MAX_NODES + 1):
        with pytest.raises(InvalidInput, match="--nodes must be between 1 and 9"):
            check_nodes(bad)


def _drain(tee: _Tee, i: int, out: dict[int, list[bytes]], errors: dict[int, str], stop_after: int | None = None):
    try:
        for n, chunk in enumerate(tee.reader(i)):
            out.setdefault(i, []).append(chunk)
            if stop_after is not None and n + 1 >= stop_after:
                return  # a load that failed: the reader is closed
    except EngineError as err:
        errors[i] = str(err)


def _run(tee: _Tee, readers: int, stop_after: dict[int, int] | None = None):
    out: dict[int, list[bytes]] = {}
    errors: dict[int, str] = {}
    threads = [
        threading.Thread(target=_drain, args=(tee, i, out, errors, (stop_after or {}).get(i))) for i in range(readers)
    ]
    for t in threads:
        t.start()
    tee.pump()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    return out, errors


def test_the_tee_gives_every_reader_every_chunk_in_order():
    chunks = [bytes([i]) * 10 for i in range(100)]  # more than a queue holds: the pump waits for readers
    out, errors = _run(_Tee(iter(chunks), 3), 3)
    assert errors == {} and [out[i] for i in range(3)] == [chunks] * 3


def test_a_reader_that_gives_up_does_not_stall_the_others():
    chunks = [b"x"] * 100
    out, errors = _run(_Tee(iter(chunks), 2), 2, stop_after={0: 2})
    assert len(out[0]) == 2 and out[1] == chunks and errors == {}


def test_a_failed_save_fails_every_load_with_its_reason():
    def source():
        yield b"a"
        raise OSError("disk full")

    out, errors = _run(_Tee(source(), 2), 2)
    assert errors == {0: "docker save failed: disk full", 1: "docker save failed: disk full"}


def test_the_node_image_recipe_ships_and_its_entry_listens_on_the_nodes_own_address():
    files = swarm_nodes.node_image_files()
    assert set(files) == {"Dockerfile", "node-entry.sh"}
    dockerfile, entry = files["Dockerfile"].decode(), files["node-entry.sh"].decode()
    assert "ARG BASE=labctl/base:trixie" in dockerfile and "docker.io" in dockerfile
    assert 'exec dockerd --host "tcp://$addr:2376"' in entry and "2375" not in entry and "--tls=false" not in entry
    assert '--tlsverify --tlscacert "$tls/ca.pem" --tlscert "$cert" --tlskey "$key"' in entry
    assert "rm -f /var/run/docker.pid" in entry and "remount,bind,rw" in entry


def test_status_text():
    s = {
        "lab": "demo",
        "overlay": "labctl-demo-overlay",
        "tls_dir": "/s/demo.swarm-tls/client",
        "labctl_up": "labctl up --lab demo --swarm-node tcp://172.30.0.2:2376 --swarm-tls-dir /s/demo.swarm-tls/client",
        "nodes": [
            {
                "name": "labctl-demo-swarm-1",
                "docker_host": "tcp://172.30.0.2:2376",
                "role": "manager",
                "leader": True,
                "status": "ready",
                "container": "running",
                "swarm": "active",
                "rss_mb": 63.4,
                "images": ["labctl/stack:lab-24"],
            },
            {
                "name": "labctl-demo-swarm-2",
                "docker_host": None,
                "role": None,
                "leader": False,
                "status": None,
                "container": "exited",
                "swarm": "unreachable",
                "rss_mb": None,
                "images": [],
            },
        ],
    }
    assert status_text(s).splitlines() == [
        "=== Local swarm of lab demo: 2 node(s), overlay network labctl-demo-overlay",
        " NAME                  DOCKER_HOST             ROLE               STATE    SWARM         RSS_MB   IMAGES",
        " " + "─" * 116,
        " labctl-demo-swarm-1   tcp://172.30.0.2:2376   manager (leader)   ready    active        63.4     "
        "labctl/stack:lab-24",
        " labctl-demo-swarm-2   -                       -                  exited   unreachable   -        -",
        "A lab on these nodes (TLS client certificate in /s/demo.swarm-tls/client):",
        "  labctl up --lab demo --swarm-node tcp://172.30.0.2:2376 --swarm-tls-dir /s/demo.swarm-tls/client",
    ]
    assert status_text({**s, "nodes": [], "labctl_up": None}) == "Lab demo has no local swarm."


def test_the_lab_up_line_quotes_its_directory():
    from labctl.swarm_local import lab_up_line

    assert lab_up_line("default", ["tcp://10.0.0.2:2376"], "/a b/client") == (
        "labctl up --swarm-node tcp://10.0.0.2:2376 --swarm-tls-dir '/a b/client'"
    )


# -- the seam of the swarm backend: settings and which engine a container lives on ---------------------------
def test_without_nodes_every_container_is_on_the_home_engine_and_nothing_is_asked():
    from labctl.engine.engines import Engines

    home = object()  # any call on it would fail: none is made
    engines = Engines(home)
    assert engines.node_of("abc") is None and engines.client_of("abc") is home
    assert list(engines.items()) == [(None, home)]
    engines.remember("abc", None)
    engines.forget("abc")
    with pytest.raises(LabError, match="No swarm node named 'n1'"):
        engines.client("n1")


def test_swarm_node_urls_in_the_settings(tmp_path, monkeypatch):
    import json

    from labctl.labdir import LabDir
    from labctl.settings import Settings, check_settings

    assert Settings(lab="x").swarm_nodes == []
    ok = ["tcp://10.0.0.2:2376", "unix:///run/node1.sock", "https://node4:2376"]
    check_settings(Settings(lab="x", swarm_nodes=ok))
    for bad, match in (
        (["10.0.0.2:2375"], "Invalid swarm node URL '10.0.0.2:2375'"),
        (["ftp://node"], "Invalid swarm node URL 'ftp://node'"),
        (["ssh://deploy@node3"], "Invalid swarm node URL 'ssh://deploy@node3'"),  # docker-py needs paramiko
        (["tcp://[::1"], r"Invalid swarm node URL 'tcp://\[::1'"),  # urlsplit's ValueError, one line
        (["tcp://"], "Invalid swarm node URL 'tcp://'"),
        (["tcp://a:1", "tcp://a:1"], "named twice"),
        ("tcp://a:1", "a list of Docker API URLs"),
    ):
        with pytest.raises(LabError, match=match):
            check_settings(Settings(lab="x", swarm_nodes=bad))  # type: ignore[arg-type]
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    d = LabDir("old")
    d.path.mkdir()
    d.file("lab.json").write_text(json.dumps({"lab": "old", "http_port": 5080}))  # written before the field
    assert d.settings().swarm_nodes == []


def test_a_node_that_does_not_answer_is_refused_at_up_but_left_out_by_the_controller():
    """`labctl up` refuses a node that does not answer (bad input, nothing changes); a controller starting with a
    node that has gone since (e.g. after `swarm:local down`) leaves it out and runs the lab on the home engine."""
    from labctl.engine.engines import Engines, connect_nodes
    from labctl.errors import EngineUnavailable

    dead = "tcp://127.0.0.1:9"  # discard port on loopback: nothing listens, the connection is refused at once
    with pytest.raises(EngineUnavailable, match=r"^The swarm node at tcp://127\.0\.0\.1:9 does not answer"):
        connect_nodes([dead], timeout=2)
    skipped: list[str] = []
    assert connect_nodes([dead], timeout=2, skip_unreachable=True, skipped=skipped) == {}
    assert skipped == [dead]

    class Gone:
        class api:  # noqa: N801 - docker-py's shape
            @staticmethod
            def inspect_container(cid: str) -> None:
                raise requests.exceptions.ConnectionError("refused")

    class Home:
        class api:  # noqa: N801
            @staticmethod
            def inspect_container(cid: str) -> None:
                raise docker.errors.NotFound("no such container")

    # not on the home engine, and the node does not answer: skipped, not raised (the caller meets NotFound)
    assert Engines(Home, {"node-1": Gone}).node_of("abc") is None
