"""The swarm's CA (``labctl/engine/swarm_tls.py``): what it makes, with which modes and names, and that a node
client keeps the swarm's CA when REQUESTS_CA_BUNDLE is set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labctl.engine import swarm_tls
from labctl.errors import InvalidInput


def _text(cert: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert)], capture_output=True, text=True
    ).stdout


def _verify(ca: Path, cert: Path) -> bool:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True).returncode == 0


def test_the_ca_client_and_node_certificates(tmp_path: Path):
    ca = swarm_tls.ensure_ca(swarm_tls.SwarmCa(tmp_path / "lab.swarm-tls"))
    assert ca.exists()
    assert sorted(p.name for p in ca.client_dir.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert _verify(ca.ca_cert, ca.client_dir / "cert.pem")
    assert "TLS Web Client Authentication" in _text(ca.client_dir / "cert.pem")
    assert swarm_tls.ensure_node_cert(ca, "labctl-x-swarm-1", "10.1.2.3") is True
    node = ca.node_dir("labctl-x-swarm-1")
    assert sorted(p.name for p in node.iterdir()) == ["ca.pem", "server-10.1.2.3-key.pem", "server-10.1.2.3.pem"]
    text = _text(node / "server-10.1.2.3.pem")
    assert "DNS:labctl-x-swarm-1, IP Address:10.1.2.3" in text and "TLS Web Server Authentication" in text
    assert _verify(ca.ca_cert, node / "server-10.1.2.3.pem")
    assert "PRIVATE KEY" not in (node / "ca.pem").read_text()  # the CA key never goes to a node
    assert swarm_tls.ensure_node_cert(ca, "labctl-x-swarm-1", "10.1.2.3") is False  # kept
    assert swarm_tls.ensure_node_cert(ca, "labctl-x-swarm-1", "10.1.2.4") is True  # a new address: a new one
    assert sorted(p.name for p in node.glob("server-*")) == ["server-10.1.2.4-key.pem", "server-10.1.2.4.pem"]
    files = [p for p in ca.root.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in [ca.root, *ca.root.rglob("*")] if p.is_dir())
    assert swarm_tls.remove(ca) is True and not ca.root.exists()


def test_a_cert_dir_needs_the_three_files(tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"^--swarm-tls-dir .*: not a directory$"):
        swarm_tls.check_cert_dir(tmp_path / "missing")
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(InvalidInput, match=r": no ca\.pem, key\.pem \(it needs ca\.pem, cert\.pem and key\.pem\)$"):
        swarm_tls.check_cert_dir(tmp_path)


def test_a_node_client_keeps_its_ca_over_requests_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """requests would otherwise verify a node against REQUESTS_CA_BUNDLE (requests issue 3829)."""
    ca = swarm_tls.ensure_ca(swarm_tls.SwarmCa(tmp_path / "s"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    c = swarm_tls.api_client("tcp://192.0.2.1:2376", swarm_tls.tls_config(ca.client_dir), version="1.41")
    settings = c.merge_environment_settings("https://192.0.2.1:2376/version", {}, False, None, None)
    assert settings["verify"] == str(ca.client_dir / "ca.pem")
    assert c.cert == (str(ca.client_dir / "cert.pem"), str(ca.client_dir / "key.pem"))


def test_up_checks_the_swarm_options_before_anything(tmp_path: Path):
    """One line each, raised before `up` writes or starts anything (lab.check_swarm runs first)."""
    from labctl.errors import EngineUnavailable, LabError
    from labctl.lab import check_swarm

    assert check_swarm(None, None) is None
    with pytest.raises(InvalidInput, match=r"^--swarm-tls-dir needs the nodes it is for"):
        check_swarm(None, str(tmp_path))
    with pytest.raises(LabError, match=r"^Invalid swarm node URL 'foo://x'"):
        check_swarm(["foo://x"], None)
    for url in ("tcp://10.0.0.2:2376", "http://node.example:2375"):
        with pytest.raises(InvalidInput, match=r"^Swarm node .* would be reached without TLS: give --swarm-tls-dir"):
            check_swarm([url], None)
    with pytest.raises(InvalidInput, match=r": no ca\.pem, cert\.pem, key\.pem"):
        check_swarm(["tcp://10.0.0.2:2376"], str(tmp_path))
    with pytest.raises(EngineUnavailable, match=r"^The swarm node at tcp://127\.0\.0\.1:1 does not answer"):
        check_swarm(["tcp://127.0.0.1:1"], None)  # loopback: no TLS needed, but it must answer
