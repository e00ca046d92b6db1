"""YAML and JSON pick lists, read so that every record remembers the line it starts on.

YAML is composed with the safe loader (never `yaml.load`) and JSON is walked with
`raw_decode`, because an editor fixing a 40-item file needs "picks.yaml:57: url: ...",
not "item 12".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from digest.errors import InputError

#: Names other tools and feeds use for our fields.
ALIASES = {
    "link": "url",
    "description": "summary",
    "lead": "summary",
    "image": "image_url",
    "alt": "image_alt",
    "credit": "image_credit",
    "author": "byline",
    "minutes": "read_minutes",
    "reading_time": "read_minutes",
}
TEXT_FIELDS = frozenset(
    {"url", "title", "summary", "section", "image_url", "image_alt", "image_credit", "byline"}
)


@dataclass
class Record:
    """One raw record and where it starts, so errors can point at it."""

    data: Any
    where: str
    line: int | None = None
    mapped: bool = False  # built by us from a feed: no alias/unknown-key checks


def canonical_name(key: str) -> str:
    """`Image-URL`, `image_url` and `image` all mean the field image_url."""
    name = key.strip().lower().replace("-", "_")
    return ALIASES.get(name, name)


def yaml_records(text: str, source: str) -> list[Record]:
    """Compose with the safe loader to keep each item's start line, then construct it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return []
        _refuse_aliases(root, source)
        records = []
        for node in _yaml_items(root, source):
            data = loader.construct_object(node, deep=True)
            if isinstance(node, MappingNode) and isinstance(data, dict):
                _keep_raw_text(node, data)
            records.append(Record(data, source, node.start_mark.line + 1))
        return records
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(
            f"not valid YAML: {exc.problem or exc.context}", source=source, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", source=source) from None
    except RecursionError:
        raise InputError("not valid YAML: nested too deeply", source=source) from None
    finally:
        loader.dispose()


def _yaml_items(root: Node, source: str) -> list[Node]:
    """The picks: a top-level list, or the list under a top-level `picks:` key."""
    if isinstance(root, SequenceNode):
        return list(root.value)
    if isinstance(root, MappingNode):
        items: list[Node] | None = None
        for key, value in root.value:
            line = key.start_mark.line + 1
            if not (isinstance(key, ScalarNode) and key.value == "picks"):
                name = key.value if isinstance(key, ScalarNode) else "?"
                msg = f"unknown top-level key {name!r}; expected a list of picks or 'picks:'"
                raise InputError(msg, source=source, line=line)
            if not isinstance(value, SequenceNode):
                raise InputError("must be a list of picks", source=source, line=line, field="picks")
            items = list(value.value)
        return items or []
    line = root.start_mark.line + 1
    raise InputError("expected a list of picks (or a 'picks:' list)", source=source, line=line)


def _refuse_aliases(root: Node, source: str) -> None:
    """Aliases can multiply a small file into a huge structure; picks never need them."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            line = node.start_mark.line + 1
            raise InputError(
                "YAML anchors and aliases (&, *) are not supported", source=source, line=line
            )
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))


def _keep_raw_text(node: MappingNode, data: dict[Any, Any]) -> None:
    """`title: 1984` or `byline: yes` mean the text as written, not a number or a boolean."""
    for key, value in node.value:
        if not (isinstance(key, ScalarNode) and isinstance(value, ScalarNode)):
            continue
        if (
            canonical_name(key.value) in TEXT_FIELDS
            and value.tag != "tag:yaml.org,2002:null"
            and key.value in data
        ):
            data[key.value] = value.value


# -- JSON ------------------------------------------------------------------------


def json_records(text: str, source: str) -> list[Record]:
    """Walk the top level with raw_decode so each item keeps the line it starts on."""
    decoder = json.JSONDecoder()
    try:
        pos = _skip_ws(text, 0)
        if pos == len(text):
            return []
        if text[pos] == "[":
            items, pos = _json_array(text, pos, decoder)
        elif text[pos] == "{":
            items, pos = _json_picks_object(text, pos, decoder, source)
        else:
            raise InputError("expected a list of picks", source=source, line=_line_at(text, pos))
        pos = _skip_ws(text, pos)
        if pos != len(text):
            raise json.JSONDecodeError("Extra data after the list", text, pos)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply", source=source) from None
    records, line, last = [], 1, 0
    for start, value in items:
        line += text.count("\n", last, start)
        last = start
        records.append(Record(value, source, line))
    return records


def _json_array(
    text: str, pos: int, decoder: json.JSONDecoder
) -> tuple[list[tuple[int, Any]], int]:
    items: list[tuple[int, Any]] = []
    pos = _skip_ws(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return items, pos + 1
    while True:
        start = pos
        value, pos = decoder.raw_decode(text, pos)
        items.append((start, value))
        pos = _skip_ws(text, pos)
        sep = text[pos : pos + 1]
        if sep == "]":
            return items, pos + 1
        if sep != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = _skip_ws(text, pos + 1)


def _json_picks_object(
    text: str, pos: int, decoder: json.JSONDecoder, source: str
) -> tuple[list[tuple[int, Any]], int]:
    """`{"picks": [...]}`: the only top-level key allowed."""
    pos = _skip_ws(text, pos + 1)
    items: list[tuple[int, Any]] = []
    while text[pos : pos + 1] != "}":
        if text[pos : pos + 1] != '"':
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, pos
            )
        key_pos = pos
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos : pos + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip_ws(text, pos + 1)
        line = _line_at(text, key_pos)
        if key != "picks":
            msg = f'unknown top-level key {key!r}; expected a list of picks or "picks"'
            raise InputError(msg, source=source, line=line)
        if text[pos : pos + 1] != "[":
            raise InputError("must be a list of picks", source=source, line=line, field="picks")
        items, pos = _json_array(text, pos, decoder)
        pos = _skip_ws(text, pos)
        if text[pos : pos + 1] == ",":
            pos = _skip_ws(text, pos + 1)
        elif text[pos : pos + 1] != "}":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    return items, pos + 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1
