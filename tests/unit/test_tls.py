"""The router's local CA (labctl/engine/tls.py): made once, verifiable with openssl, the names the router serves."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from labctl.engine import tls
from labctl.errors import InvalidInput, LabError


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def _verify(files: tls.CaFiles, *extra: str) -> bool:
    done = _openssl("verify", "-CAfile", str(files.ca_cert), "-purpose", "sslserver", *extra, str(files.router_cert))
    return done.returncode == 0 and done.stdout.strip().endswith(": OK")


def _snapshot(files: tls.CaFiles) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for name in ("ca_cert", "ca_key", "router_cert", "router_key"):
        path: Path = getattr(files, name)
        st = path.stat()
        out[name] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return out


def test_files_made_once_with_private_keys(tmp_path):
    state = tmp_path / "state" / "lab"
    files = tls.ensure_ca(state)
    assert files == tls.CaFiles(state / "ca.crt", state / "ca.key", state / "router.crt", state / "router.key")
    for key in (files.ca_key, files.router_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in key.read_bytes()
    for cert in (files.ca_cert, files.router_cert):
        assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    first = _snapshot(files)
    assert tls.ensure_ca(state) == files
    assert _snapshot(files) == first  # nothing rewritten: same inodes, times, bytes
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith(".")) == [
        "ca.crt",
        "ca.key",
        "router.crt",
        "router.key",
    ]  # no scratch files left behind


def test_router_cert_verifies_against_the_ca_with_the_sans(tmp_path):
    files = tls.ensure_ca(tmp_path)
    assert _verify(files)
    assert _verify(files, "-verify_hostname", "localhost")
    assert _verify(files, "-verify_ip", "127.0.0.1")
    sans = tls.router_cert_names(tmp_path)
    assert {"DNS:*.localhost", "DNS:localhost", "IP Address:127.0.0.1"} <= sans
    ca = _openssl("x509", "-in", str(files.ca_cert), "-noout", "-ext", "basicConstraints").stdout
    assert "CA:TRUE" in ca
    assert _openssl("x509", "-in", str(files.ca_cert), "-noout", "-checkend", str(3649 * 86400)).returncode == 0
    assert _openssl("x509", "-in", str(files.ca_cert), "-noout", "-checkend", str(3651 * 86400)).returncode != 0
    other = tls.ensure_ca(tmp_path / "other")  # another lab's CA does not vouch for this router
    assert _openssl("verify", "-CAfile", str(other.ca_cert), str(files.router_cert)).returncode != 0


def test_app_hostnames_are_named_because_openssl_does_not_match_star_dot_localhost(tmp_path):
    files = tls.ensure_ca(tmp_path)
    assert not _verify(files, "-verify_hostname", "demo.localhost")  # *.localhost: one label after the star
    ca_before = files.ca_cert.read_bytes()
    tls.ensure_ca(tmp_path, ["demo.localhost", "Shop.localhost."])
    assert _verify(files, "-verify_hostname", "demo.localhost")
    assert _verify(files, "-verify_hostname", "shop.localhost")
    assert files.ca_cert.read_bytes() == ca_before  # the CA stays: clients keep trusting it
    again = _snapshot(files)
    tls.ensure_ca(tmp_path, ["demo.localhost"])  # already named: nothing issued
    tls.ensure_ca(tmp_path)
    assert _snapshot(files) == again
    with pytest.raises(InvalidInput):
        tls.ensure_ca(tmp_path, ["demo.localhost\nsubjectAltName = DNS:evil"])


def test_python_ssl_handshake_to_an_app_hostname(tmp_path):
    files = tls.ensure_ca(tmp_path, ["demo.localhost"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.router_cert, files.router_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client.wrap_socket(raw, server_hostname="demo.localhost") as conn:
            assert conn.recv(5) == b"hello"
    thread.join(5)
    listener.close()


def test_missing_parts_are_made_again(tmp_path):
    files = tls.ensure_ca(tmp_path)
    ca = files.ca_cert.read_bytes()
    files.router_cert.unlink()
    tls.ensure_ca(tmp_path)
    assert files.ca_cert.read_bytes() == ca and _verify(files)
    files.router_cert.write_text("not a certificate\n")
    tls.ensure_ca(tmp_path)
    assert _verify(files)
    files.ca_key.unlink()
    tls.ensure_ca(tmp_path)
    assert files.ca_key.is_file() and files.ca_cert.read_bytes() != ca and _verify(files)


def test_no_openssl_is_one_line_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(tls.shutil, "which", lambda *a, **k: None)
    with pytest.raises(LabError) as err:
        tls.ensure_ca(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "openssl" in msg and "apt-get install openssl" in msg
    assert not (tmp_path / "ca.crt").exists()
