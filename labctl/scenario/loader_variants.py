"""``variants:`` of a scenario file (docs/scenarios.md "What-if runs"): named sets of values for ``{{name}}``
placeholders, applied to the YAML nodes before the file is validated.

A string containing ``{{name}}`` gets the variant's value written in; a value that is exactly ``"{{name}}"`` is
replaced by the variant's value as YAML (a list, a mapping, a number); a list item that is exactly
``"{{name}}"`` whose value is a list is replaced by that list's items (a variant replaces steps). A placeholder the
variant does not define is an error at the placeholder's line.
"""

from __future__ import annotations

import re

import yaml

from labctl.scenario.yamldoc import Doc

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
STR = "tag:yaml.org,2002:str"


def read(doc: Doc, node: yaml.Node) -> dict[str, dict[str, yaml.Node]]:
    """The ``variants`` mapping: variant name → placeholder name → value node (in the file's order)."""
    out: dict[str, dict[str, yaml.Node]] = {}
    if not isinstance(node, yaml.MappingNode) or not node.value:
        doc.fail(node, "variants", "expected a mapping of variant names to their values")
    for kn, vn in node.value:
        name = doc.string(kn, "variants", _NAME_RE, "lowercase letters, digits, '-', '_' and '.'")
        if name in out:
            doc.fail(kn, f"variants.{name}", "given twice")
        values: dict[str, yaml.Node] = {}
        if not isinstance(vn, yaml.MappingNode):
            doc.fail(vn, f"variants.{name}", "expected a mapping of placeholder names to values")
        for pk, pv in vn.value:
            key = doc.string(pk, f"variants.{name}", re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"), "a placeholder name")
            values[key] = pv
        out[name] = values
    return out


def apply(doc: Doc, node: yaml.Node, values: dict[str, yaml.Node], variant: str, path: str = "") -> yaml.Node:
    """``node`` with the placeholders filled in from ``values`` (nodes are copied where they change)."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag != STR or "{{" not in node.value:
            return node
        whole = _PLACEHOLDER.fullmatch(node.value.strip())
        if whole:
            return _value(doc, node, values, whole.group(1), variant, path)

        def sub(m: re.Match[str]) -> str:
            v = _value(doc, node, values, m.group(1), variant, path)
            if not isinstance(v, yaml.ScalarNode):
                doc.fail(node, path, f"{{{{{m.group(1)}}}}} of variant {variant!r} is not a plain value: "
                         "write the placeholder alone, quoted, to put a list or mapping there")  # fmt: skip
            return str(v.value)

        return yaml.ScalarNode(STR, _PLACEHOLDER.sub(sub, node.value), node.start_mark, node.end_mark, node.style)
    if isinstance(node, yaml.SequenceNode):
        items: list[yaml.Node] = []
        for i, item in enumerate(node.value, 1):
            new = apply(doc, item, values, variant, f"{path}[{i}]")
            is_marker = isinstance(item, yaml.ScalarNode) and _PLACEHOLDER.fullmatch(str(item.value).strip())
            if is_marker and isinstance(new, yaml.SequenceNode):
                items.extend(new.value)  # a list in place of one item: the variant's steps
            else:
                items.append(new)
        return yaml.SequenceNode(node.tag, items, node.start_mark, node.end_mark, node.flow_style)
    if isinstance(node, yaml.MappingNode):
        pairs = []
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            pairs.append((k, apply(doc, v, values, variant, f"{path}.{key}" if path else str(key))))
        return yaml.MappingNode(node.tag, pairs, node.start_mark, node.end_mark, node.flow_style)
    return node


def _value(doc: Doc, at: yaml.Node, values: dict[str, yaml.Node], name: str, variant: str, path: str) -> yaml.Node:
    if name not in values:
        known = ", ".join(values) or "none"
        doc.fail(at, path, f"{{{{{name}}}}} is not defined by variant {variant!r} (it defines: {known})")
    return values[name]


def placeholders_without_variants(doc: Doc, node: yaml.Node, path: str = "") -> None:
    """A file without ``variants:`` must not use placeholders: the first one found is an error."""
    if isinstance(node, yaml.ScalarNode) and node.tag == STR and _PLACEHOLDER.search(node.value):
        doc.fail(node, path, f"{node.value!r} uses a placeholder, but the file declares no variants")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value, 1):
            placeholders_without_variants(doc, item, f"{path}[{i}]")
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            placeholders_without_variants(doc, v, f"{path}.{key}" if path else str(key))
