"""YAML loading that remembers the line of every node, so errors can name it.

PyYAML composes a node tree with marks; we build the plain Python data ourselves from that
tree (instead of ``safe_load``) so each value's path maps to its 1-based line, and so a
duplicated key is an error rather than a silent overwrite.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode

from labelgate.guard.policy.errors import PolicyError

Path = tuple[str | int, ...]


class LineMap:
    """Path (keys and list indices) to the line where that value starts."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line_for(self, path: Path) -> int | None:
        """The line of the longest known prefix of ``path`` (missing fields: their parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(text: str, filename: str) -> tuple[Any, LineMap]:
    """Parse ``text``; raise :class:`PolicyError` with the line on syntax errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context else ""
        raise PolicyError(f"YAML syntax error: {problem}{context}", filename, line) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML error: {exc}", filename) from None
    lines = LineMap()
    if node is None:
        return {}, lines
    return _build(node, (), lines, filename, SafeConstructor()), lines


def _build(node: Node, path: Path, lines: LineMap, filename: str, ctor: SafeConstructor) -> Any:
    lines.lines[path] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        ctor.flatten_mapping(node)  # resolves YAML merge keys (<<) like safe_load does
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, ctor)
            if key in out:
                line = key_node.start_mark.line + 1
                where = format_path((*path, key))
                raise PolicyError("duplicate key", filename, line, where)
            out[key] = _build(value_node, (*path, key), lines, filename, ctor)
            # the key's own line is the better pointer (a block value starts a line later)
            lines.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, SequenceNode):
        return [_build(n, (*path, i), lines, filename, ctor) for i, n in enumerate(node.value)]
    return _scalar(node, ctor)


def _scalar(node: Node, ctor: SafeConstructor) -> Any:
    return ctor.construct_object(node, deep=True)
