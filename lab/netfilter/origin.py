"""Where a loaded rule came from: each rule the lab loads is tagged with its file and line.

The kernel keeps no source line, and mapping its rules back to the commands
that made them is guesswork once rules are inserted, replaced or rewritten
(fail2ban, -I, the kernel's own rendering). So the kernel carries it: every
rule the lab loads from a policy gets one more match, an iptables comment
`-m comment --comment p25:FILE:LINE`, right after its chain (in the lab's
loaded copy only: the user's file is never changed). The save reader
(lab.netfilter.save) takes it off again, so a rule's text is what the kernel
prints without it, and its `source` is `FILE:LINE`. A rule's own comments stay:
the kernel keeps several comment matches, in their order.

The file name is percent-encoded in the tag, so no quoting (iptables-save's
or a save file's) can change it; a tag is at most 255 bytes (the kernel cuts
longer comments silently), so a long file name loses its beginning
(`…/rules.sh:17`).
"""

from __future__ import annotations

import functools
import itertools
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "p25:"
LIMIT = 255  # bytes: xt_comment's 256 with its NUL
_SAFE = "/._-:@+,=~"  # kept as they are in a tag; all else is %XX (never a quote or space)
_SHORTENED = "…"
# the tag as iptables-save prints it: a match of its own, quoted or not
_TAG = re.compile(r'(?:^|\s)-m comment --comment ("?)' + re.escape(PREFIX)
                  + r'([A-Za-z0-9%' + re.escape(_SAFE) + r']*):(\d+)\1(?=\s|$)')
# a save file's rule line: its counters, `-A`, its chain
_SAVE_RULE = re.compile(r"^(\s*(?:\[\d+:\d+\]\s*)?-A\s+\S+)(?=\s|$)")
# the commands that name a rule, long and short; and those that change whole chains
_COMMANDS = {"-A": "-A", "--append": "-A", "-I": "-I", "--insert": "-I", "-R": "-R",
             "--replace": "-R", "-D": "-D", "--delete": "-D", "-C": "-C", "--check": "-C"}
_CHAIN_COMMANDS = {"-F": "-F", "--flush": "-F", "-E": "-E", "--rename-chain": "-E"}


def tag(file: str, line: int, limit: int = LIMIT) -> str:
    """The comment that says where a rule was written: `p25:FILE:LINE`, at most `limit` bytes.

    (An nft rule comment holds 128 bytes: lab.netfilter.nft gives its limit.)
    """
    pieces = [_quoted(c) for c in file]  # by character: a cut never splits one
    budget = limit - len(PREFIX) - len(f":{line}")
    if sum(map(len, pieces)) > budget:
        budget -= len(_quoted(_SHORTENED))
        kept: list[str] = []
        for piece in reversed(pieces):
            if len(piece) > budget:
                break
            kept.append(piece)
            budget -= len(piece)
        pieces = [_quoted(_SHORTENED), *reversed(kept)]
    return f"{PREFIX}{''.join(pieces)}:{line}"


@functools.lru_cache(maxsize=4096)  # a tag per rule, quoted by character: thousands a file
def _quoted(text: str) -> str:
    # surrogateescape: a file name that is no UTF-8 keeps its bytes
    return urllib.parse.quote(text, safe=_SAFE, errors="surrogateescape")


def untag(text: str) -> tuple[str, str]:
    """A rule's text without the lab's tag, and the source the tag names ('' if none)."""
    found = _TAG.search(text)
    if found is None:
        return text, ""
    rest = (text[:found.start()] + text[found.end():]).strip()
    file = urllib.parse.unquote(found.group(2), errors="surrogateescape")
    return rest, f"{file}:{found.group(3)}"


_WHOLE_TAG = re.compile(re.escape(PREFIX) + r'([A-Za-z0-9%' + re.escape(_SAFE) + r']*):(\d+)')


def source(comment: str) -> str:
    """The `FILE:LINE` a comment that is the lab's tag names ('' if it is not one)."""
    found = _WHOLE_TAG.fullmatch(comment)
    if found is None:
        return ""
    return f"{urllib.parse.unquote(found.group(1), errors='surrogateescape')}:{found.group(2)}"


@dataclass(frozen=True)
class Spec:
    """Where an iptables command names a rule: its command, table, chain, and rule words."""

    command: str  # -A, -I, -R (they add a rule) or -D, -C (they name one)
    table: str
    chain: str
    at: int  # the index of the rule's first word in the argv: where the tag goes
    number: int | None = None  # the rule number -I, -R or -D gives

    @property
    def adds(self) -> bool:
        return self.command in ("-A", "-I", "-R")

    @property
    def by_words(self) -> bool:
        """-D or -C naming the rule by its words (which the tag is missing from)."""
        return self.command in ("-D", "-C") and self.number is None


def spec(argv: Sequence[str]) -> Spec | None:
    """Where the command names a rule, or None (-N, -P, -F, a form not read, …).

    Only the plain forms are read (`-A CHAIN`, `--append CHAIN`, `-t nat`,
    `--table nat`, `--table=nat`); a command in any other form is loaded untagged.
    """
    table, found = _table(argv), _command(argv, _COMMANDS)
    if found is None or found + 1 >= len(argv):
        return None
    command = _COMMANDS[argv[found]]
    chain, after = argv[found + 1], argv[found + 2] if found + 2 < len(argv) else ""
    number = int(after) if after.isdigit() and command in ("-I", "-R", "-D") else None
    if command == "-R" and number is None:
        return None  # iptables will refuse it as written
    return Spec(command, table, chain, found + 2 + (number is not None), number)


class ChainTags:
    """The tags of the rules one policy loaded, chain by chain, in the kernel's order.

    It follows the commands that succeeded (-A, -I, -R, -D, -F, -E), so that a
    rule named by its words (-D, -C) is looked for as iptables looks for it: the
    first match in the chain. A rule loaded untagged holds its place as ''.
    """

    def __init__(self) -> None:
        self._chains: dict[tuple[int, str, str], list[str]] = {}

    def in_chain(self, family: int, table: str, chain: str) -> list[str]:
        return [t for t in self._chains.get((family, table, chain), []) if t]

    def ran(self, family: int, argv: Sequence[str], said: str = "") -> None:
        """A command succeeded; `said`: the tag its rule was loaded or found with."""
        where = spec(argv)
        if where is None:
            self._chains_changed(family, argv)
            return
        tags = self._chains.setdefault((family, where.table, where.chain), [])
        at = (where.number or 1) - 1
        if where.command == "-A":
            tags.append(said)
        elif where.command == "-I":
            tags.insert(at, said)
        elif where.command == "-R" and at < len(tags):
            tags[at] = said
        elif where.command == "-D" and where.number is not None and at < len(tags):
            del tags[at]
        elif where.command == "-D" and said in tags:
            tags.remove(said)

    def _chains_changed(self, family: int, argv: Sequence[str]) -> None:
        found = _command(argv, _CHAIN_COMMANDS)
        if found is None:
            return
        command, table = _CHAIN_COMMANDS[argv[found]], _table(argv)
        named = list(itertools.takewhile(lambda w: not w.startswith("-"),
                                         argv[found + 1:found + 3]))
        if command == "-E" and len(named) == 2:
            self._chains[family, table, named[1]] = self._chains.pop(
                (family, table, named[0]), [])
        elif named:  # -F CHAIN
            self._chains.pop((family, table, named[0]), None)
        else:  # -F: every chain of the table
            for key in [k for k in self._chains if k[:2] == (family, table)]:
                del self._chains[key]


def _table(argv: Sequence[str]) -> str:
    table = "filter"
    for i, word in enumerate(argv):
        if word in ("-t", "--table") and i + 1 < len(argv):
            table = argv[i + 1]
        elif word.startswith("--table="):
            table = word.partition("=")[2]
    return table


def _command(argv: Sequence[str], commands: dict[str, str]) -> int | None:
    return next((i for i, word in enumerate(argv) if word in commands), None)


def tagged(argv: Sequence[str], where: Spec, said: str) -> list[str]:
    """The command with the tag as the rule's first match."""
    return [*argv[:where.at], "-m", "comment", "--comment", said, *argv[where.at:]]


def tagged_save(text: str, file: str) -> str:
    """A save file with each `-A` line tagged with its line; every other byte kept."""
    lines = text.splitlines(keepends=True)  # numbered as lab.netfilter.save.lines numbers them
    for number, line in enumerate(lines, 1):
        if found := _SAVE_RULE.match(line):
            lines[number - 1] = (f"{found.group(1)} -m comment --comment {tag(file, number)}"
                                 f"{line[found.end():]}")
    return "".join(lines)
