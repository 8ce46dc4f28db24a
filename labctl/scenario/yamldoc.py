"""The YAML side of scenario validation: nodes with their lines, and one-line errors.

Every problem is one ``ScenarioError``: ``FILE:LINE: FIELD: what is wrong``, with the line taken from PyYAML's
node marks (``yaml.compose``) and the field as a path (``steps[3].wait_for.timeout``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml

from labctl.errors import InvalidInput

MAX_DURATION = 3600.0
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(InvalidInput):
    """One line: ``FILE:LINE: FIELD: message``."""

    def __init__(self, file: str, line: int, fieldpath: str, message: str):
        self.file, self.line, self.field, self.message = file, line, fieldpath, message
        where = f"{file}:{line}: " + (f"{fieldpath}: " if fieldpath else "")
        super().__init__(where + message)


@dataclass
class Duration:
    seconds: float
    text: str


_KIND_NAMES = {
    "tag:yaml.org,2002:str": "a string",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "nothing (null)",
    "tag:yaml.org,2002:timestamp": "a date",
}


def node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KIND_NAMES.get(node.tag, "a value")


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class Doc:
    def __init__(self, file: str):
        self.file = file
        self.loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, fieldpath: str, message: str) -> NoReturn:
        raise ScenarioError(self.file, line_of(node) if node is not None else 1, fieldpath, message)

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(
        self,
        node: yaml.Node,
        path: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...] = (),
        what: str = "",
        unknown: Callable[[str], str] | None = None,
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping{what}, got {node_kind(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not (isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:str"):
                self.fail(knode, path, f"keys must be strings, got {node_kind(knode)}")
            key = knode.value
            sub = f"{path}.{key}" if path else key
            if key not in allowed:
                why = unknown(key) if unknown else f"unknown key (expected one of: {', '.join(allowed)})"
                self.fail(knode, sub, why)
            if key in out:
                self.fail(knode, sub, "given twice")
            out[key] = (knode, vnode)
        for key in required:
            if key not in out:
                self.fail(node, f"{path}.{key}" if path else key, "missing required field")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got {node_kind(node)}")
        return list(node.value)

    def string(self, node: yaml.Node, path: str, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"):
            self.fail(node, path, f"expected a string, got {node_kind(node)}")
        text = node.value
        if pattern is not None and not pattern.match(text):
            self.fail(node, path, f"{text!r} is not valid{': ' + rule if rule else ''}")
        return text

    def integer(self, node: yaml.Node, path: str, lo: int, hi: int) -> int:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(node, path, f"expected a whole number, got {node_kind(node)}")
        if not lo <= value <= hi:
            self.fail(node, path, f"{value} is out of range ({lo} to {hi})")
        return value

    def number(self, node: yaml.Node, path: str, lo: float, hi: float) -> float:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(node, path, f"expected a number, got {node_kind(node)}")
        if not lo <= value <= hi:
            self.fail(node, path, f"{value} is out of range ({lo} to {hi})")
        return float(value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            self.fail(node, path, f"expected true or false, got {node_kind(node)}")
        return value

    def duration(self, node: yaml.Node, path: str) -> Duration:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (
            "tag:yaml.org,2002:str",
            "tag:yaml.org,2002:int",
            "tag:yaml.org,2002:float",
        ):
            self.fail(node, path, f"expected a duration like 500ms, 3s or 2m, got {node_kind(node)}")
        m = _DURATION_RE.match(node.value)
        if not m:
            self.fail(node, path, f"{node.value!r} is not a duration (use e.g. 500ms, 3s, 2m)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if not 0 < seconds <= MAX_DURATION:
            self.fail(node, path, f"{node.value!r} is out of range (more than 0, at most 1h)")
        return Duration(seconds, node.value.strip())
