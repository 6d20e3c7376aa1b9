"""Per-rule packet counters of a router, read from `iptables-save -c`, and their deltas.

The rule that a probe's packet hit is the one whose counter moved while the
probe ran; that is how a verdict names its deciding rule.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)(?: (.*))?$")  # a rule may have no match
_POLICY = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]$")
TERMINAL_DROPS = frozenset({"DROP", "REJECT"})
# the tool that prints a family's rules (with -c: and their counters)
SAVE = {4: "iptables-save", 6: "ip6tables-save"}


@dataclass(frozen=True)
class Rule:
    """A rule (or, with position 0, a built-in chain's policy) and its packet count."""

    router: str
    family: int
    table: str
    chain: str
    position: int  # 1-based within the chain; 0 is the chain policy
    text: str
    target: str
    packets: int

    @property
    def key(self) -> tuple[str, int, str, str, int, str]:
        return (self.router, self.family, self.table, self.chain, self.position, self.text)

    @property
    def is_policy(self) -> bool:
        return self.position == 0

    @property
    def drops(self) -> bool:
        return self.target in TERMINAL_DROPS

    @property
    def is_ban(self) -> bool:
        """A rule fail2ban's stock iptables actions made: its chain is `f2b-<jail>`."""
        return self.chain.startswith("f2b-") and self.drops

    def cite(self) -> str:
        """How a report names the rule: router, table, chain, position and text."""
        tool = "iptables" if self.family == 4 else "ip6tables"
        if self.is_policy:
            return f"{self.router}: {tool} -t {self.table} -P {self.chain} {self.target} (policy)"
        return (f"{self.router}: {tool} -t {self.table} {self.chain}#{self.position}: "
                f"-A {self.chain} {self.text}")


def parse_save(router: str, family: int, text: str) -> list[Rule]:
    """Rules and chain policies of `iptables-save -c` output."""
    rules: list[Rule] = []
    table = ""
    positions: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table, positions = line[1:].strip(), {}
        elif (m := _POLICY.match(line)) and m.group(2) != "-":
            rules.append(Rule(router, family, table, m.group(1), 0, "", m.group(2),
                              int(m.group(3))))
        elif m := _RULE.match(line):
            chain = m.group(3)
            positions[chain] = positions.get(chain, 0) + 1
            text = m.group(4) or ""
            rules.append(Rule(router, family, table, chain, positions[chain], text,
                              _target(text), int(m.group(1))))
    return rules


def _target(text: str) -> str:
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    for flag in ("-j", "-g"):
        if flag in words and words.index(flag) + 1 < len(words):
            return words[words.index(flag) + 1]
    return ""


@dataclass(frozen=True)
class Hit:
    """A rule whose counter moved during a probe, by how many packets."""

    rule: Rule
    packets: int


def hits(before: list[Rule], after: list[Rule]) -> list[Hit]:
    """Rules whose counters grew between two snapshots, in table/chain order."""
    old = {r.key: r.packets for r in before}
    return [Hit(r, r.packets - old.get(r.key, 0)) for r in after
            if r.packets > old.get(r.key, 0)]
