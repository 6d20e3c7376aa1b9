"""Sites: a network as data — segments, routers and hosts by role, and what each can do.

Plain values: nothing here knows how a lab is made (`lab.runtime.builder` draws a
site). The engine asks a site for a capability (`site.one(TEREDO_SERVER)`,
`site.submission_server`), never for a node by a name of its own choosing; node
names are what scenarios speak of (`mx`, `remote-mx`, `client1`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network

# What a node can do.
CLIENT = "client"  # plays a PC of the organisation (one plays the infected one)
SUBMISSION = "submission"  # the organisation's mail server: 587 and 465 with AUTH, and 25
MTA = "mta"  # a mail server receiving on 25 (and 465)
TEREDO_SERVER = "teredo-server"  # a Teredo server / relay (UDP 3544)
TUNNEL_END = "tunnel-end"  # the far end of 6in4 (IPv4 protocol 41)
SINK = "sink"  # an outside host that only records what arrives (every host records)
ROUTER = "router"  # forwards between its segments
POLICY = "policy"  # a router whose rules the scenario checks

# A site file's roles: where the node sits (its kind) and what it can do.
ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "client": ("client", frozenset({CLIENT})),
    "mx": ("server", frozenset({SUBMISSION, MTA})),
    "remote-mx": ("outside", frozenset({MTA})),
    "sink": ("outside", frozenset({SINK})),
    "relay": ("outside", frozenset({TEREDO_SERVER, TUNNEL_END})),
    "router": ("router", frozenset({ROUTER})),
}
HOST_ROLES = tuple(r for r in ROLES if r != "router")

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Segment:
    """A link layer segment (a bridge in the lab) and its prefixes; one is the outside."""

    name: str
    prefixes: tuple[str, ...]
    outside: bool = False

    def networks(self, family: int | None = None) -> tuple[Network, ...]:
        found = tuple(ip_network(p) for p in self.prefixes)
        return tuple(n for n in found if family is None or n.version == family)


@dataclass(frozen=True)
class Interface:
    """One interface of a node: its name as on the box, its segment, its addresses (CIDR)."""

    name: str
    segment: str
    addresses: tuple[str, ...]

    def of_family(self, family: int) -> tuple[str, ...]:
        # by its colon: a thousand clients' routes ask this ~100,000 times (parsing is slow)
        return tuple(a for a in self.addresses if (6 if ":" in a else 4) == family)


@dataclass(frozen=True)
class Route:
    """A static route, `destination` may be `default`."""

    destination: str
    via: str

    @property
    def family(self) -> int:
        return 6 if ":" in self.via else 4


@dataclass(frozen=True)
class Node:
    """A host or router of a site, named for what it plays: client1, mx, gw, remote-mx, ..."""

    name: str
    role: str  # one of ROLES
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    policy: bool = False  # a router carrying the policy
    # a client without a shell of its own: a bare namespace, declared in bulk (`clients:`)
    light: bool = False

    @property
    def kind(self) -> str:
        """Where it sits: "client", "server", "router" or "outside"."""
        return ROLES[self.role][0]

    @property
    def capabilities(self) -> frozenset[str]:
        return ROLES[self.role][1] | ({POLICY} if self.policy else frozenset())

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def is_router(self) -> bool:
        return self.can(ROUTER)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.segment for i in self.interfaces))

    def has(self, family: int) -> bool:
        """Whether the node has an address of that family."""
        return any(i.of_family(family) for i in self.interfaces)

    def address(self, family: int) -> str:
        """The node's first address of that family (what a probe aims at)."""
        for interface in self.interfaces:
            for cidr in interface.of_family(family):
                return str(ip_interface(cidr).ip)
        raise LookupError(f"{self.name} has no IPv{family} address")

    def addresses(self) -> tuple[str, ...]:
        return tuple(str(ip_interface(c).ip) for i in self.interfaces for c in i.addresses)

    def interface_holding(self, address: str) -> tuple[Interface, str]:
        """The interface that has `address`, and the address with its prefix length."""
        for interface in self.interfaces:
            for cidr in interface.addresses:
                if str(ip_interface(cidr).ip) == address:
                    return interface, cidr
        raise LookupError(f"{self.name} has no address {address}")


@dataclass(frozen=True)
class Site:
    """A network: its segments and its nodes (routers and hosts)."""

    name: str
    description: str
    segments: tuple[Segment, ...]
    nodes: tuple[Node, ...]

    def role(self, name: str) -> Node:
        """The node of that name (node names are the roles scenarios speak of)."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        # a site of a thousand clients is asked for its nodes by name a million times
        return {n.name: n for n in reversed(self.nodes)}  # the first of a name wins

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    @property
    def outside(self) -> Segment:
        return next(s for s in self.segments if s.outside)

    def having(self, capability: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.can(capability))

    def one(self, capability: str) -> Node:
        """The one node with that capability (LookupError if the site has none or several)."""
        found = self.having(capability)
        if len(found) != 1:
            raise LookupError(f"site {self.name} has {len(found) or 'no'} node(s) that can "
                              f"be {capability}, not one")
        return found[0]

    @property
    def clients(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.having(CLIENT))

    @cached_property
    def routers(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.having(ROUTER))

    @property
    def policy_routers(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.having(POLICY))

    @property
    def policy_router(self) -> str:
        """The (first) router carrying the policy: the one `--rules-v4/-v6` replace."""
        if not self.policy_routers:
            raise LookupError(f"site {self.name} has no policy router")
        return self.policy_routers[0]

    @property
    def submission_server(self) -> Node:
        """The organisation's mail server, where clients submit (the first, if several)."""
        found = self.having(SUBMISSION)
        if not found:
            raise LookupError(f"site {self.name} has no submission server (an `mx`)")
        return found[0]

    @property
    def foreign_mta(self) -> Node | None:
        """The foreign mail server the organisation's mail goes to, if the site has one."""
        return next((n for n in self.having(MTA) if not n.can(SUBMISSION)), None)

    def owner_of(self, address: str) -> str | None:
        """The node that holds this address, if any."""
        return self._owners.get(address)

    @cached_property
    def _owners(self) -> dict[str, str]:
        return {a: n.name for n in reversed(self.nodes) for a in n.addresses()}

    @property
    def light_nodes(self) -> tuple[Node, ...]:
        """The clients without a shell (bare namespaces: `clients:` of a site file)."""
        return tuple(n for n in self.nodes if n.light)
