"""Routes computed from a site's graph reproduce the routes the built-in topologies were
written with, and follow the shortest way in a longer chain."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import topologies
from lab.model import site_file
from lab.model.site import Route

_LAN4, _LAN6 = "203.0.113.1", "2001:db8:b01a:70da::1"
_WAN4, _WAN6 = "198.51.100.1", "2001:db8:ffff:1::1"
_TO_LAN = [("203.0.113.0/24", "192.0.2.2"), ("2001:db8:b01a:70da::/64", "2001:db8:b01a:d32::2")]

# The routes of topologies/screened_host.py and topologies/dmz.py before sites were data,
# copied from their plans (node → (destination, via) in order).
WRITTEN = {
    "screened-host": {
        "client1": [("default", _LAN4), ("default", _LAN6)],
        "client2": [("default", _LAN4), ("default", _LAN6)],
        "mx": [("default", _LAN4), ("default", _LAN6)],
        "gw": [],
        "remote-mx": [("default", _WAN4), ("default", _WAN6)],
        "sink": [("default", _WAN4), ("default", _WAN6)],
        "relay": [("default", _WAN4), ("default", _WAN6)],
    },
    "dmz": {
        "client1": [("default", _LAN4), ("default", _LAN6)],
        "client2": [("default", _LAN4), ("default", _LAN6)],
        "inner": [("default", "192.0.2.1"), ("default", "2001:db8:b01a:d32::1")],
        "mx": [("default", "192.0.2.1"), ("default", "2001:db8:b01a:d32::1"), *_TO_LAN],
        "outer": _TO_LAN,
        "remote-mx": [("default", _WAN4), ("default", _WAN6)],
        "sink": [("default", _WAN4), ("default", _WAN6)],
        "relay": [("default", _WAN4), ("default", _WAN6)],
    },
}


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_computed_routes_are_the_routes_written_before(name: str) -> None:
    site = topologies.load(name)
    computed = {n.name: [(r.destination, r.via) for r in n.routes] for n in site.nodes}
    assert computed == WRITTEN[name]


CHAIN = """\
name: chain
segments:
  lan: {prefixes: [192.0.2.0/26]}
  transit: {prefixes: [192.0.2.64/26]}
  dmz: {prefixes: [192.0.2.128/26]}
  wan: {prefixes: [198.51.100.0/24], outside: true}
routers:
  a:
    policy: true
    interfaces:
      eth0: {segment: lan, addresses: [192.0.2.1/26]}
      eth1: {segment: transit, addresses: [192.0.2.65/26]}
  b:
    interfaces:
      eth0: {segment: transit, addresses: [192.0.2.66/26]}
      eth1: {segment: dmz, addresses: [192.0.2.129/26]}
  c:
    interfaces:
      eth0: {segment: dmz, addresses: [192.0.2.130/26]}
      eth1: {segment: wan, addresses: [198.51.100.1/24]}
hosts:
  pc: {role: client, segment: lan, addresses: [192.0.2.10/26]}
  mx: {role: mx, segment: dmz, addresses: [192.0.2.140/26]}
  far: {role: sink, segment: wan, addresses: [198.51.100.80/24]}
"""


def test_a_longer_chain_routes_through_the_first_router_of_the_shortest_way() -> None:
    site = site_file.parse(Path("chain.yaml"), yaml.safe_load(CHAIN))
    routes = {n.name: n.routes for n in site.nodes}
    assert routes["pc"] == (Route("default", "192.0.2.1"),)
    assert routes["a"] == (Route("default", "192.0.2.66"),)
    assert routes["b"] == (Route("default", "192.0.2.130"), Route("192.0.2.0/26", "192.0.2.65"))
    assert routes["c"] == (Route("192.0.2.0/26", "192.0.2.129"),
                           Route("192.0.2.64/26", "192.0.2.129"))
    assert routes["mx"] == (Route("default", "192.0.2.130"), Route("192.0.2.0/26", "192.0.2.129"),
                            Route("192.0.2.64/26", "192.0.2.129"))
    assert routes["far"] == (Route("default", "198.51.100.1"),)
