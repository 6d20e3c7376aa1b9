"""The save dialect: what `iptables-save` / `ip6tables-save` print (`-c`: with counters).

One reader for every use: a router's rules and counters after each probe, a
gateway's rules for the audit and its twin, a save file given as a policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lab.netfilter.rules import Rule, target_of, words_of

_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s*")


@dataclass(frozen=True)
class Chain:
    """A `:CHAIN POLICY [packets:bytes]` line; policy "-" is a user chain."""

    table: str
    name: str
    policy: str
    packets: int
    line: int

    @property
    def builtin(self) -> bool:
        return self.policy != "-"


@dataclass(frozen=True)
class Ruleset:
    """The tables of one family: chains with their policies and rules, in the save's order."""

    family: int
    chains: tuple[Chain, ...]
    rules: tuple[Rule, ...]  # without the policies (see `with_policies`)

    @property
    def policies(self) -> dict[tuple[str, str], str]:
        """(table, built-in chain) → policy."""
        return {(c.table, c.name): c.policy for c in self.chains if c.builtin}

    def chain(self, table: str, chain: str) -> list[Rule]:
        return [r for r in self.rules if r.table == table and r.chain == chain]

    @property
    def empty(self) -> bool:
        return not self.rules and all(p == "ACCEPT" for p in self.policies.values())

    def with_policies(self, router: str = "") -> list[Rule]:
        """The rules and (at position 0) the built-in chains' policies, in the save's order."""
        policies = [Rule(router, self.family, c.table, c.name, 0, "", c.policy, c.packets,
                         c.line) for c in self.chains if c.builtin]
        return sorted([*policies, *self.rules], key=lambda r: r.line)


def lines(text: str) -> Iterator[tuple[int, str, int | None]]:
    """Each meaningful line: its number, its text without counters, and its packet count."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        packets = None
        if match := _COUNTERS.match(line):
            packets, line = int(match.group(1)), line[match.end():]
        yield number, line, packets


def read(text: str, family: int, router: str = "") -> Ruleset:
    """The chains and rules of save output; lines of other shapes are not rules."""
    table = ""
    chains: list[Chain] = []
    rules: list[Rule] = []
    positions: dict[tuple[str, str], int] = {}
    for number, line, packets in lines(text):
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            fields = line[1:].split()
            policy = fields[1] if len(fields) > 1 else "-"
            counted = _COUNTERS.match(fields[2]) if len(fields) > 2 else None
            chains.append(Chain(table, fields[0] if fields else "", policy,
                                int(counted.group(1)) if counted else 0, number))
        elif line.startswith("-A "):
            head, _, rest = line[3:].strip().partition(" ")
            positions[table, head] = positions.get((table, head), 0) + 1
            rest = rest.strip()
            rules.append(Rule(router, family, table, head, positions[table, head], rest,
                              target_of(words_of(rest)), packets or 0, number))
    return Ruleset(family, tuple(chains), tuple(rules))
