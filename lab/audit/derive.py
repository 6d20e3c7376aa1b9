"""The twin's network, derived from what the audit read: the gateway's own interfaces.

`layout()` tells the gateway's interfaces apart: the outside (the default
route's), the clients' (`--inside`, else those holding `--clients`, else every
other one but `--management`) and the rest. `site()` draws the twin from it as a
site file would (and `lab.model.site_file` checks it like one):

- a segment per interface with global addresses, named after it; the gateway is
  the policy router, with its own interface names and addresses;
- two clients on each client segment, on free addresses (none the gateway's
  rules name), and the mail server on the segment whose prefix holds it;
- the default route's next hop stands in for the upstream router, and behind
  it the outside segment holds the lab's outside roles (remote-mx, relay, sink)
  on documentation prefixes no segment uses;
- other interfaces (management) are segments without hosts.

Loopback and link-local addresses are no segments. A family the gateway has no
default route for is left out of the twin: nothing of it could leave there.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import BadInput
from lab.model import site_file
from lab.model.site import Site

if TYPE_CHECKING:  # deriving needs no SSH code
    from lab.audit.facts import DefaultRoute, Facts

Network = IPv4Network | IPv6Network
Address = Any  # IPv4Address | IPv6Address: what `ip_address` returns

OUTSIDE = "internet"  # the twin's outside segment, behind the upstream router
UPSTREAM = "upstream"  # the router standing in for the default route's next hop
# host numbers on the outside segment (written in hexadecimal digits for IPv6: ::25)
OUTSIDE_HOSTS = (("remote-mx", 25), ("relay", 35), ("sink", 50))  # the relay takes 36 too
CLIENTS_PER_SEGMENT = 2
DOCUMENTATION_V4 = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
_SOURCE_FLAGS = ("-s", "--source", "-d", "--destination")


@dataclass(frozen=True)
class Layout:
    """Which of the gateway's interfaces is which, and what was assumed to tell."""

    interfaces: dict[str, tuple[str, ...]]  # name → global addresses (CIDR)
    outside: str | None  # the default route's interface (None: the gateway has none)
    defaults: dict[int, DefaultRoute]  # the default routes leaving by `outside`
    clients: tuple[str, ...]  # the interfaces of the client segments
    management: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def networks(self, name: str, version: int | None = None) -> tuple[Network, ...]:
        """The interface's prefixes (of one family), each once, in the gateway's order."""
        found = dict.fromkeys(ip_interface(a).network for a in self.interfaces.get(name, ()))
        return tuple(n for n in found if version is None or n.version == version)

    def holding(self, address: str) -> str | None:
        """The interface whose prefix holds the address (of a host or a network)."""
        network = ip_network(address, strict=False)
        for name in self.interfaces:
            for own in self.networks(name, network.version):
                if network.subnet_of(own) or own.subnet_of(network):  # type: ignore[arg-type]
                    return name
        return None


def layout(facts: Facts, inside: tuple[str, ...] = (), clients: tuple[str, ...] = (),
           management: tuple[str, ...] = ()) -> Layout:
    """The gateway's interfaces told apart; BadInput for an option naming none of them."""
    for option, names in (("--inside", inside), ("--management", management)):
        for name in names:
            if name not in facts.interfaces:
                raise BadInput(f"{option} {name}: the gateway has no such interface (it has "
                               f"{', '.join(sorted(facts.interfaces)) or 'none listed'})")
    routes = {v: r for v in (4, 6) if (r := facts.default_route(v)) is not None}
    outside = next((r.dev for r in routes.values()), None)
    notes = []
    for version, route in list(routes.items()):
        if route.dev != outside:
            notes.append(f"the IPv{version} default route leaves by {route.dev}, the IPv4 one "
                         f"by {outside}: the twin has one outside (behind {outside}) and no "
                         f"IPv{version} way to it")
            del routes[version]
    for option, names in (("--inside", inside), ("--management", management)):
        if outside in names:
            raise BadInput(f"{option} {outside}: that is the interface of the gateway's "
                           "default route (its outside)")
    interfaces = facts.global_interfaces
    found = Layout(interfaces, outside, routes, (), management, tuple(notes))
    if inside:
        chosen = inside
    elif clients:
        chosen = tuple(dict.fromkeys(n for c in clients if (n := found.holding(c)) is not None))
    elif outside is None:
        chosen = ()  # nothing tells the inside from the outside
    else:
        chosen = tuple(n for n in interfaces if n != outside and n not in management)
    return Layout(interfaces, outside, routes, chosen, management, tuple(notes))


def hosts_in_rules(facts: Facts) -> set[Address]:
    """The single addresses the gateway's rules name (-s/-d): a twin's client takes none."""
    found = set()
    for version in (4, 6):
        words = facts.rules(version).split()
        for flag, value in itertools.pairwise(words):
            if flag not in _SOURCE_FLAGS:
                continue
            for item in value.split(","):
                try:
                    host = ip_interface(item)
                except ValueError:
                    continue
                if host.network.prefixlen == host.max_prefixlen:
                    found.add(host.ip)
    return found


def free_addresses(network: Network, taken: set[Address]) -> Iterator[Address]:
    """The network's host addresses from .10 (::10) on that nobody has."""
    start = 0x10 if network.version == 6 else 10 if network.num_addresses > 16 else 1
    end = network.num_addresses - (1 if network.version == 4 else 0)  # not the broadcast
    for offset in range(start, end):
        candidate = network.network_address + offset
        if candidate not in taken:
            yield candidate


def free_prefix(version: int, used: list[Network]) -> Network:
    """A documentation prefix that overlaps none in use (/24 to /26; /64 in 2001:db8::/32)."""
    def candidates() -> Iterator[Network]:
        if version == 4:
            for length in (24, 25, 26):
                for block in DOCUMENTATION_V4:
                    yield from ip_network(block).subnets(new_prefix=length)
        else:
            for high in range(0xffff, 0xff00, -1):
                for low in range(1, 0x10):
                    yield ip_network(f"2001:db8:{high:x}:{low:x}::/64")

    for net in candidates():
        if not any(net.overlaps(u) for u in used if u.version == version):
            used.append(net)
            return net
    raise BadInput(f"the gateway's segments leave no IPv{version} documentation prefix free "
                   "for the twin's outside (it places remote-mx, relay and sink there)")


def _host(network: Network, number: int) -> str:
    """Host `number` of the network with its prefix length; ::25 in IPv6 reads like .25."""
    offset = int(str(number), 16) if network.version == 6 else number
    return f"{network.network_address + offset}/{network.prefixlen}"


def _name(text: str, longest: int, taken: set[str]) -> str:
    """`text` as a site's name (lower-case letters, digits, '-'), unique among `taken`."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    base = base if base[0].isalpha() else f"if-{base}"
    name, number = base[:longest].rstrip("-"), 1
    while name in taken:
        number += 1
        name = f"{base[:longest - len(str(number)) - 1].rstrip('-')}-{number}"
    taken.add(name)
    return name


@dataclass
class _Drawing:
    """The site being derived, as the plain data a site file holds."""

    layout: Layout
    families: tuple[int, ...]
    own: set[Address]  # the gateway's addresses, on every interface
    taken: set[Address]
    notes: list[str]
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    segment_of: dict[str, str] = field(default_factory=dict)  # gateway interface → segment
    routers: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def used(self) -> list[Network]:
        return [ip_network(p) for s in self.segments.values() for p in s["prefixes"]]

    def firsts(self, segment: str) -> list[Network]:
        """The segment's first prefix of each family the twin has."""
        networks = [ip_network(p) for p in self.segments[segment]["prefixes"]]
        return [next(n for n in networks if n.version == v)
                for v in self.families if any(n.version == v for n in networks)]

    def place(self, network: Network, how_many: int, what: str) -> list[str]:
        """`how_many` free addresses of the network (with its length), now taken."""
        found = []
        for address in free_addresses(network, self.taken):
            found.append(f"{address}/{network.prefixlen}")
            self.taken.add(address)
            if len(found) == how_many:
                return found
        raise BadInput(f"the gateway's prefix {network} has no room for {what} of the twin "
                       f"({how_many} free addresses)")


def site(facts: Facts, found: Layout, mail_server: tuple[str, ...],
         router: str = "gw") -> tuple[Site, tuple[str, ...]]:
    """The twin's site and what the derivation had to assume; BadInput where it cannot."""
    if found.outside is None:
        raise BadInput(f"{facts.gateway}: no default route: the twin cannot tell the "
                       "outside from the inside")
    families = tuple(sorted(found.defaults))
    own = {ip_interface(a).ip for addresses in facts.interfaces.values() for a in addresses}
    drawing = _Drawing(found, families, own, own | hosts_in_rules(facts), list(found.notes))
    names = {router, UPSTREAM, "mx", "clients", OUTSIDE, *(n for n, _ in OUTSIDE_HOSTS),
             *(f"client{i}" for i in range(1, CLIENTS_PER_SEGMENT * len(found.interfaces) + 1))}
    for lacking in sorted({ip_interface(a).version for addresses in found.interfaces.values()
                           for a in addresses} - set(families)):
        drawing.notes.append(f"the gateway has no IPv{lacking} default route: the twin leaves "
                             f"its IPv{lacking} addresses out (nothing of IPv{lacking} leaves "
                             "the gateway)")
    interfaces: dict[str, dict[str, Any]] = {}
    for name in found.interfaces:
        addresses = [a for a in found.interfaces[name] if ip_interface(a).version in families]
        if not addresses:
            drawing.notes.append(f"{name} ({', '.join(found.interfaces[name])}) is not in the "
                                 "twin: the gateway has no default route of its family")
            continue
        segment = _name(name, site_file.SEGMENT_NAME_MAX, names)
        drawing.segments[segment] = {"prefixes": [str(n) for n in dict.fromkeys(
            ip_interface(a).network for a in addresses)]}
        drawing.segment_of[name] = segment
        interfaces[name] = {"segment": segment, "addresses": addresses}
    if found.outside not in interfaces:  # an unnumbered outside: routed by link-local only
        segment = _name(found.outside, site_file.SEGMENT_NAME_MAX, names)
        drawing.segments[segment] = {"prefixes": []}
        drawing.segment_of[found.outside] = segment
        interfaces[found.outside] = {"segment": segment, "addresses": []}
    drawing.routers[router] = {"policy": True, "interfaces": interfaces}
    _upstream(drawing, interfaces[found.outside])
    _clients(drawing)
    _mail_server(drawing, mail_server)
    _outside(drawing)
    data = {"name": _name(f"twin-{facts.gateway.rpartition('@')[2]}",
                          site_file.NODE_NAME_MAX, set()),
            "description": f"the twin of {facts.gateway}, derived from its interfaces and "
                           "routes by port25lab audit",
            "segments": drawing.segments, "routers": drawing.routers, "hosts": drawing.hosts}
    derived = site_file.parse(Path(f"{facts.gateway} (derived site)"), data)
    return derived, tuple(drawing.notes)


def _upstream(drawing: _Drawing, outside: dict[str, Any]) -> None:
    """The default routes' next hops on the outside segment: the upstream router's side."""
    name = str(drawing.layout.outside)
    segment = drawing.segments[outside["segment"]]
    addresses = []
    for version in drawing.families:
        via = drawing.layout.defaults[version].via
        networks = [ip_network(p) for p in segment["prefixes"]
                    if ip_network(p).version == version]
        hop = ip_address(via) if via is not None else None
        home = next((n for n in networks if hop is not None and hop in n), None)
        if home is not None and hop not in drawing.own:
            addresses.append(f"{hop}/{home.prefixlen}")
            drawing.taken.add(hop)
            continue
        room = next(((a, n) for n in networks for a in free_addresses(n, drawing.taken)), None)
        if room is not None:
            drawing.taken.add(room[0])
            addresses.append(f"{room[0]}/{room[1].prefixlen}")
            said = f"stands at {addresses[-1]}"
        else:  # no prefix with room there (IPv6 routed by link-local, a /32 point-to-point)
            network = free_prefix(version, drawing.used())
            segment["prefixes"].append(str(network))
            outside["addresses"].append(_host(network, 1))
            addresses.append(_host(network, 2))
            said = (f"and {name} of the twin get the documentation prefix {network} "
                    f"({name} {_host(network, 1)})")
        where = ("is link-local" if hop is not None and hop.is_link_local
                 else f"is on none of {name}'s prefixes")
        drawing.notes.append(f"the IPv{version} default route's next hop "
                             f"{via or '(none: a point-to-point link)'} {where}: the twin's "
                             f"upstream router {said}")
    drawing.routers[UPSTREAM] = {"interfaces": {
        "eth0": {"segment": outside["segment"], "addresses": addresses}}}


def _clients(drawing: _Drawing) -> None:
    """Two clients on each client segment, numbered in the gateway's order."""
    segments = [drawing.segment_of[n] for n in drawing.layout.clients if n in drawing.segment_of]
    if not segments:
        said = ", ".join(drawing.layout.clients) or "none"
        raise BadInput(f"the twin has no client segment (client interfaces: {said}): give "
                       f"--inside IFACE, one of {', '.join(drawing.segment_of)}")
    number = 0
    for segment in segments:
        placed = [drawing.place(n, CLIENTS_PER_SEGMENT, "two clients")
                  for n in drawing.firsts(segment)]
        for i in range(CLIENTS_PER_SEGMENT):
            number += 1
            drawing.hosts[f"client{number}"] = {"role": "client", "segment": segment,
                                                "addresses": [p[i] for p in placed]}


def _mail_server(drawing: _Drawing, given: tuple[str, ...]) -> None:
    """The mail server on the segment holding its addresses (else on the first client one)."""
    homes: dict[str, list[str]] = {}
    for address in given:
        version = ip_address(address).version
        if version not in drawing.families:
            drawing.notes.append(f"the mail server's {address} is not in the twin: the gateway "
                                 f"has no IPv{version} default route")
            continue
        if ip_address(address) in drawing.own:
            raise BadInput(f"mail server {address} is the gateway's own address: the twin "
                           "places a mail server behind the gateway; give its address")
        where = [(s, n) for s, spec in drawing.segments.items() for p in spec["prefixes"]
                 if ip_address(address) in (n := ip_network(p))]
        if not where:
            raise BadInput(f"mail server {address} is on none of the gateway's prefixes "
                           f"({', '.join(str(n) for n in drawing.used())}): the twin places it "
                           "on its segment; give the address it has there")
        segment, network = where[0]
        homes.setdefault(segment, []).append(f"{address}/{network.prefixlen}")
        drawing.taken.add(ip_address(address))
    if len(homes) > 1:
        raise BadInput(f"mail server {', '.join(given)}: its addresses are on different segments "
                       f"({', '.join(homes)}): give the addresses of one mail server")
    if not homes:
        segment = next(h["segment"] for h in drawing.hosts.values())
        homes[segment] = [drawing.place(n, 1, "the mail server")[0]
                          for n in drawing.firsts(segment)]
        drawing.notes.append(f"no mail server given (--mail-server) or found in the rules: the "
                             f"twin's mx is {', '.join(homes[segment])}, an address the "
                             f"gateway's rules do not know")
    segment, addresses = next(iter(homes.items()))
    for network in drawing.firsts(segment):  # a family of its segment it has no address of
        if all(ip_interface(a).version != network.version for a in addresses):
            addresses += drawing.place(network, 1, "the mail server")
            drawing.notes.append(f"the mail server's IPv{network.version} address is unknown "
                                 f"(none given or found in the rules): the twin's mx takes "
                                 f"{addresses[-1]}")
    drawing.hosts["mx"] = {"role": "mx", "segment": segment, "addresses": addresses}


def _outside(drawing: _Drawing) -> None:
    """The outside segment behind the upstream router, with the lab's outside roles."""
    networks = [free_prefix(v, drawing.used()) for v in drawing.families]
    drawing.segments[OUTSIDE] = {"prefixes": [str(n) for n in networks], "outside": True}
    drawing.routers[UPSTREAM]["interfaces"]["eth1"] = {
        "segment": OUTSIDE, "addresses": [_host(n, 1) for n in networks]}
    for role, number in OUTSIDE_HOSTS:
        drawing.hosts[role] = {"role": role, "segment": OUTSIDE,
                               "addresses": [_host(n, number) for n in networks]}
