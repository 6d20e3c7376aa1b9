"""The outside hosts a site leaves out: placed behind its outside segment, on documentation
prefixes it leaves free, with routes there and back; or one line saying why not."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import site_file
from lab.model.site import Route, Site
from tests.support import PROJECT

CAMPUS = PROJECT / "examples" / "campus" / "campus.yaml"

SMALL = """\
name: small
segments:
  lan: {prefixes: [192.0.2.0/24]}
  wan: {outside: true, prefixes: [WAN]}
routers:
  gw:
    policy: true
    interfaces:
      ens18: {segment: lan, addresses: [192.0.2.1/24]}
      ens19: {segment: wan, addresses: [GW]}
hosts:
  pc: {role: client, segment: lan, addresses: [192.0.2.10/24]}
"""


def _small(tmp_path: Path, wan: str = "198.51.100.0/30", gw: str = "198.51.100.1/30",
           extra: str = "") -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("WAN", wan).replace("GW", gw) + extra)
    return path


def _cidrs(site: Site, name: str) -> tuple[str, ...]:
    return tuple(a for i in site.role(name).interfaces for a in i.addresses)


def test_a_campus_gets_its_world_behind_the_providers_router() -> None:
    site = site_file.load(CAMPUS)
    world = site.outside
    assert (world.name, world.prefixes) == ("world", ("198.51.100.128/25", "2001:db8:ffff::/64"))
    assert not site.segment("wan").outside
    # upstream stands where fw's default routes point
    upstream = site.role("upstream")
    assert upstream.is_router and not upstream.policy
    assert [(i.segment, i.addresses) for i in upstream.interfaces] == [
        ("wan", ("198.51.100.1/28", "2001:db8:ffff:1::1/64")),
        ("world", ("198.51.100.129/25", "2001:db8:ffff::1/64"))]
    assert _cidrs(site, "remote-mx") == ("198.51.100.153/25", "2001:db8:ffff::25/64")
    assert _cidrs(site, "relay") == ("198.51.100.163/25", "2001:db8:ffff::35/64")
    assert _cidrs(site, "sink") == ("198.51.100.208/25", "2001:db8:ffff::80/64")
    assert site.owner_of("198.51.100.164") is None  # the relay's Teredo server's second
    assert site.role("fw").routes == (Route("default", "198.51.100.1"),
                                      Route("default", "2001:db8:ffff:1::1"))
    # the way back to every inside segment goes through fw's WAN address
    assert upstream.routes == (
        Route("203.0.113.0/25", "198.51.100.2"), Route("2001:db8:cafe:10::/64",
                                                       "2001:db8:ffff:1::2"),
        Route("203.0.113.128/25", "198.51.100.2"), Route("192.0.2.0/24", "198.51.100.2"),
        Route("2001:db8:cafe:25::/64", "2001:db8:ffff:1::2"))
    for name in ("remote-mx", "sink", "relay"):
        assert site.role(name).routes == (Route("default", "198.51.100.129"),
                                          Route("default", "2001:db8:ffff::1"))
    # documentation prefixes only, none overlapping the site's own
    inside = [ip_network(p) for s in site.segments if s is not world for p in s.prefixes]
    for prefix in map(ip_network, world.prefixes):
        assert not any(prefix.overlaps(n) for n in inside if n.version == prefix.version)


def test_an_ipv4_only_site_still_gets_an_ipv6_world(tmp_path: Path) -> None:
    site = site_file.load(_small(tmp_path))
    upstream = site.role("upstream")
    # on the site's outside only IPv4 (the highest free address); IPv6 only beyond
    assert upstream.interfaces[0].addresses == ("198.51.100.2/30",)
    assert site.role("gw").routes == (Route("default", "198.51.100.2"),)
    # the site's prefixes hold 192.0.2.0/24 and a /30 of 198.51.100.0/24: the world takes
    # the first whole /24 left, with the built-in sites' host numbers
    assert site.outside.prefixes == ("203.0.113.0/24", "2001:db8:ffff::/64")
    assert _cidrs(site, "remote-mx") == ("203.0.113.25/24", "2001:db8:ffff::25/64")
    assert site.role("remote-mx").has(6) and not site.role("pc").has(6)


@pytest.mark.parametrize("wan, gw, upstream", [
    ("198.51.100.0/31", "198.51.100.0/31", "198.51.100.1/31"),  # point to point: both hosts
    ("198.51.100.0/29", "198.51.100.6/29", "198.51.100.5/29"),  # the highest free
])
def test_upstream_takes_a_free_address_of_the_outside(tmp_path: Path, wan: str, gw: str,
                                                      upstream: str) -> None:
    site = site_file.load(_small(tmp_path, wan, gw))
    assert site.role("upstream").interfaces[0].addresses == (upstream,)


def test_a_site_that_gives_an_outside_host_gives_its_world(tmp_path: Path) -> None:
    path = _small(tmp_path, "198.51.100.0/24", "198.51.100.1/24",
                  "  sink: {role: sink, segment: wan, addresses: [198.51.100.80/24]}\n")
    site = site_file.load(path)
    assert site.role_names == ("gw", "pc", "sink")
    assert site.outside.name == "wan"


def test_the_world_compact_in_a_small_free_block(tmp_path: Path) -> None:
    text = SMALL.replace("/24]", "/25]").replace(
        "[WAN]", "[198.51.100.0/24, 203.0.113.0/24, 192.0.2.128/26, 192.0.2.224/29]").replace(
        "GW", "198.51.100.1/24")
    path = tmp_path / "crowded.yaml"
    path.write_text(text)
    site = site_file.load(path)
    # 192.0.2.192/27 is the largest block left: one address after another
    assert site.outside.prefixes[0] == "192.0.2.192/27"
    assert [_cidrs(site, n)[0] for n in ("remote-mx", "relay", "sink")] == [
        "192.0.2.194/27", "192.0.2.195/27", "192.0.2.197/27"]
    assert site.owner_of("192.0.2.196") is None  # the Teredo server's second address
    relay = ip_interface(_cidrs(site, "relay")[0])
    assert ip_address("192.0.2.196") in relay.network


@pytest.mark.parametrize("case, said", [
    ("no room for upstream",
     "segment wan (198.51.100.1/32) has no free address for the upstream router the lab adds "
     "to reach remote-mx, sink, relay: widen the prefix, or give those hosts yourself"),
    ("no documentation prefix left",
     "the site's prefixes leave no /29 of the IPv4 documentation prefixes (198.51.100.0/24, "
     "203.0.113.0/24, 192.0.2.0/24) free for the outside hosts the lab adds (remote-mx, sink, "
     "relay): leave one free, or give those hosts yourself"),
    ("a name the lab needs",
     "the lab adds the outside host relay, but the site has a node or segment of that name: "
     "rename yours (or give relay yourself)"),
])
def test_a_world_that_cannot_be_placed_is_one_line(tmp_path: Path, case: str, said: str) -> None:
    if case == "no room for upstream":
        path = _small(tmp_path, "198.51.100.1/32", "198.51.100.1/32")
    elif case == "no documentation prefix left":
        path = _small(tmp_path, "198.51.100.0/24, 203.0.113.0/24", "198.51.100.1/24")
    else:
        path = _small(tmp_path, extra="  relay: {role: client, segment: lan, "
                                      "addresses: [192.0.2.11/24]}\n")
    with pytest.raises(BadInput) as caught:
        site_file.load(path)
    assert str(caught.value) == f"{path}:2: {said}"
