"""A gateway's iptables-save text read statically: which rule decides a given packet.

The audit cannot send packets on a production network, so it follows the
filter table's FORWARD chain the way the kernel would for one new connection
(first match wins, jumps into user chains, RETURN, chain policy). Matches it
does not model (u32, sets, marks, ...) are never guessed: such a rule is
taken as not matching and named in the answer, so that a finding can say
what it could not evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

from lab.netfilter import save
from lab.netfilter.rules import LOGGING, NON_TERMINAL, Rule
from lab.netfilter.save import Ruleset

# match modules whose options are all modelled below (or need none)
_MODULES = frozenset({"tcp", "udp", "multiport", "state", "conntrack", "comment"})
_PROTOCOLS = {"tcp": 6, "udp": 17, "6": 6, "17": 17}


def parse(text: str, family: int) -> Ruleset:
    """The rules of `iptables-save` / `ip6tables-save` output (counters ignored)."""
    return save.read(text, family)


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection forwarded by the gateway."""

    source: str
    destination: str
    protocol: str  # "tcp" or "udp"
    port: int
    inside: str  # the interface it arrives on
    source_port: int = 40000


@dataclass(frozen=True)
class Outcome:
    """What the FORWARD chain does with a packet, and on the way."""

    verdict: str  # ACCEPT, DROP, REJECT, or another terminal target
    decided_by: Rule | None  # None: the chain policy decided
    logged_by: tuple[Rule, ...] = ()
    unknown: tuple[Rule, ...] = field(default=())  # rules with matches not modelled

    @property
    def blocks(self) -> bool:
        return self.verdict in ("DROP", "REJECT")

    def cite(self) -> str:
        if self.decided_by is None:
            return f"FORWARD policy {self.verdict}"
        return self.decided_by.in_chain()


class Unmodelled(Exception):
    """A match the audit does not model."""


def follow(rules: Ruleset, packet: Packet) -> Outcome:
    """The filter table's verdict on the packet, the rule that decided and the logs."""
    logged: list[Rule] = []
    unknown: list[Rule] = []

    def walk(chain: str, depth: int) -> tuple[str, Rule | None] | None:
        if depth > 20:
            return None
        for rule in rules.chain("filter", chain):
            try:
                if not matches(rule, packet):
                    continue
            except Unmodelled:
                unknown.append(rule)
                continue
            target = rule.target
            if target in LOGGING:
                logged.append(rule)
            elif target == "RETURN":
                return None
            elif target in chains:
                decided = walk(target, depth + 1)
                if decided is not None or rule.goes_to:
                    return decided
            elif target and target not in NON_TERMINAL:  # no target: the rule only counts
                return target, rule
        return None

    chains = {r.chain for r in rules.rules if r.table == "filter"}

    decided = walk("FORWARD", 0)
    if decided is None:
        policy = rules.policies.get(("filter", "FORWARD"), "ACCEPT")
        return Outcome(policy, None, tuple(logged), tuple(unknown))
    return Outcome(decided[0], decided[1], tuple(logged), tuple(unknown))


def matches(rule: Rule, packet: Packet) -> bool:
    """Whether the rule's matches hold for the packet; `Unmodelled` if one is not modelled."""
    words = list(rule.words)
    i = 0
    while i < len(words):
        negate = words[i] == "!"
        if negate:
            i += 1
        option = words[i]
        if option in ("-j", "--jump", "-g", "--goto"):
            return True
        value = words[i + 1] if i + 1 < len(words) else ""
        i += 2
        if option == "-m" or option == "--match":
            if value not in _MODULES:
                raise Unmodelled(value)
            continue
        if option == "--syn":
            i -= 1  # a flag without a value: the first packet is a SYN
            held = packet.protocol == "tcp"
        elif option == "-f" or option == "--fragment":
            i -= 1
            held = False
        else:
            held = _holds(option, value, packet)
        if held == negate:
            return False
    return True


def _holds(option: str, value: str, packet: Packet) -> bool:
    if option in ("-s", "--source"):
        return _in(packet.source, value)
    if option in ("-d", "--destination"):
        return _in(packet.destination, value)
    if option in ("-i", "--in-interface"):
        return _interface(packet.inside, value)
    if option in ("-o", "--out-interface"):
        # the packet leaves by some interface other than the inside one
        return not _interface(packet.inside, value)
    if option in ("-p", "--protocol"):
        return value == "all" or _PROTOCOLS.get(value) == _PROTOCOLS[packet.protocol]
    if option in ("--dport", "--destination-port", "--dports", "--destination-ports"):
        return _port_in(packet.port, value)
    if option in ("--sport", "--source-port", "--sports", "--source-ports"):
        return _port_in(packet.source_port, value)
    if option in ("--state", "--ctstate"):
        return "NEW" in value.split(",")
    if option == "--comment":
        return True
    raise Unmodelled(option)


def _in(address: str, network: str) -> bool:
    return ip_address(address) in ip_network(network, strict=False)


def _interface(name: str, pattern: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _port_in(port: int, spec: str) -> bool:
    for part in spec.split(","):
        low, _, high = part.partition(":")
        if int(low or 0) <= port <= int(high or low or 65535):
            return True
    return False
