"""Reading a YAML file a user gives: safely, with line numbers kept for the messages.

`load(path, what)` reads the file as lab.userfiles does (a regular file of at
most `MAX_BYTES`, UTF-8), refuses anchors
and aliases (an alias repeats a value without its bytes: "billion laughs") and
repeated keys (the second silently replaced the first), and returns plain data
whose mappings and lists also know their lines (`line_of`). Every problem is
one `BadInput` line: `path:line: message`.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from lab import userfiles
from lab.errors import BadInput

MAX_BYTES = 4 << 20  # a site file is a few KB; this is room, not a target
MAX_DEPTH = 16  # a site nests seven levels deep (routers, gw, interfaces, eth0, ...)


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
    """PyYAML's safe loader without anchors, aliases or repeated keys, and shallow."""

    what = "YAML file"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._anchor: tuple[str, Any] | None = None

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
            raise _refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node

    def _no_aliases(self, what: str) -> str:
        return f"{what}: a {self.what} takes no anchors or aliases (write the value out)"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # PyYAML's own check says so
            if key in first:
                raise ConstructorError(None, None, f"duplicate key {key!r} (first on line "
                                       f"{first[key].start_mark.line + 1}): give each key once",
                                       key_node.start_mark)
            first[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _refused(problem: str, mark: Any) -> ComposerError:
    """A YAML error at `mark` (Any: the stubs know two Mark classes, PyYAML's and libyaml's)."""
    return ComposerError(None, None, problem, mark)


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
    text = userfiles.read_text(path, what, max_bytes)
    loader = _Loader(text)
    loader.what = what
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
