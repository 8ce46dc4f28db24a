"""TLS with client certificates for the Docker APIs of swarm nodes (docs/swarm.md, "Security").

A node's engine holds every capability: whoever reaches its API is root on the machine, so a node's dockerd
listens only with ``--tlsverify`` (port 2376) and answers only clients whose certificate its CA signed.

For ``swarm:local`` this module is that CA, made with the ``openssl`` command line as the router's CA is
(``labctl/engine/tls.py``; no Python dependency), under a directory of the lab's state root:

    <root>/ca.pem, ca-key.pem        the swarm's CA (the key never leaves this directory)
    <root>/client/                   ca.pem, cert.pem, key.pem: Docker's DOCKER_CERT_PATH names, for any client
    <root>/nodes/<node>/             ca.pem, server-<address>.pem, server-<address>-key.pem: bound read-only into
                                     that node only (at /etc/labctl/tls), never into an image or a label

Every file is 0600 and every directory 0700. A node's server certificate names its hostname and its address on
the nodes' network (the address is known only once the node runs: the node's entry script waits for the
certificate of its address, which ``up`` issues as soon as it reads the address; a node restarted onto another
address gets a new one from the next ``up``).

For a lab's controller, ``tls_config`` turns a directory of ``ca.pem``, ``cert.pem`` and ``key.pem`` into
docker-py's client TLS: the client presents its certificate and verifies the node's against ``ca.pem``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.tls

from labctl.engine import tls
from labctl.errors import InvalidInput, LabError

CLIENT_FILES = ("ca.pem", "cert.pem", "key.pem")  # DOCKER_CERT_PATH's names
NODE_TLS_DIR = "/etc/labctl/tls"  # where a node sees its own directory
CA_DAYS = 3650
LEAF_DAYS = 825
WHAT = "the swarm's certificates"


@dataclass(frozen=True)
class SwarmCa:
    """The paths of one local swarm's CA, client certificate and node certificates (nothing is made here)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def client_dir(self) -> Path:
        return self.root / "client"

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def exists(self) -> bool:
        return self.ca_key.is_file() and all((self.client_dir / f).is_file() for f in CLIENT_FILES)


def server_files(address: str) -> tuple[str, str]:
    """A node's certificate and key file names for the address it listens on (the entry script's names)."""
    return f"server-{address}.pem", f"server-{address}-key.pem"


def _openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise LabError("openssl not found: install it (apt-get install openssl) to secure the swarm nodes' APIs")
    return found


def ensure_ca(ca: SwarmCa) -> SwarmCa:
    """The swarm's CA and client certificate, made if missing (a new CA drops every node certificate the old one
    signed). Idempotent."""
    openssl = _openssl()
    _private_dir(ca.root)
    with tls._lock(ca.root):
        if not (ca.ca_cert.is_file() and ca.ca_key.is_file()):
            shutil.rmtree(ca.root / "nodes", ignore_errors=True)
            shutil.rmtree(ca.client_dir, ignore_errors=True)
            _new_ca(openssl, ca)
        if not all((ca.client_dir / f).is_file() for f in CLIENT_FILES) or not _verifies(
            openssl, ca, ca.client_dir / "cert.pem"
        ):
            _private_dir(ca.client_dir)
            _issue(
                openssl,
                ca,
                ca.client_dir / "key.pem",
                ca.client_dir / "cert.pem",
                "/O=labctl/CN=labctl swarm client",
                "extendedKeyUsage = clientAuth",
            )
            _copy(ca.ca_cert, ca.client_dir / "ca.pem")
    return ca


def prepare_node_dir(ca: SwarmCa, name: str) -> Path:
    """The node's own directory with the CA certificate in it (what its container binds, before it starts)."""
    d = ca.node_dir(name)
    _private_dir(d.parent)
    _private_dir(d)
    _copy(ca.ca_cert, d / "ca.pem")
    return d


def ensure_node_cert(ca: SwarmCa, name: str, address: str) -> bool:
    """A server certificate for the node ``name`` at ``address`` (both as subjectAltNames) in its directory;
    True when one was issued (the node's other server certificates are removed then)."""
    openssl = _openssl()
    d = prepare_node_dir(ca, name)
    cert_name, key_name = server_files(address)
    with tls._lock(ca.root):
        if (d / cert_name).is_file() and (d / key_name).is_file() and _verifies(openssl, ca, d / cert_name):
            return False
        for old in d.glob("server-*.pem"):
            old.unlink(missing_ok=True)
        _issue(
            openssl,
            ca,
            d / key_name,  # the key lands first: the entry script waits for the certificate
            d / cert_name,
            f"/O=labctl/CN={name}",
            f"extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{name}, IP:{address}",
        )
    return True


def remove(ca: SwarmCa) -> bool:
    """Remove the CA, the client and every node certificate; True when there was something."""
    there = ca.root.exists()
    shutil.rmtree(ca.root, ignore_errors=True)
    return there


def check_cert_dir(path: Path | str) -> Path:
    """A directory holding ca.pem, cert.pem and key.pem (InvalidInput, one line, naming what is missing)."""
    d = Path(path).expanduser()
    if not d.is_dir():
        raise InvalidInput(f"--swarm-tls-dir {path}: not a directory")
    missing = [f for f in CLIENT_FILES if not (d / f).is_file()]
    if missing:
        raise InvalidInput(f"--swarm-tls-dir {path}: no {', '.join(missing)} (it needs ca.pem, cert.pem and key.pem)")
    return d.resolve()


def copy_cert_dir(src: Path, dest: Path) -> Path:
    """The three client files copied into ``dest`` (0700, files 0600): a lab keeps its own copy."""
    _private_dir(dest)
    for f in CLIENT_FILES:
        _copy(src / f, dest / f)
    return dest


def tls_config(cert_dir: Path | str) -> docker.tls.TLSConfig:
    """docker-py's client TLS: this client's certificate, and the server's verified against ``ca.pem``."""
    d = Path(cert_dir)
    return docker.tls.TLSConfig(
        client_cert=(str(d / "cert.pem"), str(d / "key.pem")), ca_cert=str(d / "ca.pem"), verify=True
    )


class _NodeApiClient(docker.APIClient):
    """docker-py's API client whose CA is the one it was given. requests lets REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE (set on many machines, this one included) replace a session's ``verify`` for every request
    (requests issue 3829): a node's certificate would then be checked against the system's CAs and fail."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (None, True):
            settings["verify"] = self.verify
        return settings


def api_client(url: str, tls: docker.tls.TLSConfig | None, **kwargs: Any) -> docker.APIClient:
    """A low-level client of a node's API (``version="auto"`` unless given) that keeps the CA of ``tls``."""
    made = _NodeApiClient(base_url=url, tls=tls, **{"version": "auto", **kwargs})
    made.trust_env = False  # a node's API is reached directly: never through HTTPS_PROXY from the environment
    return made


def client(url: str, tls: docker.tls.TLSConfig | None, **kwargs: Any) -> docker.DockerClient:
    """A ``docker.DockerClient`` of a node's API over ``api_client``."""
    made = docker.DockerClient.__new__(docker.DockerClient)
    made.api = api_client(url, tls, **kwargs)
    return made


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(src.read_bytes())
    os.replace(tmp, dest)


def _new_ca(openssl: str, ca: SwarmCa) -> None:
    config = tls.ca_config("swarm CA")
    with tls._workdir(ca.root) as tmp:
        (tmp / "ca.cnf").write_text(config)
        tls._genkey(openssl, tmp / "ca-key.pem", what=WHAT)
        tls._run(
            openssl,
            *("req", "-new", "-x509", "-config", str(tmp / "ca.cnf"), "-key", str(tmp / "ca-key.pem")),
            *("-days", str(CA_DAYS), "-sha256", "-out", str(tmp / "ca.pem")),
            what=WHAT,
        )
        tls._install(tmp / "ca-key.pem", ca.ca_key, 0o600)
        tls._install(tmp / "ca.pem", ca.ca_cert, 0o600)


def _issue(openssl: str, ca: SwarmCa, key: Path, cert: Path, subject: str, extensions: str) -> None:
    ext = f"""\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
{extensions}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
    with tls._workdir(ca.root) as tmp:
        (tmp / "leaf.cnf").write_text(ext)
        tls._genkey(openssl, tmp / "key.pem", what=WHAT)
        tls._run(
            openssl,
            *("req", "-new", "-key", str(tmp / "key.pem"), "-subj", subject, "-out", str(tmp / "leaf.csr")),
            what=WHAT,
        )
        tls._run(
            openssl,
            *("x509", "-req", "-in", str(tmp / "leaf.csr"), "-CA", str(ca.ca_cert), "-CAkey", str(ca.ca_key)),
            *("-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(LEAF_DAYS), "-sha256"),
            *("-extfile", str(tmp / "leaf.cnf"), "-extensions", "leaf", "-out", str(tmp / "cert.pem")),
            what=WHAT,
        )
        tls._install(tmp / "key.pem", key, 0o600)
        tls._install(tmp / "cert.pem", cert, 0o600)


def _verifies(openssl: str, ca: SwarmCa, cert: Path) -> bool:
    done = subprocess.run(
        [openssl, "verify", "-CAfile", str(ca.ca_cert), str(cert)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode == 0
