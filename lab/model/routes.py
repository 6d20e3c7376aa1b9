"""A site's static routes, computed from its graph: segments and the routers between them.

For each family, every node gets
- a default route towards the outside segment, via the first router on the
  shortest way there. A host on the outside segment points it at the first router
  on that segment (its way into the site); a router on the outside segment gets
  none: it is the edge of the lab, there is nothing beyond.
- a route to each segment it is not on whose next hop differs from its default's
  (in a DMZ, the mail server's way back to the LAN through the inner router).

Ties between equally short ways go to the router written first. A site file's own
`routes:` of a node replace the computed route to the same destination, or add one.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Interface, IPv6Interface
from ipaddress import ip_interface as _parse

from lab.model.site import Node, Route, Site

Hop = tuple[str, str]  # (router, next-hop address)


@lru_cache(maxsize=4096)
def ip_interface(cidr: str) -> IPv4Interface | IPv6Interface:
    """The parsed address (cached: a thousand clients' routes parse the routers' often)."""
    return _parse(cidr)


def _on(node: Node, segment: str, family: int) -> tuple[str, ...]:
    """The node's addresses (CIDR) of that family on that segment."""
    return tuple(a for i in node.interfaces if i.segment == segment for a in i.of_family(family))


def _next_hop(router: Node, node: Node, segment: str, family: int) -> str | None:
    """The router's address on `segment` for `node`: in one of the node's networks there."""
    theirs = _on(router, segment, family)
    mine = [ip_interface(a).network for a in _on(node, segment, family)]
    shared = [a for a in theirs if any(ip_interface(a).ip in net for net in mine)]
    chosen = (shared or list(theirs))[:1]
    return str(ip_interface(chosen[0]).ip) if chosen else None


def first_hops(site: Site, node: Node, family: int) -> dict[str, Hop]:
    """For each segment the node is not on but reaches: the first router on the way."""
    routers = [site.role(name) for name in site.routers if name != node.name]
    start = [s for s in node.segments if _on(node, s, family)]
    seen = set(start)
    hops: dict[str, Hop] = {}
    frontier: list[tuple[str, Hop | None]] = [(s, None) for s in start]
    while frontier:  # breadth first: the shortest way, ties to the router written first
        reached: list[tuple[str, Hop | None]] = []
        for segment, hop in frontier:
            for router in routers:
                via = _next_hop(router, node, segment, family)
                if via is None:
                    continue
                for other in router.segments:
                    if other in seen or not _on(router, other, family):
                        continue
                    seen.add(other)
                    hops[other] = hop or (router.name, via)
                    reached.append((other, hops[other]))
        frontier = reached
    return hops


def default_hop(site: Site, node: Node, family: int) -> Hop | None:
    """Where the node's default route of that family leads (None: it has none)."""
    outside = site.outside.name
    if not _on(node, outside, family):
        return first_hops(site, node, family).get(outside)
    if node.is_router:
        return None
    for name in site.routers:
        via = _next_hop(site.role(name), node, outside, family) if name != node.name else None
        if via is not None:
            return name, via
    return None


def computed(site: Site, node: Node) -> tuple[Route, ...]:
    """The node's routes as the graph gives them: defaults first, then per segment."""
    defaults = {family: default_hop(site, node, family) for family in (4, 6)}
    routes = [Route("default", hop[1]) for hop in defaults.values() if hop is not None]
    hops = {family: first_hops(site, node, family) for family in (4, 6)}
    for segment in site.segments:
        for family in (4, 6):
            hop = hops[family].get(segment.name)
            default = defaults[family]
            if hop is None or (default is not None and hop[1] == default[1]):
                continue
            routes += [Route(str(net), hop[1]) for net in segment.networks(family)]
    return tuple(routes)


def with_own(routes: tuple[Route, ...], own: tuple[Route, ...]) -> tuple[Route, ...]:
    """`routes` with the site file's own routes replacing those to the same destination."""
    mine = {(r.family, r.destination) for r in own}
    return (*(r for r in routes if (r.family, r.destination) not in mine), *own)
