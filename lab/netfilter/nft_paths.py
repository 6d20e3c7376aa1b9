"""A gateway's nftables ruleset (`nft -j list ruleset`) read statically: which rule decides.

The nftables counterpart of `lab.netfilter.ruleset`, for one new connection:
every base chain on the packet's hook runs, of every table whose family applies
(ip or ip6, and inet for both), in priority order; an `accept` ends only its
base chain, a `drop` or `reject` anywhere is final; `jump`, `goto`, `return`,
chain policies, anonymous and named sets (elements, prefixes, ranges,
concatenations), verdict maps; dnat in prerouting rewrites the destination the
later hooks see. A table iptables-nft keeps (one `iptables-save` prints) is
decided by `lab.netfilter.ruleset` from the iptables rules, where it is the
filter table's FORWARD, so that no rule is read twice.

What is not modelled is never guessed: a rule with an unknown expression that
could decide ends the walk with the verdict `CANNOT TELL`, citing that rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from lab.netfilter import origin, ruleset
from lab.netfilter.rules import Rule
from lab.netfilter.save import Ruleset

CANNOT_TELL = "CANNOT TELL"
_FAMILIES = {4: ("ip", "inet"), 6: ("ip6", "inet")}
_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132,
              "dccp": 33, "udplite": 136, "esp": 50, "ah": 51, "gre": 47}
_TRANSPORT = {"tcp", "udp", "sctp", "dccp", "udplite"}  # what `th` reads ports of
_VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT", "return": "RETURN",
             "queue": "QUEUE", "dnat": "DNAT", "snat": "SNAT", "masquerade": "MASQUERADE",
             "redirect": "REDIRECT"}
# statements after which the packet goes on to the next expression
_GOES_ON = frozenset({"counter", "limit", "quota", "notrack", "set", "ct helper",
                      "synproxy", "flow", "meter"})
_MAX_DEPTH = 32  # jumps; the kernel refuses loops, a hand-made JSON might not


class CannotTell(Exception):
    """An expression the follower does not model (its words say which)."""


@dataclass(frozen=True)
class Packet(ruleset.Packet):
    """A new connection's first packet at a hook (`inside`: iifname, `outside`: oifname).

    `outside` is '' where the route out is not known (an `oifname` match then
    cannot be told); `payload` is the UDP payload, for raw `@th` matches.
    """

    outside: str = ""
    payload: bytes = b""
    hook: str = "forward"

    @property
    def version(self) -> int:
        return ip_address(self.source).version


@dataclass(frozen=True)
class Outcome(ruleset.Outcome):
    """What the hook's base chains do with a packet: the decision and each chain's part."""

    chains: tuple[str, ...] = ()  # each base chain the packet passed, with its verdict
    rewritten: str = ""  # the destination a dnat gave it (`192.0.2.25:587`), if one did
    diverted_by: Rule | None = None  # that dnat's rule
    masqueraded_by: Rule | None = None

    @property
    def cannot_tell(self) -> bool:
        return self.verdict == CANNOT_TELL

    def cite(self) -> str:
        if self.decided_by is None:
            return "no base chain on the way"
        return self.decided_by.in_chain()


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    hook: str = ""
    priority: int = 0
    policy: str = "accept"
    type: str = ""
    device: str = ""
    legacy: bool = False  # iptables-legacy's filter FORWARD, hooked beside nftables

    @property
    def base(self) -> bool:
        return bool(self.hook)

    def policy_rule(self) -> Rule:
        return Rule("", 6 if self.family == "ip6" else 4, self.table, self.name, 0, "",
                    self.policy.upper(), table_family=self.family)


@dataclass(frozen=True)
class NftRule:
    rule: Rule
    expr: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class NftRuleset:
    """The tables, chains, sets and rules of one `nft -j list ruleset`."""

    tables: tuple[tuple[str, str], ...]  # (family, name), in the listing's order
    chains: tuple[Chain, ...]
    rules: dict[tuple[str, str, str], tuple[NftRule, ...]] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def chain(self, family: str, table: str, name: str) -> Chain | None:
        return next((c for c in self.chains if (c.family, c.table, c.name)
                     == (family, table, name)), None)

    def base_chains(self, hook: str, version: int) -> list[Chain]:
        """The base chains a packet of that family passes on the hook, in priority order.

        Chains of equal priority run in no order the kernel promises; the listing's is kept.
        """
        return sorted((c for c in self.chains if c.hook == hook and c.type != "route"
                       and c.family in _FAMILIES[version]), key=lambda c: c.priority)

    def table_rules(self, family: str, table: str) -> list[Rule]:
        return [r.rule for (f, t, _), rules in self.rules.items() if (f, t) == (family, table)
                for r in rules]


def parse(data: str, text: str = "") -> NftRuleset:
    """`nft -j list ruleset` output; `text`, the same ruleset as `nft list ruleset` printed it,
    gives each rule its text and line (else a rule is shown by its JSON).

    ValueError where it is no nft JSON.
    """
    objects = json.loads(data).get("nftables")
    if not isinstance(objects, list):
        raise ValueError("no `nftables` list: not what `nft -j list ruleset` prints")
    texts = dict(_texts(text))
    tables: list[tuple[str, str]] = []
    chains: list[Chain] = []
    found: dict[tuple[str, str, str], list[NftRule]] = {}
    sets: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in objects:
        if not isinstance(item, dict):
            continue
        if "table" in item:
            tables.append((item["table"]["family"], item["table"]["name"]))
        elif "chain" in item:
            c = item["chain"]
            chains.append(Chain(c["family"], c["table"], c["name"], c.get("hook", ""),
                                _priority(c.get("prio", 0)), c.get("policy", "accept"),
                                c.get("type", ""), str(c.get("dev", ""))))
        elif "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            sets[(s["family"], s["table"], s["name"])] = s
        elif "rule" in item:
            r = item["rule"]
            where = (r["family"], r["table"], r["chain"])
            rules = found.setdefault(where, [])
            expr = tuple(r.get("expr", ()))
            shown, line = texts.get((*where, len(rules)), (_shown(expr), 0))
            source = ""
            comment = r.get("comment", "")
            if isinstance(comment, str) and comment.startswith(origin.PREFIX):
                source = origin.untag(f"-m comment --comment {comment}")[1]
            rules.append(NftRule(Rule("", 6 if r["family"] == "ip6" else 4, r["table"],
                                      r["chain"], len(rules) + 1, shown, _target(expr),
                                      line=line, source=source, table_family=r["family"],
                                      handle=int(r.get("handle", 0))), expr))
    return NftRuleset(tuple(tables), tuple(chains),
                      {k: tuple(v) for k, v in found.items()}, sets)


def _priority(value: Any) -> int:
    if isinstance(value, int):
        return value
    # older nft prints symbolic priorities in JSON too
    names = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
             "srcnat": 100}
    match = re.fullmatch(r"\s*([a-z]+)\s*(?:([+-])\s*(\d+))?\s*", str(value))
    if not match or match.group(1) not in names:
        return 0
    offset = int(match.group(3) or 0) * (-1 if match.group(2) == "-" else 1)
    return names[match.group(1)] + offset


_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_HEADER = re.compile(r"^\s*(type |policy |comment |devices |flags )")


def _texts(text: str) -> Iterator[tuple[tuple[str, str, str, int], tuple[str, int]]]:
    """(family, table, chain, index) → (the rule as printed, its line), from `nft list`."""
    family = table = chain = ""
    index = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if (m := _TABLE.match(raw)) is not None:
            family, table, chain = m.group(1), m.group(2), ""
        elif (m := _CHAIN.match(raw)) is not None and table:
            chain, index = m.group(1), 0
        elif chain and line == "}":
            chain = ""
        elif chain and line and not _HEADER.match(raw):
            yield (family, table, chain, index), (line, number)
            index += 1


def _shown(expr: tuple[dict[str, Any], ...]) -> str:
    return json.dumps(list(expr), separators=(",", ":"))


def _target(expr: tuple[dict[str, Any], ...]) -> str:
    """The iptables word for the rule's verdict ('' where it varies, as a vmap's)."""
    target = ""
    for statement in expr:
        (kind, value), = statement.items() if len(statement) == 1 else (("", None),)
        if kind in _VERDICTS:
            return _VERDICTS[kind]
        if kind in ("jump", "goto") and isinstance(value, dict):
            return str(value.get("target", ""))
        if kind == "vmap":
            return ""
        if kind == "log":
            target = "LOG"
    return target


# --- following a packet ---------------------------------------------------------------


@dataclass
class _Walk:
    """One packet's way through the hooks: what it is now, and what was seen."""

    rules: NftRuleset
    packet: Packet
    iptables: Ruleset | None
    iptables_tables: frozenset[tuple[str, str]]
    logged: list[Rule] = field(default_factory=list)
    unknown: list[Rule] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    rewritten: str = ""
    diverted_by: Rule | None = None
    masqueraded_by: Rule | None = None


def follow(rules: NftRuleset, packet: Packet, iptables: Ruleset | None = None,
           iptables_tables: frozenset[tuple[str, str]] = frozenset(),
           legacy: bool = False) -> Outcome:
    """The verdict of every base chain on the packet's way, the rule that decided and the logs.

    A forwarded packet passes prerouting, forward and postrouting; one for the gateway
    itself prerouting and input. `iptables_tables` are the (family, table) of
    iptables-nft (decided by `iptables`, the same family's iptables-save rules); with
    `legacy`, the iptables rules are iptables-legacy's, outside nftables: their filter
    FORWARD runs at its own priority (0) beside the nft chains.
    """
    walk = _Walk(rules, packet, iptables, iptables_tables)
    hooks = {"forward": ("prerouting", "forward", "postrouting"),
             "input": ("prerouting", "input"), "prerouting": ("prerouting",)}[packet.hook]
    last: tuple[str, Rule | None] = ("ACCEPT", None)
    for hook in hooks:
        chains = rules.base_chains(hook, packet.version)
        if legacy and iptables is not None and hook == "forward":
            own = Chain("ip" if packet.version == 4 else "ip6", "filter", "FORWARD", hook, 0,
                        type="filter", legacy=True)
            chains = sorted([*chains, own], key=lambda c: c.priority)
        for chain in chains:
            verdict, rule = _base_chain(walk, chain)
            walk.passed.append(f"{chain.family} {chain.table} {chain.name} ({hook}, priority "
                               f"{chain.priority}): {verdict.lower()}")
            if verdict not in ("ACCEPT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
                return _outcome(walk, verdict, rule)
            if hook == packet.hook and rule is not None:
                last = ("ACCEPT", rule)
    return _outcome(walk, *last)


def _outcome(walk: _Walk, verdict: str, rule: Rule | None) -> Outcome:
    def seen(r: Rule) -> Rule:  # an inet rule is read for the packet's family
        return replace(r, family=walk.packet.version)
    return Outcome(verdict, seen(rule) if rule else None, tuple(map(seen, walk.logged)),
                   tuple(map(seen, walk.unknown)), tuple(walk.passed), walk.rewritten,
                   walk.diverted_by and seen(walk.diverted_by),
                   walk.masqueraded_by and seen(walk.masqueraded_by))


def _base_chain(walk: _Walk, chain: Chain) -> tuple[str, Rule | None]:
    if chain.legacy or (chain.family, chain.table) in walk.iptables_tables:
        return _iptables(walk, chain)
    try:
        decided = _chain(walk, chain, 0)
    except _Undecided as undecided:
        return CANNOT_TELL, undecided.rule
    if decided is None:
        return chain.policy.upper(), chain.policy_rule()
    return decided


def _iptables(walk: _Walk, chain: Chain) -> tuple[str, Rule | None]:
    """An iptables-nft base chain, read as the iptables rules (only FORWARD is modelled)."""
    if walk.iptables is None or (chain.table, chain.name) != ("filter", "FORWARD"):
        return "ACCEPT", None
    moved = walk.packet
    if walk.rewritten:  # a dnat before it: the iptables follower sees the new destination
        moved = replace(moved, destination=walk.rewritten.rsplit(":", 1)[0].strip("[]"))
    path = ruleset.follow(walk.iptables, moved)
    walk.logged += path.logged_by
    walk.unknown += path.unknown
    if path.decided_by is None:
        policy = Rule("", walk.packet.version, "filter", "FORWARD", 0, "", path.verdict)
        return path.verdict, policy
    return path.verdict, path.decided_by


class _Undecided(Exception):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.in_chain())
        self.rule = rule


def _chain(walk: _Walk, chain: Chain, depth: int) -> tuple[str, Rule] | None:
    """The verdict a chain reaches (None: it ended or returned)."""
    if depth > _MAX_DEPTH:
        raise _Undecided(Rule("", 4, chain.table, chain.name, 0, "jumps too deep", "",
                              table_family=chain.family))
    for item in walk.rules.rules.get((chain.family, chain.table, chain.name), ()):
        try:
            verdict = _evaluate(walk, item)
        except CannotTell:
            if _decides(item):
                raise _Undecided(item.rule) from None
            walk.unknown.append(item.rule)  # it only counts or logs: the path goes on
            continue
        if verdict is None:
            continue
        kind, target = verdict
        if kind in ("jump", "goto"):
            called = walk.rules.chain(chain.family, chain.table, target)
            if called is None:
                raise _Undecided(item.rule)
            decided = _chain(walk, called, depth + 1)
            if decided is not None:
                return decided
            if kind == "goto":
                return None
            continue
        if kind == "RETURN":
            return None
        if kind == "CONTINUE":
            continue
        if kind == "QUEUE":  # userspace decides
            raise _Undecided(item.rule)
        return kind, item.rule
    return None


def _decides(item: NftRule) -> bool:
    return any(next(iter(s)) in (*_VERDICTS, "jump", "goto", "vmap", "continue")
               for s in item.expr if len(s) == 1)


def _evaluate(walk: _Walk, item: NftRule) -> tuple[str, str] | None:
    """Run a rule's expressions: None where a match fails (or it only counts), else its verdict."""
    table = (item.rule.table_family, item.rule.table)
    untold: CannotTell | None = None  # a match not read: a later one may still fail
    for statement in item.expr:
        if len(statement) != 1:
            raise CannotTell(_shown((statement,)))
        (kind, value), = statement.items()
        if kind == "match":
            try:
                if not _match(walk, table, value):
                    return None
            except CannotTell as exc:
                untold = untold or exc
            continue
        if untold is not None:
            raise untold
        if kind in _GOES_ON or kind == "mangle":  # a mark set: matches on marks cannot tell
            continue
        elif kind == "log":
            walk.logged.append(item.rule)
        elif kind in ("accept", "drop", "reject", "return", "queue"):
            return _VERDICTS[kind], ""
        elif kind == "continue":
            return "CONTINUE", ""
        elif kind in ("jump", "goto"):
            return kind, str(value["target"])
        elif kind == "vmap":
            found = _lookup(walk, table, value["key"], value["data"])
            if found is None:
                return None
            (verdict, argument), = found.items()
            if verdict in ("jump", "goto"):
                return verdict, str(argument["target"])
            return ("CONTINUE" if verdict == "continue" else _VERDICTS[verdict]), ""
        elif kind == "dnat" or kind == "redirect":
            _dnat(walk, kind, value or {})
            walk.diverted_by = item.rule
            return _VERDICTS[kind], ""
        elif kind in ("masquerade", "snat"):
            walk.masqueraded_by = item.rule
            return _VERDICTS[kind], ""
        else:
            raise CannotTell(kind)
    if untold is not None:
        raise untold
    return None  # only counted


def _dnat(walk: _Walk, kind: str, value: dict[str, Any]) -> None:
    packet = walk.packet
    address = value.get("addr", packet.destination) if kind == "dnat" else packet.destination
    port = value.get("port", packet.port)
    if not isinstance(address, str) or not isinstance(port, int):
        raise CannotTell(f"{kind} to {address}")  # a map, a range: not one destination
    walk.packet = replace(packet, destination=address, port=port)
    shown = f"[{address}]" if ":" in address else address
    walk.rewritten = f"{shown}:{port}" if kind == "dnat" else f"the gateway itself:{port}"


# --- matches -----------------------------------------------------------------------


_Value = int | str | IPv4Address | IPv6Address | tuple[Any, ...] | None


def _match(walk: _Walk, table: tuple[str, str], match: dict[str, Any]) -> bool:
    op = match.get("op", "==")
    value = _value(walk, match["left"])
    if value is None:  # a header the packet does not have (tcp dport of a UDP packet)
        return False
    right = match["right"]
    if op in ("==", "in"):
        return _member(walk, table, value, right)
    if op == "!=":
        return not _member(walk, table, value, right)
    if op in ("<", ">", "<=", ">=") and isinstance(value, int) and isinstance(right, int):
        return {"<": value < right, ">": value > right, "<=": value <= right,
                ">=": value >= right}[op]
    raise CannotTell(f"match op {op}")


def _value(walk: _Walk, left: Any) -> _Value:
    """What the packet holds for an expression (None: it has no such header)."""
    p = walk.packet
    if isinstance(left, dict) and len(left) == 1:
        (kind, spec), = left.items()
        if kind == "meta":
            return _meta(p, spec["key"])
        if kind == "payload":
            return _payload(p, spec)
        if kind == "ct":
            if spec.get("key") == "state":
                return "new"
            if spec.get("key") == "status":
                return "dnat" if walk.rewritten else ""
            if spec.get("key") in ("direction",):
                return "original"
        if kind == "concat":
            return tuple(_value(walk, part) for part in spec)
        if kind in ("&", "|", "^", ">>", "<<"):
            return _binary(kind, _value(walk, spec[0]), spec[1])
    raise CannotTell(_shown(({"left": left},)))


def _meta(p: Packet, key: str) -> _Value:
    if key in ("iifname", "iif"):
        return p.inside
    if key in ("oifname", "oif"):
        if not p.outside:
            raise CannotTell(f"meta {key}: the way out is not known")
        return p.outside
    if key == "l4proto":
        return _PROTOCOLS[p.protocol]
    if key == "nfproto":
        return "ipv4" if p.version == 4 else "ipv6"
    if key == "protocol":
        return "ip" if p.version == 4 else "ip6"
    if key == "pkttype":
        return "host" if p.hook == "input" else "unicast"
    raise CannotTell(f"meta {key}")


def _payload(p: Packet, spec: dict[str, Any]) -> _Value:
    protocol, name = spec.get("protocol"), spec.get("field")
    if protocol in ("ip", "ip6"):
        if (protocol == "ip") != (p.version == 4):
            return None
        if name == "saddr":
            return ip_address(p.source)
        if name == "daddr":
            return ip_address(p.destination)
        if name in ("protocol", "nexthdr"):
            return _PROTOCOLS[p.protocol]
    elif protocol in ("tcp", "udp", "th"):
        if (protocol != "th" and protocol != p.protocol) or p.protocol not in _TRANSPORT:
            return None
        if name == "dport":
            return p.port
        if name == "sport":
            return p.source_port
    elif protocol is None and spec.get("base") == "th":
        return _raw(p, int(spec["offset"]), int(spec["len"]))
    elif protocol in _PROTOCOLS and protocol != p.protocol:  # icmp, …: another protocol
        return None
    raise CannotTell(f"payload {protocol or spec.get('base')} {name or spec.get('offset')}")


def _raw(p: Packet, offset: int, length: int) -> int:
    """Bits of the transport header and what follows (`@th,OFFSET,LENGTH`) of a UDP packet."""
    if p.protocol != "udp" or not p.payload:
        raise CannotTell(f"@th,{offset},{length}: no payload given")
    if offset < 64 and offset + length > 32:  # the UDP length and checksum are not known
        raise CannotTell(f"@th,{offset},{length}: the UDP length and checksum")
    data = p.source_port.to_bytes(2, "big") + p.port.to_bytes(2, "big") + bytes(4) + p.payload
    if offset + length > len(data) * 8:
        return 0  # the kernel's match fails past the end; 0 rarely equals what it wants
    bits = int.from_bytes(data, "big") >> (len(data) * 8 - offset - length)
    return bits & ((1 << length) - 1)


def _binary(op: str, value: _Value, operand: Any) -> int:
    if not isinstance(value, int) or not isinstance(operand, int):
        raise CannotTell(f"{op} on {value!r}")
    return {"&": value & operand, "|": value | operand, "^": value ^ operand,
            ">>": value >> operand, "<<": value << operand}[op]


def _elements(walk: _Walk, table: tuple[str, str], right: Any) -> list[Any]:
    if isinstance(right, str) and right.startswith("@"):
        found = walk.rules.sets.get((*table, right[1:]))
        if found is None:
            raise CannotTell(f"set {right}: not in the ruleset")
        return list(found.get("elem", []))
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        return list(items) if isinstance(items, list) else [items]
    if isinstance(right, list):  # flags: `ct state established,related`
        return right
    return [right]


def _member(walk: _Walk, table: tuple[str, str], value: _Value, right: Any) -> bool:
    return any(_equal(value, e) for e in _elements(walk, table, right))


def _equal(value: _Value, element: Any) -> bool:
    if isinstance(element, dict):
        if "elem" in element:  # an element with a timeout, a counter or a comment
            return _equal(value, element["elem"]["val"])
        if "prefix" in element:
            prefix = element["prefix"]
            return isinstance(value, IPv4Address | IPv6Address) and value in ip_network(
                f"{prefix['addr']}/{prefix['len']}", strict=False)
        if "range" in element:
            low, high = element["range"]
            if isinstance(value, IPv4Address | IPv6Address):
                return _address(low, value) <= int(value) <= _address(high, value)
            return isinstance(value, int) and int(low) <= value <= int(high)
        if "concat" in element:
            parts = element["concat"]
            return isinstance(value, tuple) and len(parts) == len(value) and all(
                _equal(v, e) for v, e in zip(value, parts, strict=True))
        raise CannotTell(_shown((element,)))
    if isinstance(value, IPv4Address | IPv6Address):
        try:
            return value == ip_address(element)
        except ValueError:
            return False
    if isinstance(value, int):
        if isinstance(element, str):
            return _PROTOCOLS.get(element) == value or (element.isdigit() and
                                                        int(element) == value)
        return isinstance(element, int) and element == value
    if isinstance(value, str) and isinstance(element, str):
        if element.endswith("*") and not element.endswith("\\*"):
            return value.startswith(element[:-1])  # `iifname "ens*"`
        return value == element
    return False


def _address(text: Any, like: IPv4Address | IPv6Address) -> int:
    found = ip_address(text)
    if found.version != like.version:
        raise CannotTell(f"range {text}")
    return int(found)


def _lookup(walk: _Walk, table: tuple[str, str], key: Any, data: Any) -> dict[str, Any] | None:
    """The verdict a verdict map gives the packet (None: no element matches)."""
    value = _value(walk, key)
    if value is None:
        return None
    for element in _elements(walk, table, data):
        if isinstance(element, list) and len(element) == 2 and _equal(value, element[0]):
            verdict = element[1]
            if isinstance(verdict, dict) and len(verdict) == 1:
                return verdict
            raise CannotTell(_shown(({"vmap": element},)))
    return None


_INCOMPATIBLE = re.compile(r"^# Table `([^']+)' (?:is incompatible|contains incompatible)", re.M)


def xtables(rules: NftRuleset, saves: dict[int, str]) -> frozenset[tuple[str, str]]:
    """The (family, table) iptables-nft keeps: those the family's iptables-save prints.

    A table it calls incompatible (`# Table `filter' is incompatible, use 'nft' tool.`)
    is nft's; a legacy iptables-save prints no nftables table at all.
    """
    found = set()
    for version, text in saves.items():
        if "(legacy)" in text.partition("\n*")[0]:
            continue
        printed = set(re.findall(r"^\*(\S+)", text, re.M)) - set(_INCOMPATIBLE.findall(text))
        nft_family = "ip" if version == 4 else "ip6"
        found |= {(f, t) for f, t in rules.tables if f == nft_family and t in printed}
    return frozenset(found)


def native_tables(rules: NftRuleset, iptables: frozenset[tuple[str, str]]) -> list[tuple[str, str]]:
    """The tables written in nft (every table iptables-save does not print)."""
    return [t for t in rules.tables if t not in iptables]


def single_sources(rules: NftRuleset, version: int) -> list[str]:
    """The single addresses the rules match as `ip saddr` / `ip6 saddr` (in rule order)."""
    wanted = "ip" if version == 4 else "ip6"
    found: list[str] = []
    for items in rules.rules.values():
        for item in items:
            for statement in item.expr:
                match = statement.get("match")
                if not isinstance(match, dict) or match.get("op", "==") != "==":
                    continue
                left, right = match.get("left"), match.get("right")
                if left == {"payload": {"protocol": wanted, "field": "saddr"}} and \
                        isinstance(right, str) and not right.startswith("@"):
                    try:
                        found.append(str(ip_address(right)))
                    except ValueError:
                        continue
    return list(dict.fromkeys(found))
