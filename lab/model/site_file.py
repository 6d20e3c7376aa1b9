"""Site files: a network described in YAML, read and checked completely before any lab boots.

    name: screened-host
    description: clients and mx on one LAN behind gw
    segments:
      lan: {prefixes: [203.0.113.0/24, "2001:db8:b01a:70da::/64"]}
      wan: {prefixes: [198.51.100.0/24, "2001:db8:ffff:1::/64"], outside: true}
    routers:
      gw:
        policy: true
        interfaces:
          eth0: {segment: lan, addresses: [203.0.113.1/24, "2001:db8:b01a:70da::1/64"]}
          eth1: {segment: wan, addresses: [198.51.100.1/24, "2001:db8:ffff:1::1/64"]}
    hosts:
      client1: {role: client, segment: lan, addresses: [203.0.113.10/24, ...]}

A host has one interface (`interface:`, default eth0) or, like a router,
`interfaces:`. Clients in bulk (a campus's thousand PCs) are ranges:

    clients:
      - {segment: lan, count: 200, addresses: [203.0.113.30/24, "2001:db8:c0:1::1000/64"]}

each range `count` clients, named client1, client2, … on from the previous range's
last (or from `first: N`), the first with `addresses`, each next one the next
address of each family. They are light clients (`light: true`, also a host's key):
a bare namespace without a shell, where the lab starts a probe agent only when a
probe runs from it; no recorder runs in one, so no probe may aim at it. Routes are
computed (`lab.model.routes`); a node's `routes:`
(`- {to: default, via: ADDRESS}`) replace or add to them. Every mistake is one
`BadInput` line: the file and line, the item, and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_interface, ip_network
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from lab.errors import BadInput
from lab.model import routes, yamlfile
from lab.model.outside import Unplaceable, with_outside_roles
from lab.model.site import HOST_ROLES, TEREDO_SERVER, Interface, Node, Route, Segment, Site

WHAT = "site file"
_TOP_KEYS = ("name", "description", "segments", "routers", "hosts", "clients")
_SEGMENT_KEYS = ("prefixes", "outside")
_ROUTER_KEYS = ("interfaces", "policy", "routes")
_HOST_KEYS = ("role", "segment", "addresses", "interface", "interfaces", "routes", "light")
_RANGE_KEYS = ("segment", "count", "addresses", "first")
MAX_CLIENTS = 5000  # clients in ranges: a namespace each (a thousand take ~0.3 GiB)
_INTERFACE_KEYS = ("segment", "addresses")
_ROUTE_KEYS = ("to", "via")
# Node and segment names become namespace, Mininet node and bridge names.
NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
NODE_NAME_MAX = 32
SEGMENT_NAME_MAX = 10  # the lab names a bridge's ports SEGMENT-N, 15 characters at most
IFNAME_MAX = 15  # Linux: IFNAMSIZ less its NUL
# What real boxes use (eth0, ens18, enp0s31f6, eth0.100, br-lan, wg_0). Linux takes more,
# but Mininet writes interface names into shell command lines: nothing a shell reads.
IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
RESERVED = ("clients", "suspects")  # a scenario's words: all clients, its suspects
SINGLE = ("remote-mx", "relay")  # the engine asks the site for the one of these


class _File:
    """The site file being read: makes its one-line errors."""
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, at: Any, key: Any, message: str) -> BadInput:
        line = yamlfile.line_of(at, key)
        return BadInput(f"{self.path}{f':{line}' if line else ''}: {message}")

    def mapping(self, at: Any, key: Any, value: Any, what: str, known: tuple[str, ...],
                ) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise self.fail(at, key, f"{what}: must be a mapping of {', '.join(known)}")
        for name in value:
            if name not in known:
                raise self.fail(value, name, f"{what}: unknown key {name!r} "
                                             f"(known: {', '.join(known)})")
        return value

    def listed(self, at: Any, key: Any, value: Any, what: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(at, key, f"{what}: must be a non-empty list")
        return value

    def name(self, at: Any, key: Any, value: Any, what: str, longest: int) -> str:
        if not isinstance(value, str) or not NAME.match(value) or len(value) > longest:
            raise self.fail(at, key, f"{what} {value!r}: give a name of lower-case letters, "
                                     f"digits and '-', starting with a letter, at most "
                                     f"{longest} characters")
        return value


def load(path: Path) -> Site:
    """The site in the file at `path`, checked; BadInput names the first mistake."""
    return parse(path, yamlfile.load(path, WHAT))


class _OneLine(dict[str, Any]):
    """A mapping a site file writes on one line, as people do: `{segment: lan, …}`."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_OneLine, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def dump(site: Site, header: Iterable[str] = ()) -> str:
    """The site as a site file, which `load` reads back as this very site.

    Routes the graph gives are left out (the loader computes them again); a node's
    others are its `routes:`. `header`: comment lines to begin with.
    """
    def interfaces(node: Node) -> dict[str, Any]:
        return {i.name: _OneLine(segment=i.segment, addresses=list(i.addresses))
                for i in node.interfaces}

    def own_routes(node: Node) -> dict[str, Any]:
        graph = routes.computed(site, node)
        own = tuple(r for r in node.routes if r not in graph)
        if routes.with_own(graph, own) != node.routes:
            raise ValueError(f"{node.name}: routes {node.routes} are not the graph's with "
                             "some replaced or added: a site file cannot say them")
        return {"routes": [_OneLine(to=r.destination, via=r.via) for r in own]} if own else {}

    routers: dict[str, Any] = {}
    hosts: dict[str, Any] = {}
    for node in site.nodes:
        if node.is_router:
            routers[node.name] = {**({"policy": True} if node.policy else {}),
                                  "interfaces": interfaces(node), **own_routes(node)}
            continue
        spec: dict[str, Any] = _OneLine(role=node.role, **({"light": True} if node.light
                                                            else {}))
        if len(node.interfaces) == 1:
            (one,) = node.interfaces
            spec |= {"segment": one.segment, "addresses": list(one.addresses),
                     **({"interface": one.name} if one.name != "eth0" else {})}
        else:
            spec["interfaces"] = interfaces(node)
        spec.update(own_routes(node))
        hosts[node.name] = spec
    data = {"name": site.name, **({"description": site.description} if site.description
                                  else {}),
            "segments": {s.name: _OneLine(prefixes=list(s.prefixes),
                                          **({"outside": True} if s.outside else {}))
                         for s in site.segments},
            "routers": routers, "hosts": hosts}
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + text


def parse(path: Path, data: Any) -> Site:
    file = _File(path)
    top = file.mapping(None, None, data, WHAT, _TOP_KEYS)
    for key in ("name", "segments", "routers", "hosts"):
        if key not in top:
            raise file.fail(top, None, f"missing key {key!r} (a site has {', '.join(_TOP_KEYS)})")
    name = file.name(top, "name", top["name"], "name", NODE_NAME_MAX)
    description = top.get("description", "")
    if not isinstance(description, str):
        raise file.fail(top, "description", "description: must be text")
    segments = _segments(file, top)
    nodes = _nodes(file, top, {s.name: s for s in segments})
    nodes += _ranges(file, top, {s.name: s for s in segments}, [n.name for n, _ in nodes])
    site = Site(name, description.strip(), segments, tuple(n for n, _ in nodes))
    _check_site(file, top, site)
    _check_ways_out(file, site, dict(nodes))
    _check_teredo_server(file, site, dict(nodes))
    try:
        site = with_outside_roles(site)
    except Unplaceable as exc:
        raise file.fail(top, "segments", str(exc)) from None
    return Site(site.name, site.description, site.segments, tuple(
        replace(n, routes=routes.with_own(routes.computed(site, n), n.routes))
        for n in site.nodes))


def _segments(file: _File, top: dict[Any, Any]) -> tuple[Segment, ...]:
    data = top["segments"]
    if not isinstance(data, dict) or not data:
        raise file.fail(top, "segments", "segments: must map each segment's name to its "
                                         "prefixes")
    found = []
    for name, spec in data.items():
        file.name(data, name, name, "segment", SEGMENT_NAME_MAX)
        spec = file.mapping(data, name, spec, f"segment {name}", _SEGMENT_KEYS)
        if "prefixes" not in spec:
            raise file.fail(data, name, f"segment {name}: give its prefixes "
                                        "(e.g. prefixes: [192.0.2.0/24])")
        prefixes = file.listed(spec, "prefixes", spec["prefixes"], f"segment {name}: prefixes")
        outside = spec.get("outside", False)
        if not isinstance(outside, bool):
            raise file.fail(spec, "outside", f"segment {name}: outside: must be true or false")
        found.append(Segment(name, tuple(_prefix(file, prefixes, i, p, name)
                                         for i, p in enumerate(prefixes)), outside))
    networks = [(s, n) for s in found for n in s.networks()]
    for (s1, n1), (s2, n2) in combinations(networks, 2):
        if n1.version == n2.version and n1.overlaps(n2):
            same = "is given twice" if n1 == n2 else f"overlaps {n2} of {s2.name}"
            raise file.fail(data, s2.name, f"segment {s1.name}: prefix {n1} {same}: give each "
                                           f"segment prefixes of its own")
    outside = [s.name for s in found if s.outside]
    if len(outside) != 1:
        raise file.fail(top, "segments", "segments: mark exactly one as `outside: true` "
                                         f"(marked: {', '.join(outside) or 'none'})")
    return tuple(found)


def _prefix(file: _File, at: Any, index: int, value: Any, segment: str) -> str:
    if not isinstance(value, str):
        raise file.fail(at, index, f"segment {segment}: prefix {value!r}: write it as text "
                                   "(quote IPv6 prefixes)")
    try:
        return str(ip_network(value))
    except ValueError:
        pass
    try:
        network = ip_network(value, strict=False)
    except ValueError:
        raise file.fail(at, index, f"segment {segment}: {value!r} is not a prefix (write "
                                   "e.g. 192.0.2.0/24 or \"2001:db8::/64\")") from None
    raise file.fail(at, index, f"segment {segment}: prefix {value} has host bits set "
                               f"(write {network})")


def _nodes(file: _File, top: dict[Any, Any], segments: dict[str, Segment],
           ) -> list[tuple[Node, int | None]]:
    """The routers, then the hosts, each with its line in the file."""
    found: list[tuple[Node, int | None]] = []
    for section in ("routers", "hosts"):
        data = top[section]
        if not isinstance(data, dict) or (section == "routers" and not data):
            raise file.fail(top, section, f"{section}: must map each {section[:-1]}'s name "
                                          "to its description")
        for name, spec in data.items():
            file.name(data, name, name, section[:-1], NODE_NAME_MAX)
            where = f"{section}: {name}"
            if name in RESERVED or name in segments:
                raise file.fail(data, name, f"{where}: the name {name!r} is taken (by "
                                f"{'a segment' if name in segments else 'scenarios'}): "
                                "choose another")
            if any(n.name == name for n, _ in found):
                raise file.fail(data, name, f"{where}: a router and a host have this name: "
                                            "give each node its own")
            node = _router(file, data, name, spec, segments) if section == "routers" else \
                _host(file, data, name, spec, segments)
            found.append((node, yamlfile.line_of(data, name)))
    return found


def _router(file: _File, at: Any, name: str, spec: Any, segments: dict[str, Segment]) -> Node:
    where = f"routers: {name}"
    spec = file.mapping(at, name, spec, where, _ROUTER_KEYS)
    if "interfaces" not in spec:
        raise file.fail(at, name, f"{where}: give its interfaces (eth0: {{segment: …, "
                                  "addresses: […]}})")
    policy = spec.get("policy", False)
    if not isinstance(policy, bool):
        raise file.fail(spec, "policy", f"{where}: policy: must be true or false")
    interfaces = _interfaces(file, spec, spec["interfaces"], where, segments)
    return Node(name, "router", interfaces, _own_routes(file, spec, where, interfaces), policy)


def _host(file: _File, at: Any, name: str, spec: Any, segments: dict[str, Segment]) -> Node:
    where = f"hosts: {name}"
    spec = file.mapping(at, name, spec, where, _HOST_KEYS)
    role = spec.get("role")
    if role not in HOST_ROLES:
        raise file.fail(spec if "role" in spec else at, "role" if "role" in spec else name,
                        f"{where}: role {role!r} is not one of {', '.join(HOST_ROLES)}")
    if "interfaces" in spec:
        extra = [k for k in ("segment", "addresses", "interface") if k in spec]
        if extra:
            raise file.fail(spec, extra[0], f"{where}: give either interfaces: or "
                                            f"segment:/addresses:, not both")
        interfaces = _interfaces(file, spec, spec["interfaces"], where, segments)
    else:
        ifname = _ifname(file, spec, "interface", spec.get("interface", "eth0"), where)
        interfaces = _interfaces(file, spec, {ifname: yamlfile.subset(spec, _INTERFACE_KEYS)},
                                 where, segments)
    light = spec.get("light", False)
    if not isinstance(light, bool) or (light and role != "client"):
        raise file.fail(spec, "light", f"{where}: light: must be true or false, and only a "
                                       "client may be light (a bare namespace: no daemons)")
    return Node(name, str(role), interfaces, _own_routes(file, spec, where, interfaces),
                light=light)


def _ranges(file: _File, top: dict[Any, Any], segments: dict[str, Segment],
            taken: list[str]) -> list[tuple[Node, int | None]]:
    """The light clients of the `clients:` ranges, each with its range's line."""
    if "clients" not in top:
        return []
    data = file.listed(top, "clients", top["clients"], "clients")
    found: list[tuple[Node, int | None]] = []
    names = set(taken)
    number = 1
    for index, spec in enumerate(data):
        where = f"clients: range #{index + 1}"
        spec = file.mapping(data, index, spec, where, _RANGE_KEYS)
        for key in ("segment", "count", "addresses"):
            if key not in spec:
                raise file.fail(data, index, f"{where}: give its {key} ({{segment: lan, "
                                             "count: 200, addresses: [203.0.113.30/24]}})")
        count, number = spec["count"], spec.get("first", number)
        for key, value in (("count", count), ("first", number)):
            if type(value) is not int or value < 1:
                raise file.fail(spec, key, f"{where}: {key}: {value!r} must be a whole "
                                           "number, 1 or more")
        if len(found) + count > MAX_CLIENTS:
            raise file.fail(spec, "count", f"{where}: more than {MAX_CLIENTS} clients in "
                                           "ranges: give fewer")
        (first,) = _interfaces(file, spec, {"eth0": yamlfile.subset(spec, _INTERFACE_KEYS)},
                               where, segments)
        bases = [ip_interface(a) for a in first.addresses]
        for base in bases:
            last = base.ip + (count - 1)
            if last not in base.network or (base.version == 4 and
                                            last == base.network.broadcast_address):
                raise file.fail(spec, "count", f"{where}: its last client would get {last}, "
                                               f"past the end of {base.network}: give fewer "
                                               "clients or an earlier first address")
        line = yamlfile.line_of(data, index)
        for offset in range(count):
            name = f"client{number + offset}"
            if name in names:
                raise file.fail(data, index, f"{where}: {name} is taken (by a host or an "
                                             "earlier range): give `first:` a free number")
            names.add(name)
            addresses = tuple(f"{b.ip + offset}/{b.network.prefixlen}" for b in bases)
            found.append((Node(name, "client", (Interface(first.name, first.segment,
                                                          addresses),), light=True), line))
        number += count
    return found


def _interfaces(file: _File, at: Any, data: Any, where: str,
                segments: dict[str, Segment]) -> tuple[Interface, ...]:
    key = "interfaces" if "interfaces" in at else "segment"
    if not isinstance(data, dict) or not data:
        raise file.fail(at, key, f"{where}: interfaces: must map each interface's name to "
                                 "its segment and addresses")
    found = []
    for ifname, spec in data.items():
        _ifname(file, data, ifname, ifname, where)
        here = f"{where}: {ifname}"
        spec = file.mapping(data, ifname, spec, here, _INTERFACE_KEYS)
        segment = spec.get("segment")
        if segment not in segments:
            raise file.fail(spec if "segment" in spec else data, "segment", f"{here}: unknown "
                            f"segment {segment!r} (segments: {', '.join(segments)})")
        addresses = file.listed(spec, "addresses", spec.get("addresses"), f"{here}: addresses")
        found.append(Interface(ifname, segment, tuple(
            _address(file, addresses, i, a, here, segments[segment])
            for i, a in enumerate(addresses))))
    return tuple(found)


def _ifname(file: _File, at: Any, key: Any, value: Any, where: str) -> str:
    if not isinstance(value, str) or not IFNAME.match(value) or len(value) > IFNAME_MAX:
        raise file.fail(at, key, f"{where}: interface name {value!r}: give the name as on "
                                 f"the box, 1 to {IFNAME_MAX} letters, digits, '_', '.' or "
                                 "'-' (not first)")
    return value


def _address(file: _File, at: Any, index: int, value: Any, where: str,
             segment: Segment) -> str:

    example = "e.g. 192.0.2.10/24 or \"2001:db8::10/64\""
    if not isinstance(value, str) or "/" not in value:
        raise file.fail(at, index, f"{where}: address {value!r}: write it as text with its "
                                   f"prefix length ({example})")
    try:
        address = ip_interface(value)
    except ValueError:
        raise file.fail(at, index, f"{where}: {value!r} is not an address ({example})") from None
    if not any(address.network.subnet_of(n)  # type: ignore[arg-type]  # same version
               for n in segment.networks(address.version)):
        raise file.fail(at, index, f"{where}: address {value} is outside segment "
                                   f"{segment.name} ({', '.join(segment.prefixes)}): give one "
                                   "inside its prefixes, or add the prefix to the segment")
    return str(address)


def _own_routes(file: _File, spec: dict[Any, Any], where: str,
                interfaces: tuple[Interface, ...]) -> tuple[Route, ...]:

    if "routes" not in spec:
        return ()
    data = file.listed(spec, "routes", spec["routes"], f"{where}: routes")
    found = []
    for index, item in enumerate(data):
        here = f"{where}: route #{index + 1}"
        item = file.mapping(data, index, item, here, _ROUTE_KEYS)
        to, via = item.get("to"), item.get("via")
        try:
            gateway = ip_address(via) if isinstance(via, str) else None
        except ValueError:
            gateway = None
        if gateway is None:
            raise file.fail(data, index, f"{here}: via: {via!r} is not an address")
        if not any(gateway in ip_interface(a).network for i in interfaces for a in i.addresses):
            raise file.fail(data, index, f"{here}: via {via} is on none of its segments: give "
                                         "the address of a router next to it")
        if to != "default":
            try:
                network = ip_network(to) if isinstance(to, str) else None
            except ValueError:
                network = None
            if network is None or network.version != gateway.version:
                raise file.fail(data, index, f"{here}: to: {to!r}: give `default` or an "
                                             f"IPv{gateway.version} prefix")
            to = str(network)
        found.append(Route(str(to), str(gateway)))
    return tuple(found)


def _check_site(file: _File, top: dict[Any, Any], site: Site) -> None:
    owners: dict[str, str] = {}
    for node in site.nodes:
        for address in node.addresses():
            if address in owners:
                raise file.fail(top, None, f"address {address} is given to {owners[address]} "
                                           f"and to {node.name}: give each its own")
            owners[address] = node.name
    if not site.policy_routers:
        raise file.fail(top, "routers", "no router carries the policy: add `policy: true` "
                                        "to the router whose rules are checked")
    if not site.clients:
        raise file.fail(top, "hosts", "no client: add a host with `role: client`")
    for role in SINGLE:
        playing = [n.name for n in site.nodes if n.role == role]
        if len(playing) > 1:
            raise file.fail(top, "hosts", f"hosts: {', '.join(playing)} all play {role}: "
                                          "a site has one")


def _check_ways_out(file: _File, site: Site, lines: dict[Node, int | None]) -> None:
    """Every node reaches the outside segment in each family it has addresses of."""
    outside = site.outside.name
    for node in site.nodes:
        if node.is_router and outside in node.segments:
            continue
        for family in (4, 6):
            mine = [a for i in node.interfaces for a in i.of_family(family)]
            own = any(r.destination == "default" and r.family == family for r in node.routes)
            if mine and not own and routes.default_hop(site, node, family) is None:
                what = "router" if node.is_router else "host"
                raise BadInput(f"{file.path}{f':{lines[node]}' if lines[node] else ''}: "
                               f"{what} {node.name} has no IPv{family} way to the outside "
                               f"segment {outside}: connect it through routers with IPv{family} "
                               "addresses, or give it a default route (routes:)")


def _check_teredo_server(file: _File, site: Site, lines: dict[Node, int | None]) -> None:
    """A Teredo server needs two consecutive IPv4 addresses: its own and the next, free."""
    for node in site.having(TEREDO_SERVER):
        where = f"{file.path}{f':{lines[node]}' if lines[node] else ''}: hosts: {node.name}"
        try:
            first = node.address(4)
        except LookupError:
            raise BadInput(f"{where}: a {node.role} (Teredo server) needs an IPv4 "
                           "address") from None
        _, cidr = node.interface_holding(first)
        second = IPv4Address(first) + 1

        if second not in ip_interface(cidr).network or site.owner_of(str(second)):
            raise BadInput(f"{where}: a Teredo server takes two consecutive IPv4 addresses: "
                           f"{second} (after {first}) must be free and inside {cidr}")

