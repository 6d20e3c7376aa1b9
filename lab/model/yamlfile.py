"""Reading a YAML file a user gives: safely, with line numbers kept for the messages.

`load(path, what)` reads the file as lab.userfiles does (a regular file of at
most `MAX_BYTES`, UTF-8), refuses anchors and aliases (an alias repeats a value
without its bytes: "billion laughs"), repeated keys (the second silently
replaced the first), nesting deeper than `MAX_DEPTH` and lone surrogates, and
returns plain data whose mappings and lists also know their lines (`line_of`).
Every problem is one `BadInput` line: `path:line: message`. The site files and
scenario.yaml are read with it.
"""

from __future__ import annotations

import reprlib
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from lab import userfiles
from lab.errors import BadInput

MAX_BYTES = 4 << 20  # a site file is a few KB; this is room, not a target
# a site nests seven levels deep (routers, gw, interfaces, eth0, ...), a scenario five;
# 500 overflowed the stack
MAX_DEPTH = 16


class LocatedDict(dict[Any, Any]):
    """A YAML mapping, with its own line and each key's."""

    line: int = 0
    key_lines: dict[Any, int]


class LocatedList(list[Any]):
    """A YAML sequence, with its own line and each item's."""

    line: int = 0
    item_lines: list[int]


def line_of(container: Any, key: Any = None) -> int | None:
    """The line of `container` (or of its `key` or item index), when it came from a file."""
    if isinstance(container, LocatedDict):
        return container.key_lines.get(key, container.line) if key is not None \
            else container.line
    if isinstance(container, LocatedList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return None


def subset(mapping: dict[Any, Any], keys: tuple[Any, ...]) -> dict[Any, Any]:
    """Those of the mapping's keys, with their lines still known."""
    part = {k: mapping[k] for k in keys if k in mapping}
    if not isinstance(mapping, LocatedDict):
        return part
    located = LocatedDict(part)
    located.line = mapping.line
    located.key_lines = {k: n for k, n in mapping.key_lines.items() if k in part}
    return located


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors, aliases or repeated keys, shallow, whole characters.

    An alias repeats a value without its bytes ("billion laughs": 457 bytes took 5.9 GB),
    and a repeated key silently replaced the first.
    """

    def __init__(self, stream: str, called: str, needs: str) -> None:
        super().__init__(stream)
        self._called = called
        self._needs = f" ({needs})" if needs else ""
        self._depth = 0
        self._anchor: tuple[str, Any] | None = None  # the first anchor: its name and place

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if self._anchor is not None:  # an anchor no alias used: refused all the same
            name, mark = self._anchor
            raise _refused(self._no_aliases(f"anchor &{name}"), mark)
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: yaml.NodeEvent = self.peek_event()  # type: ignore[no-untyped-call]  # stubs
        if isinstance(event, yaml.AliasEvent):
            raise _refused(self._no_aliases(f"alias *{event.anchor}"), event.start_mark)
        if event.anchor is not None and self._anchor is None:
            self._anchor = (event.anchor, event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise _refused(f"nested deeper than {MAX_DEPTH} levels{self._needs}",
                           event.start_mark)
        self._depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node

    def _no_aliases(self, what: str) -> str:
        return f"{what}: {self._called} takes no anchors or aliases (write the value out)"

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> str:
        value = super().construct_scalar(node)
        try:
            value.encode()
        except UnicodeEncodeError as exc:  # "\ud800": open() and print() raised it later
            raise ConstructorError(None, None, f"{shown(value[exc.start])} is half a character "
                                   "(a lone surrogate): remove it", node.start_mark) from None
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # PyYAML's own check says so
            if key in first:
                raise ConstructorError(None, None, f"duplicate key {shown(key)} (first on line "
                                       f"{first[key].start_mark.line + 1}): give each key once",
                                       key_node.start_mark)
            first[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _refused(problem: str, mark: Any) -> ComposerError:
    """A YAML error at `mark` (Any: the stubs know two Mark classes, PyYAML's and libyaml's)."""
    return ComposerError(None, None, problem, mark)


def shown(value: Any) -> str:
    """A value as an error message quotes it: on one line, and not too long."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]  # as YAML writes them
    return _Shorter().repr(value)


class _Shorter(reprlib.Repr):
    """reprlib's shortening, for the located containers too (it picks a method by type name)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 160

    def repr_LocatedDict(self, value: LocatedDict, level: int) -> str:
        return self.repr_dict(value, level)

    def repr_LocatedList(self, value: LocatedList, level: int) -> str:
        return self.repr_list(value, level)


def _located_mapping(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = LocatedDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        key = loader.constructed_objects.get(key_node)
        if isinstance(key, Hashable):
            data.key_lines[key] = key_node.start_mark.line + 1


def _located_sequence(loader: _Loader, node: yaml.SequenceNode) -> Any:
    data = LocatedList()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _located_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _located_sequence)


def load(path: Path, what: str, max_bytes: int = MAX_BYTES) -> Any:
    """The data of the YAML file at `path` (a `what`, for the messages), or BadInput."""
    return parse(path, userfiles.read_text(path, what, max_bytes), f"a {what}")


def parse(path: Path, text: str, called: str, needs: str = "") -> Any:
    """The data of YAML text read from `path`, or BadInput `path:line: problem`.

    `called` names the file as a sentence's subject ("a site file takes no anchors"),
    `needs` says how deep its kind nests ("a scenario needs five").
    """
    try:
        loader = _Loader(text, called, needs)  # reads the characters: ReaderError
    except yaml.reader.ReaderError as exc:  # a character YAML forbids, such as NUL
        line = text.count("\n", 0, exc.position) + 1
        raise BadInput(f"{path}:{line}: character #x{exc.character:04x} is not allowed "
                       "in YAML (remove it)") from None
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = ", ".join(filter(None, (exc.context, exc.problem))) or "malformed YAML"
        raise BadInput(f"{path}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
