"""The lab's CA in this machine's trust stores, as mkcert puts its own there (``labctl certs --install``).

Three kinds of store, each tried on its own and reported on its own line:

* the **system** store (Debian/Ubuntu: ``/usr/local/share/ca-certificates`` + ``update-ca-certificates``): curl,
  Python, wget. Needs root.
* the **NSS shared database** ``~/.pki/nssdb``: Chromium and Chrome on Linux keep their own trust store there and
  ignore the system one. Created when missing (Chromium creates the same database on its first run). Needs
  ``certutil`` (Debian: ``libnss3-tools``), no root.
* **Firefox profiles** (``~/.mozilla/firefox/*`` and the snap's copy): each profile's ``cert9.db``.

``LABCTL_TRUST_STORES`` (like mkcert's ``TRUST_STORES``: a comma-separated subset of ``system,nss``; ``nss``
covers Firefox too) limits which kinds are touched.

Nothing here talks to Docker or the lab: it takes the CA file and the lab's name (the certificate's nickname in NSS
and its file name in the system store, so that two labs' CAs can be installed and removed independently).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIR = Path("/usr/local/share/ca-certificates")
FIREFOX_GLOBS = (".mozilla/firefox/*", "snap/firefox/common/.mozilla/firefox/*")


@dataclass(frozen=True)
class Outcome:
    store: str  # "system", "nss", "firefox:<profile>"
    changed: bool
    detail: str  # one line for the user
    ok: bool = False  # the store is now as asked (the CA trusted after install, absent after uninstall)


def nickname(lab: str) -> str:
    return f"labctl {lab} CA"


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def nss_databases(create: bool) -> list[tuple[str, Path]]:
    """(store name, database directory) for the shared NSS database and every Firefox profile found."""
    home = _home()
    shared = home / ".pki" / "nssdb"
    found: list[tuple[str, Path]] = []
    if shared.is_dir() or create:
        found.append(("nss", shared))
    for pattern in FIREFOX_GLOBS:
        for profile in sorted(home.glob(pattern)):
            if (profile / "cert9.db").is_file():
                found.append((f"firefox:{profile.name}", profile))
    return found


def _certutil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["certutil", *args], capture_output=True, text=True, timeout=30)


def _nss_has(db: Path, name: str) -> bool:
    return _certutil("-L", "-d", f"sql:{db}", "-n", name).returncode == 0


def stores() -> set[str]:
    """The kinds of store to touch: ``LABCTL_TRUST_STORES`` or all of them."""
    from labctl.errors import InvalidInput

    asked = {s.strip() for s in os.environ.get("LABCTL_TRUST_STORES", "system,nss").split(",") if s.strip()}
    if not asked or asked - {"system", "nss"}:
        raise InvalidInput(f"LABCTL_TRUST_STORES must name system and/or nss, not {sorted(asked - {'system', 'nss'})}")
    return asked


def install(lab: str, ca: Path) -> list[Outcome]:
    kinds = stores()
    system = [_system_install(lab, ca)] if "system" in kinds else []
    return system + (_nss_each(lab, ca, install=True) if "nss" in kinds else [])


def uninstall(lab: str) -> list[Outcome]:
    kinds = stores()
    system = [_system_uninstall(lab)] if "system" in kinds else []
    return system + (_nss_each(lab, None, install=False) if "nss" in kinds else [])


def _system_install(lab: str, ca: Path) -> Outcome:
    dest = SYSTEM_DIR / f"labctl-{lab}.crt"
    if not shutil.which("update-ca-certificates"):
        return Outcome("system", False, "system store: skipped (no update-ca-certificates on this machine)")
    if dest.is_file() and dest.read_bytes() == ca.read_bytes():
        return Outcome("system", False, f"system store: already trusted ({dest})", ok=True)
    try:
        SYSTEM_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca, dest)
        subprocess.run(["update-ca-certificates"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        return Outcome("system", False, f"system store: not changed ({_why(err)}; it needs root)")
    return Outcome("system", True, f"system store: installed {dest} (curl, Python, wget trust it now)", ok=True)


def _system_uninstall(lab: str) -> Outcome:
    dest = SYSTEM_DIR / f"labctl-{lab}.crt"
    if not dest.exists():
        return Outcome("system", False, "system store: not installed there", ok=True)
    try:
        dest.unlink()
        subprocess.run(["update-ca-certificates"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        return Outcome("system", False, f"system store: not changed ({_why(err)}; it needs root)")
    return Outcome("system", True, f"system store: removed {dest}", ok=True)


def _nss_each(lab: str, ca: Path | None, install: bool) -> list[Outcome]:
    if not shutil.which("certutil"):
        return [
            Outcome(
                "nss",
                False,
                "browser stores (Chromium's ~/.pki/nssdb, Firefox): skipped, certutil is missing "
                "(Debian: apt-get install libnss3-tools)",
            )
        ]
    name = nickname(lab)
    outcomes = []
    for store, db in nss_databases(create=install):
        label = "Chromium's NSS database" if store == "nss" else f"Firefox profile {db.name}"
        try:
            if install:
                assert ca is not None
                if not db.is_dir():
                    db.mkdir(parents=True, mode=0o700)
                    _check(_certutil("-N", "-d", f"sql:{db}", "--empty-password"))
                if _nss_has(db, name):
                    _check(_certutil("-D", "-d", f"sql:{db}", "-n", name))  # a new CA replaces the lab's old one
                _check(_certutil("-A", "-d", f"sql:{db}", "-t", "C,,", "-n", name, "-i", str(ca)))
                outcomes.append(Outcome(store, True, f"{label}: installed as {name!r} ({db})", ok=True))
            elif _nss_has(db, name):
                _check(_certutil("-D", "-d", f"sql:{db}", "-n", name))
                outcomes.append(Outcome(store, True, f"{label}: removed {name!r} ({db})", ok=True))
            else:
                outcomes.append(Outcome(store, False, f"{label}: not installed there ({db})", ok=True))
        except (OSError, subprocess.SubprocessError) as err:
            outcomes.append(Outcome(store, False, f"{label}: not changed ({_why(err)})"))
    if not outcomes:
        outcomes.append(Outcome("nss", False, "browser stores: none found (no ~/.pki/nssdb, no Firefox profile)"))
    return outcomes


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)


def _why(err: Exception) -> str:
    if isinstance(err, subprocess.CalledProcessError):
        text = (err.stderr or err.stdout or "").strip().splitlines()
        return text[-1] if text else f"exit {err.returncode}"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)
