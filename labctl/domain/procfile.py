"""The Procfile grammar (lab-spec §2: a release is built from a directory with a Procfile)."""

from __future__ import annotations

import re

from labctl.domain.names import validate_process_type
from labctl.errors import InvalidInput

_PROCFILE_LINE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")


def parse_procfile(text: str) -> dict[str, str]:
    """Parse a Procfile (``type: command`` per line) into an ordered ``{type: command}``.

    Blank lines and ``#`` comments are ignored. Raises InvalidInput naming the line for anything else.
    """
    procs: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROCFILE_LINE.match(line)
        if not m or not m.group(2).strip():
            raise InvalidInput(f"Procfile line {n}: expected 'TYPE: COMMAND', got {line[:60]!r}")
        ptype, command = m.group(1), m.group(2).strip()
        try:
            validate_process_type(ptype)
        except InvalidInput:
            raise InvalidInput(
                f"Procfile line {n}: invalid process type {ptype!r} (lowercase letters, "
                "digits, '_' and '-', starting with a letter)"
            ) from None
        if ptype in procs:
            raise InvalidInput(f"Procfile line {n}: process type {ptype!r} is declared twice")
        procs[ptype] = command
    return procs
