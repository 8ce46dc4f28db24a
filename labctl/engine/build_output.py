"""The engine's build output as text: its lines, which of them are the builder's own, and the one that says why
a build failed. Pure: no Docker here (``engine/build.py`` runs builds, ``engine/buildpack.py`` shows them)."""

from __future__ import annotations

import re
from collections.abc import Iterable

NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built )")
"""The classic builder's own lines: layer ids, intermediate containers, the final image id."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PY_EXCEPTION = re.compile(r"^([a-z_]\w*\.)*[A-Z]\w*(Error|Exception|Configured|Exit): ")


def lines(text: str) -> Iterable[str]:
    """The non-empty lines of a chunk of build output, colours removed, progress bars at their final state."""
    for line in _ANSI.sub("", text).splitlines():  # the engine paints a step's stderr red
        line = line.rsplit("\r", 1)[-1].rstrip()  # progress bars redraw with \r: keep the final state
        if line:
            yield line


def meaningful(lines: list[str]) -> str:
    """The line of a failed build's output that says why, from the failing step's output: pip's and apt's
    ``ERROR:``/``E:`` lines first, then a Python traceback's last line."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Step ")]
    lines = lines[starts[-1] + 1 :] if starts else lines
    for line in reversed(lines):
        if re.match(r"^\s*(ERROR|E|error|fatal|FATAL):", line):
            return line.strip()[:300]
    for line in reversed(lines):
        if _PY_EXCEPTION.match(line):
            return line.strip()[:300]
    for line in reversed(lines):
        if not (line.startswith("Step ") or NOISE.match(line) or "returned a non-zero code" in line):
            return line.strip()[:300]
    return ""
