"""A local certificate authority for the router's HTTPS (``https://<app>.localhost``).

``ensure_ca`` makes, once per state directory, a CA (10 years) and a router certificate it signs for
``*.localhost``, ``localhost`` and ``127.0.0.1``. Trust ``ca.crt`` (``curl --cacert``, the system or browser
store) and the lab answers over HTTPS without a warning. Made with the ``openssl`` command line (no Python
dependency); keys are EC P-256 and readable by their owner only.

OpenSSL (so curl, Python's ssl and requests) does not let ``*.localhost`` match ``demo.localhost``: a wildcard
needs two labels after it (``*.example.com``), and ``localhost`` is one. So ``ensure_ca`` also takes the
hostnames the router serves (``demo.localhost``) and puts each in the certificate by name, issuing the router
certificate again when one is missing; ``*.localhost`` stays for the clients that accept it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import InvalidInput, LabError

CA_DAYS = 3650
ROUTER_DAYS = 825  # the longest validity Apple's TLS rules accept for a server certificate
RENEW_BEFORE_S = 30 * 86400  # a router certificate closer than this to its end is issued again
ROUTER_SAN = ("DNS:*.localhost", "DNS:localhost", "IP:127.0.0.1")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True)
class CaFiles:
    ca_cert: Path  # ca.crt: what clients trust
    ca_key: Path  # ca.key (0600)
    router_cert: Path  # router.crt: the router's certificate (leaf only; the CA is not appended)
    router_key: Path  # router.key (0600)


def ca_files(state_dir: Path) -> CaFiles:
    d = Path(state_dir)
    return CaFiles(d / "ca.crt", d / "ca.key", d / "router.crt", d / "router.key")


def ensure_ca(state_dir: Path, hostnames: Iterable[str] = ()) -> CaFiles:
    """The CA and router certificate under ``state_dir``, made if missing; returns their paths.

    ``hostnames`` (e.g. ``["demo.localhost"]``, the apps the router serves) must be named by the router
    certificate: when one is missing, the certificate is issued again for the base names plus exactly these.
    Idempotent: existing files are kept as long as the router certificate verifies against the CA, names every
    hostname asked for and is not about to expire (else only the router certificate is issued again; a
    missing CA half makes a new CA and router certificate)."""
    names = sorted({h.strip().lower().rstrip(".") for h in hostnames})
    for name in names:
        if not _HOSTNAME.match(name):
            raise InvalidInput(f"Not a hostname for the router's certificate: {name!r}")
    openssl = shutil.which("openssl")
    if not openssl:
        raise LabError("openssl not found: install it (apt-get install openssl) to give the router HTTPS")
    files = ca_files(state_dir)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _lock(state):
        if not (files.ca_cert.is_file() and files.ca_key.is_file()):
            _new_ca(openssl, files)
            _new_router_cert(openssl, files, names)
        elif not _router_cert_ok(openssl, files, names):
            _new_router_cert(openssl, files, names)
    return files


def router_cert_names(state_dir: Path) -> set[str]:
    """The subjectAltName entries of the router certificate (``DNS:…``/``IP Address:…``), empty without one."""
    openssl = shutil.which("openssl")
    cert = ca_files(state_dir).router_cert
    if not openssl or not cert.is_file():
        return set()
    return _san(openssl, cert)


def ca_config(name: str) -> str:
    """openssl's config for a lab CA named ``labctl <name> <random>`` (the router's local CA, the swarm's CA)."""
    return f"""\
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
CN = labctl {name} {secrets.token_hex(4)}
O = labctl
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _new_ca(openssl: str, files: CaFiles) -> None:
    config = ca_config("local CA")
    with _workdir(files.ca_cert.parent) as tmp:
        (tmp / "ca.cnf").write_text(config)
        _genkey(openssl, tmp / "ca.key")
        _run(
            openssl,
            "req",
            "-new",
            "-x509",
            "-config",
            str(tmp / "ca.cnf"),
            "-key",
            str(tmp / "ca.key"),
            "-days",
            str(CA_DAYS),
            "-sha256",
            "-out",
            str(tmp / "ca.crt"),
        )
        _install(tmp / "ca.key", files.ca_key, 0o600)
        _install(tmp / "ca.crt", files.ca_cert, 0o644)


def _new_router_cert(openssl: str, files: CaFiles, names: list[str]) -> None:
    san = ",".join([*ROUTER_SAN, *(f"DNS:{n}" for n in names if f"DNS:{n}" not in ROUTER_SAN)])
    ext = f"""\
[router_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
    with _workdir(files.ca_cert.parent) as tmp:
        (tmp / "router.cnf").write_text(ext)
        _genkey(openssl, tmp / "router.key")
        _run(
            openssl,
            "req",
            "-new",
            "-key",
            str(tmp / "router.key"),
            "-subj",
            "/O=labctl/CN=*.localhost",
            "-out",
            str(tmp / "router.csr"),
        )
        _run(
            openssl,
            "x509",
            "-req",
            "-in",
            str(tmp / "router.csr"),
            "-CA",
            str(files.ca_cert),
            "-CAkey",
            str(files.ca_key),
            "-set_serial",
            f"0x{secrets.token_hex(16)}",
            "-days",
            str(ROUTER_DAYS),
            "-sha256",
            "-extfile",
            str(tmp / "router.cnf"),
            "-extensions",
            "router_ext",
            "-out",
            str(tmp / "router.crt"),
        )
        _install(tmp / "router.key", files.router_key, 0o600)
        _install(tmp / "router.crt", files.router_cert, 0o644)


def _router_cert_ok(openssl: str, files: CaFiles, names: list[str]) -> bool:
    if not (files.router_cert.is_file() and files.router_key.is_file()):
        return False
    if names and not {f"DNS:{n}" for n in names} <= _san(openssl, files.router_cert):
        return False
    verify = subprocess.run(
        [openssl, "verify", "-CAfile", str(files.ca_cert), str(files.router_cert)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if verify.returncode != 0:
        return False
    fresh = subprocess.run(
        [openssl, "x509", "-noout", "-checkend", str(RENEW_BEFORE_S), "-in", str(files.router_cert)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return fresh.returncode == 0


def _san(openssl: str, cert: Path) -> set[str]:
    out = subprocess.run(
        [openssl, "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    ).stdout
    lines = out.splitlines()[1:]  # after the "X509v3 Subject Alternative Name:" header
    return {item.strip() for line in lines for item in line.split(",") if item.strip()}


def _genkey(openssl: str, path: Path, what: str = "the router's certificate") -> None:
    _run(openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), what=what)
    path.chmod(0o600)


def _run(*cmd: str, what: str = "the router's certificate") -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip()[:200] if lines else f"exit status {done.returncode}"
        raise LabError(f"openssl {cmd[1]} failed while making {what}: {why}")


def _install(src: Path, dest: Path, mode: int) -> None:
    """Move into place atomically (a reader never sees half a file), with ``mode``."""
    src.chmod(mode)
    os.replace(src, dest)


@contextlib.contextmanager
def _workdir(parent: Path) -> Iterator[Path]:
    """A private scratch directory on the same filesystem as the result (so os.replace is atomic)."""
    tmp = Path(tempfile.mkdtemp(prefix=".tls-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _lock(state: Path) -> Iterator[None]:
    """One maker at a time: a second caller waits, then finds the files made."""
    fd = os.open(state / ".tls.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
