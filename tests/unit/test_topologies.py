"""The built-in sites: published addresses, documentation prefixes and routes that
lead through a router on the same segment."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface, ip_network

import pytest

import topologies
from lab.model.site import Interface, Node, Site

SITES = [topologies.load(name) for name in topologies.builtin_names()]
DOCUMENTATION: tuple[IPv4Network | IPv6Network, ...] = (
    ip_network("203.0.113.0/24"), ip_network("198.51.100.0/24"), ip_network("192.0.2.0/24"),
    ip_network("2001:db8::/32"))
LAN4, LAN6 = ip_network("203.0.113.0/24"), ip_network("2001:db8:b01a:70da::/64")


def _ids(site: Site) -> str:
    return site.name


def test_builtin_topologies() -> None:
    assert sorted(topologies.builtin_names()) == ["dmz", "screened-host"]
    assert all(name == topologies.load(name).name for name in topologies.builtin_names())


def test_screened_host_mail_server_has_the_published_addresses() -> None:
    mx = topologies.load("screened-host").role("mx")
    assert mx.kind == "server"
    assert mx.address(4) == "203.0.113.25"
    assert mx.address(6) == "2001:db8:b01a:70da::25"
    assert topologies.load("screened-host").owner_of("203.0.113.25") == "mx"


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_policy_router_inside_port_is_eth0_on_the_lan(site: Site) -> None:
    router = site.role(site.policy_router)
    assert router.is_router
    eth0 = next(p for p in router.interfaces if p.name == "eth0")
    assert eth0.segment == "lan"
    assert {ip_interface(a).network for a in eth0.addresses} == {LAN4, LAN6}
    # the clients the published rules block are on that same segment and prefixes
    for name in site.clients:
        (port,) = site.role(name).interfaces
        assert port.segment == "lan"
        assert {ip_interface(a).network for a in port.addresses} == {LAN4, LAN6}


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_every_address_is_a_documentation_address(site: Site) -> None:
    for role in site.nodes:
        for port in role.interfaces:
            assert port.segment in site.segment_names
            for cidr in port.addresses:
                network = ip_interface(cidr).network
                assert any(network.network_address in doc and network.prefixlen >= doc.prefixlen
                           for doc in DOCUMENTATION), (role.name, cidr)
        for route in role.routes:
            via = ip_address(route.via)
            assert any(via in doc for doc in DOCUMENTATION), (role.name, route)


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_addresses_are_unique_and_dual_stack(site: Site) -> None:
    addresses = [a for role in site.nodes for a in role.addresses()]
    assert len(addresses) == len(set(addresses))
    for role in site.nodes:
        assert ip_address(role.address(4)).version == 4
        assert ip_address(role.address(6)).version == 6


def _router_port(site: Site, address: str) -> tuple[Node, Interface]:
    for role in site.nodes:
        for port in role.interfaces:
            if any(str(ip_interface(c).ip) == address for c in port.addresses):
                return role, port
    raise AssertionError(f"{address} belongs to no role of {site.name}")


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_routes_go_through_a_router_on_the_same_segment(site: Site) -> None:
    for role in site.nodes:
        for route in role.routes:
            owner, port = _router_port(site, route.via)
            assert owner.is_router and owner.name != role.name, (role.name, route)
            mine = [p for p in role.interfaces if p.segment == port.segment]
            assert mine, f"{role.name} has no port on {port.segment} for {route}"
            # the gateway is inside the subnet of the role's own port on that segment
            assert any(ip_address(route.via) in ip_interface(c).network
                       for c in mine[0].addresses), (role.name, route)
            assert route.family == ip_address(route.via).version


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_every_host_has_default_routes_for_both_families(site: Site) -> None:
    for role in site.nodes:
        if role.is_router:
            continue
        defaults = sorted(r.family for r in role.routes if r.destination == "default")
        assert defaults == [4, 6], role.name


def test_dmz_inner_carries_the_policy_and_mx_is_on_the_dmz() -> None:
    site = topologies.load("dmz")
    assert site.policy_router == "inner"
    assert site.routers == ("inner", "outer")
    (mx_port,) = site.role("mx").interfaces
    assert mx_port.segment == "dmz"
    # the way back from the DMZ to the LAN is inner's DMZ address
    back = [r for r in site.role("mx").routes if r.destination != "default"]
    assert {r.via for r in back} == {a for a in site.role("inner").addresses()
                                     if ip_address(a) in ip_network("192.0.2.0/24")
                                     or ip_address(a) in ip_network("2001:db8:b01a:d32::/64")}


@pytest.mark.parametrize("site", SITES, ids=_ids)
def test_the_tunnel_relay_is_outside_next_to_the_foreign_mx(site: Site) -> None:
    relay, remote_mx = site.role("relay"), site.role("remote-mx")
    assert "relay" in site.role_names and not relay.is_router
    assert relay.kind == remote_mx.kind
    assert relay.address(4) == "198.51.100.35"
    assert ip_address(relay.address(6)) in ip_network("2001:db8:ffff:1::/64")
    assert [p.segment for p in relay.interfaces] == [p.segment for p in remote_mx.interfaces]
    assert "relay" not in site.clients
