"""Where a lab keeps its state: ``$LABCTL_STATE_DIR`` or ``$XDG_STATE_HOME/labctl/<lab>`` (~/.local/state).

Files: ``lab.json`` (settings: ``labctl/settings.py``, imported where they are read, as the API client never
does), ``token`` (0600), ``lab.db`` (SQLite), ``api.json`` (the controller's
port and pid, written atomically once it listens), ``controller.log``, ``swarm-tls/`` (the swarm nodes' client
certificate, when ``labctl up --swarm-tls-dir`` gave one).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import InvalidInput, LabError

if TYPE_CHECKING:
    from labctl.settings import Settings

_LAB_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
SWARM_TLS = "swarm-tls"  # the lab's copy of the swarm nodes' client certificate, in its state directory


def validate_lab_name(lab: str) -> str:
    if not _LAB_RE.match(lab):
        raise InvalidInput(f"Invalid lab name {lab!r}: lowercase letters, digits and dashes, at most 31 chars")
    return lab


class LabDir:
    def __init__(self, lab: str):
        self.lab = validate_lab_name(lab)
        base = os.environ.get("LABCTL_STATE_DIR")
        if base:
            root = Path(base)
        else:
            xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
            root = Path(xdg) / "labctl"
        self.path = root / lab

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file("lab.json").exists()

    def create(self, settings: Settings) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.path, 0o700)
            _write_atomic(self.file("lab.json"), settings.to_json())
            if not self.file("token").exists():
                _write_atomic(self.file("token"), _new_token(), mode=0o600)
        except OSError as err:
            raise LabError(f"Cannot write the lab's state directory {self.path}: {err.strerror}") from None

    def settings(self) -> Settings:
        from labctl.settings import Settings

        try:
            return Settings(**json.loads(self.file("lab.json").read_text()))
        except FileNotFoundError:
            raise LabError(f"Lab {self.lab!r} is not up. Run: labctl up") from None
        except (ValueError, TypeError) as err:
            raise LabError(f"Lab settings {self.file('lab.json')} are unreadable: {err}") from None

    def save_settings(self, settings: Settings) -> None:
        _write_atomic(self.file("lab.json"), settings.to_json())

    def token(self) -> str:
        try:
            return self.file("token").read_text().strip()
        except FileNotFoundError:
            raise LabError(f"Lab {self.lab!r} is not up. Run: labctl up") from None
        except PermissionError:
            raise LabError(f"Cannot read the lab's token {self.file('token')}: permission denied") from None

    def api(self) -> dict | None:
        try:
            return json.loads(self.file("api.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def write_api(self, port: int, pid: int) -> None:
        _write_atomic(self.file("api.json"), json.dumps({"port": port, "pid": pid}))


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _new_token() -> str:
    import secrets  # here: only `labctl up` makes a token, every other command only reads it

    return secrets.token_urlsafe(32)
