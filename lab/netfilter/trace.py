"""nftables traces: the kernel's per-packet record of the rules a packet met, as `Hit`s.

`nft monitor trace` prints, for each packet whose skb has nftrace set, one line
per step, all with the packet's trace id:

    trace id 03e56573 ip filter FORWARD packet: iif "eth0" … tcp sport 21111 tcp dport 25 …
    trace id 03e56573 ip filter FORWARD rule iifname "eth0" … log # handle 3 (verdict continue)
    trace id 03e56573 ip filter FORWARD rule iifname "eth0" … drop # handle 4 (verdict drop)
    trace id 03e56573 inet filter forward policy accept

A packet passes every base chain of a hook in priority order, and the trace
shows each: the rules that matched with the kernel's verdict for them (an
`accept` ends only its base chain, a `drop` is final), jumps, gotos and
returns, and the policy where a base chain's end was reached. Each line names
exactly the rule the kernel ran (by family, table, chain and handle), so a
verdict cites it without counters. A rule of an iptables-nft table is the
iptables rule at that handle's place in its chain; any other is a native nft
rule, read from the trace's own text.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from lab.netfilter import origin
from lab.netfilter.counters import Hit
from lab.netfilter.rules import Rule

LAB_TABLE = "p25"  # the lab's own table (family inet) that marks the probes' packets
# the probes' source ports (lab.engine.verify.source_ports): below Linux's ephemeral range,
# so the kernel's own connections (mail, logins) are not traced
PROBE_PORTS = range(20000, 32000)

_LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) "
                   r"(?P<kind>packet|rule|verdict|policy|unknown):? ?(?P<rest>.*?)\s*$")
_RULE = re.compile(r"^(?P<text>.*?)\s*(?:# )?handle (?P<handle>\d+)"
                   r"(?: \(verdict (?P<verdict>[^)]*)\))?$")
_PORT = re.compile(r"\b(tcp|udp|sctp|dccp) (sport|dport) (\d+)")
_IP_ID = re.compile(r"\bip id (\d+)")
_IP6 = re.compile(r"\bip6 (?:saddr|daddr|nexthdr)\b")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_COMMENT = re.compile(r'\s*\bcomment "' + re.escape(origin.PREFIX) + r'([^"]*):(\d+)"')
_FAMILY = {"ip": 4, "ip6": 6}
# what a native rule's statement is, in the iptables word a verdict cites (first found)
_ACCEPTING = (("dnat", "DNAT"), ("snat", "SNAT"), ("masquerade", "MASQUERADE"),
              ("redirect", "REDIRECT"), ("netmap", "NETMAP"))


@dataclass(frozen=True)
class Step:
    """One line of a packet's trace: where (family, table, chain) and what happened."""

    family: str
    table: str
    chain: str
    kind: str  # packet, rule, verdict, policy
    text: str  # the packet's headers, the rule's text, or the verdict word(s)
    handle: int = 0
    verdict: str = ""  # a rule's verdict for this packet: continue, accept, drop, jump X, …


@dataclass
class PacketTrace:
    """Every step one packet took in one node, in the kernel's order."""

    node: str
    trace_id: str
    steps: list[Step] = field(default_factory=list)

    @property
    def headers(self) -> str:
        """The packet as the first base chain saw it (before this node rewrote it)."""
        return next((s.text for s in self.steps if s.kind == "packet"), "")

    def carries(self, tag: int) -> bool:
        """The probe's packet or an answer to it: its tag as a port, or as its IPv4 id.

        The id counts only for packets without ports (6in4, later fragments).
        """
        ports = [int(n) for _, _, n in _PORT.findall(self.headers)]
        if ports:
            return tag in ports
        found = _IP_ID.search(self.headers)
        return found is not None and int(found.group(1)) == tag

    def passed(self, step: Step) -> bool:
        """This packet already passed the base chain of `step` (so `step` is another's)."""
        return any(s.kind == "packet" and (s.family, s.table, s.chain) == (
            step.family, step.table, step.chain) for s in self.steps)

    @property
    def ip_family(self) -> int:
        return 6 if _IP6.search(self.headers) else 4

    @property
    def dropped_silently(self) -> bool:
        """The kernel dropped the packet and sent nothing back (a drop, not a reject).

        No answer can come any more: the sender need not wait for one.
        """
        return any((s.kind == "rule" and s.verdict == "drop" and "reject" not in s.text.lower())
                   or (s.kind in ("policy", "verdict") and s.text == "drop")
                   for s in self.steps)


def parse_line(line: str) -> tuple[str, Step] | None:
    """One line of `nft monitor trace` as (trace id, step); None for other lines."""
    found = _LINE.match(line)
    if found is None:
        return None
    kind, rest = found["kind"], found["rest"]
    handle, verdict = 0, ""
    if kind == "unknown" and rest.startswith("rule "):
        # a rule added after the monitor read its cache (fail2ban's ban): no text, only
        # its handle (the reader asks the kernel for its text)
        kind, rest = "rule", rest[len("rule "):]
    if kind == "rule":
        rule = _RULE.match(rest)
        if rule is None:
            return None
        rest, handle, verdict = rule["text"], int(rule["handle"]), rule["verdict"] or ""
    elif kind == "unknown":
        return None
    return found["id"], Step(found["family"], found["table"], found["chain"], kind, rest,
                             handle, verdict)


class Packets:
    """Steps put together per packet as they come (one node's trace, line by line)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.current: dict[str, PacketTrace] = {}

    def add(self, trace_id: str, step: Step) -> tuple[PacketTrace, bool]:
        """The packet `step` belongs to, and whether it is a new one."""
        packet = self.current.get(trace_id)
        if packet is not None and not (step.kind == "packet" and packet.passed(step)):
            packet.steps.append(step)
            return packet, False
        # the kernel's id is the skb's: a later packet may have an earlier one's
        packet = self.current[trace_id] = PacketTrace(self.node, trace_id, [step])
        return packet, True

    def forget(self, trace_id: str) -> None:
        self.current.pop(trace_id, None)


def removes_lab_table(line: str) -> bool:
    """A line of `nft monitor` saying the lab's table was deleted (as `flush ruleset` does)."""
    return line.startswith(f"delete table inet {LAB_TABLE} ") or line.strip() == (
        f"delete table inet {LAB_TABLE}")


def read(node: str, lines: Iterable[str]) -> list[PacketTrace]:
    """The packets of a trace's lines, in the order their first lines came."""
    packets = Packets(node)
    found: list[PacketTrace] = []
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            packet, new = packets.add(*parsed)
            if new:
                found.append(packet)
    return found


# (nft family, table, chain, handle) → the iptables rule at that place; (…, 0) its policy
XtablesRules = Mapping[tuple[str, str, str, int], Rule]
Lookup = Callable[[str, str, str, int], Rule | None]


def xtables_rules(save: Mapping[int, Sequence[Rule]],
                  handles: Mapping[tuple[str, str, str], Sequence[int]]) -> dict[
                      tuple[str, str, str, int], Rule]:
    """The iptables rules of `save` (per IP family, policies at position 0) by nft handle.

    `handles` are each chain's rule handles in the kernel's order: an iptables-nft
    rule's handle at place N is the rule iptables-save prints at position N.
    """
    by_place: dict[tuple[str, str, str, int], Rule] = {}
    for version, rules in save.items():
        nft_family = "ip" if version == 4 else "ip6"
        for r in rules:
            if r.is_policy:
                by_place[nft_family, r.table, r.chain, 0] = r
                continue
            chain = handles.get((nft_family, r.table, r.chain), ())
            if r.position <= len(chain):
                by_place[nft_family, r.table, r.chain, chain[r.position - 1]] = r
    return by_place


def native_rule(node: str, step: Step, ip_family: int) -> Rule:
    """A native nft rule (or, for a policy step, its base chain's policy) from the trace."""
    family = _FAMILY.get(step.family, ip_family)
    if step.kind in ("policy", "verdict"):
        return Rule(node, family, step.table, step.chain, 0, "", step.text.upper(),
                    table_family=step.family)
    text = _COUNTER.sub("counter", step.text)
    source = ""
    comment = _COMMENT.search(text)
    if comment is not None:
        file = urllib.parse.unquote(comment.group(1), errors="surrogateescape")
        source = f"{file}:{comment.group(2)}"
        text = (text[:comment.start()] + text[comment.end():]).strip()
    return Rule(node, family, step.table, step.chain, step.handle, text,
                target_of(text, step.verdict), source=source, table_family=step.family,
                handle=step.handle)


def target_of(text: str, verdict: str) -> str:
    """The iptables word for what a native rule did to this packet (its kernel verdict).

    A verdict map's rule gets the verdict its map gave this packet.
    """
    words = text.split()
    if verdict == "drop":
        return "REJECT" if "reject" in words else "DROP"
    if verdict == "accept":
        return next((word for key, word in _ACCEPTING if key in words), "ACCEPT")
    if verdict.startswith(("jump ", "goto ")):
        return verdict.split(None, 1)[1]
    if verdict == "return":
        return "RETURN"
    if verdict in ("queue", "stolen"):
        return verdict.upper()
    return "LOG" if "log" in words else ""


def hits(packets: Iterable[PacketTrace], xtables: Lookup,
         text_of: Callable[[str, str, str, int], str] | None = None) -> list[Hit]:
    """The rules the packets met (the lab's own table left out), each with its packets.

    A base chain's policy counts where the trace says the packet reached its end.
    An iptables-nft rule is found by `xtables`; every other rule is native, its text
    the trace's (or, where the trace had none, `text_of`'s: what the kernel lists).
    """
    counted: dict[tuple[object, ...], Hit] = {}
    for packet in packets:
        for step in packet.steps:
            if step.kind == "packet" or (step.family == "inet" and step.table == LAB_TABLE):
                continue
            if step.kind == "verdict":
                continue  # a chain's end (continue/return): the caller's rules go on
            rule = xtables(step.family, step.table, step.chain,
                           0 if step.kind == "policy" else step.handle)
            if rule is None:
                if step.kind == "rule" and not step.text and text_of is not None:
                    step = replace(step, text=text_of(step.family, step.table, step.chain,
                                                      step.handle))
                rule = native_rule(packet.node, step, packet.ip_family)
            elif step.kind == "policy" and rule.target != step.text.upper():
                rule = replace(rule, target=step.text.upper())
            verdict = step.text if step.kind == "policy" else step.verdict
            if rule.native and not rule.is_policy and " vmap " in f" {rule.text} ":
                rule = replace(rule, target=target_of("", verdict))
            key = (*rule.key, rule.target)
            old = counted.get(key)
            counted[key] = Hit(rule, (old.packets if old else 0) + 1, verdict)
    return list(counted.values())
