"""The outside hosts of a site that gives none, placed by the lab behind its outside segment.

A user's site describes her own network; the foreign mail server (`remote-mx`),
the host that only records (`sink`) and the Teredo/6in4 relay (`relay`) are the
world's, not hers. A site that gives none of them gets all three, on a segment
of their own, `world`, behind an `upstream` router on the site's outside
segment (it stands in for the provider's router):

    site ... ─ fw ─ wan (the site's outside) ─ upstream ─ world ─ remote-mx, sink, relay

(A site that gives some of them gives its own world: the lab adds nothing, and
a scenario that needs one it lacks is refused before the lab boots.)

`upstream` takes the address the site's routers point their default route at,
where one is given and nobody has it; else the highest free address of the
outside segment, in each family the segment has. `world` becomes the lab's
outside segment (default routes lead there) on documentation prefixes no prefix
of the site overlaps: the largest free block of 198.51.100.0/24, 203.0.113.0/24
and 192.0.2.0/24 (a /29 at the least), and a /64 of 2001:db8:ffff::/48. It
always has IPv6, also when the site has none: Teredo and 6in4 carry IPv6
through IPv4, and their probes aim at remote-mx's IPv6 address.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from itertools import islice

from lab.model.site import Interface, Network, Node, Segment, Site

ROLES = ("remote-mx", "sink", "relay")  # in the order they are placed
WORLD4 = tuple(IPv4Network(p) for p in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"))
WORLD6 = IPv6Network("2001:db8:ffff::/48")
SMALLEST4 = 29  # room for upstream, remote-mx, relay and its Teredo server's second, sink
# where each goes in the world's prefix: the built-in sites' addresses where they fit
# (remote-mx .25, relay .35 and its Teredo server .36, sink .80), else one after another
ROOMY = {"upstream": 1, "remote-mx": 25, "relay": 35, "sink": 80}
COMPACT = {"upstream": 1, "remote-mx": 2, "relay": 3, "sink": 5}  # the relay's .4: its server
ROOMY6 = {"upstream": 1, "remote-mx": 0x25, "relay": 0x35, "sink": 0x80}
UPSTREAM_TRIES = 256  # free addresses looked for from the top of the outside prefix


class Unplaceable(ValueError):
    """The lab cannot place the outside roles: the message says why and what to do."""


def gives_its_world(site: Site) -> bool:
    """Whether the site gives any outside host of its own."""
    return any(n.role in ROLES for n in site.nodes)


def with_outside_roles(site: Site) -> Site:
    """The site, with the outside hosts placed behind its outside segment if it gives none."""
    if gives_its_world(site):
        return site
    roles = ROLES
    taken = {n.name for n in site.nodes} | set(site.segment_names)
    for role in roles:
        if role in taken:
            raise Unplaceable(f"the lab adds the outside host {role}, but the site has a node "
                              f"or segment of that name: rename yours (or give {role} "
                              "yourself)")
    world_name, router_name = _free_name("world", taken), _free_name("upstream", taken)
    world4, world6 = _world4(site), _world6(site)
    outside = site.outside
    upstream = Node(router_name, "router", (
        Interface("eth0", outside.name, _upstream_addresses(site)),
        Interface("eth1", world_name, (_at(world4, "upstream"), _at(world6, "upstream")))))
    hosts = tuple(Node(role, role, (Interface("eth0", world_name, (
        _at(world4, role), _at(world6, role))),)) for role in roles)
    segments = tuple(replace(s, outside=False) for s in site.segments)
    world = Segment(world_name, (str(world4), str(world6)), outside=True)
    return Site(site.name, site.description, (*segments, world),
                (*site.nodes, upstream, *hosts))


def _free_name(name: str, taken: set[str]) -> str:
    return next(n for n in (name, *(f"{name}{i}" for i in range(2, 100))) if n not in taken)


def _prefixes(site: Site) -> list[Network]:
    return [n for s in site.segments for n in s.networks()]


def _world4(site: Site) -> IPv4Network:
    used = _prefixes(site)
    for length in range(24, SMALLEST4 + 1):
        for block in WORLD4:
            for candidate in block.subnets(new_prefix=length):
                if not any(candidate.overlaps(n) for n in used if n.version == 4):
                    return candidate
    raise Unplaceable("the site's prefixes leave no /29 of the IPv4 documentation prefixes "
                      f"({', '.join(map(str, WORLD4))}) free for the outside hosts the lab "
                      f"adds ({', '.join(ROLES)}): leave one free, or give those hosts "
                      "yourself")


def _world6(site: Site) -> IPv6Network:
    used = [n for n in _prefixes(site) if n.version == 6]
    for candidate in islice(WORLD6.subnets(new_prefix=64), 1 << 16):
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise Unplaceable(f"the site's prefixes cover {WORLD6}, where the lab places the outside "
                      "hosts' IPv6: leave a /64 of it free, or give those hosts yourself")


def _at(network: IPv4Network | IPv6Network, role: str) -> str:
    """The role's address (CIDR) in the world's prefix."""
    if network.version == 6:
        offsets = ROOMY6
    else:
        offsets = ROOMY if network.num_addresses > max(ROOMY.values()) + 1 else COMPACT
    return f"{network[offsets[role]]}/{network.prefixlen}"


def _upstream_addresses(site: Site) -> tuple[str, ...]:
    """Upstream's addresses on the site's outside segment: one per family it has."""
    outside = site.outside
    owned = {a for n in site.nodes for a in n.addresses()}
    wanted = sorted({ip_address(r.via) for n in site.nodes if outside.name in n.segments
                     for r in n.routes if r.destination == "default"}, key=str)
    found = []
    for network in _first_of_each_family(outside):
        chosen = next((a for a in wanted if a in network and str(a) not in owned), None)
        if chosen is None:
            chosen = next((a for a in _from_the_top(network) if str(a) not in owned), None)
        if chosen is None:
            raise Unplaceable(f"segment {outside.name} ({network}) has no free address for "
                              "the upstream router the lab adds to reach "
                              f"{', '.join(ROLES)}: widen the prefix, or give those hosts "
                              "yourself")
        found.append(f"{chosen}/{network.prefixlen}")
    return tuple(found)


def _from_the_top(network: IPv4Network | IPv6Network) -> Iterator[IPv4Address | IPv6Address]:
    """A prefix's host addresses, highest first (a provider's router is often the last)."""
    last = network.num_addresses - 1
    point_to_point = network.prefixlen >= network.max_prefixlen - 1  # /31, /127: both hosts
    top = last - 1 if network.version == 4 and not point_to_point else last
    bottom = 0 if point_to_point else 1
    for index in range(top, max(bottom, top - UPSTREAM_TRIES) - 1, -1):
        yield network[index]


def _first_of_each_family(segment: Segment) -> list[IPv4Network | IPv6Network]:
    return [nets[0] for nets in (segment.networks(4), segment.networks(6)) if nets]

