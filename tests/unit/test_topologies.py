"""The addressing plans of the built-in topologies: published addresses, documentation
prefixes and routes that lead through a router on the same segment."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface, ip_network

import pytest

from lab.model.site import Plan, Port, Role
from topologies import TOPOLOGIES

PLANS = [t.PLAN for t in TOPOLOGIES.values()]
DOCUMENTATION: tuple[IPv4Network | IPv6Network, ...] = (
    ip_network("203.0.113.0/24"), ip_network("198.51.100.0/24"), ip_network("192.0.2.0/24"),
    ip_network("2001:db8::/32"))
LAN4, LAN6 = ip_network("203.0.113.0/24"), ip_network("2001:db8:b01a:70da::/64")


def _ids(plan: Plan) -> str:
    return plan.name


def test_builtin_topologies() -> None:
    assert sorted(TOPOLOGIES) == ["dmz", "screened-host"]
    assert all(name == t.PLAN.name for name, t in TOPOLOGIES.items())


def test_screened_host_mail_server_has_the_published_addresses() -> None:
    mx = TOPOLOGIES["screened-host"].PLAN.role("mx")
    assert mx.kind == "server"
    assert mx.address(4) == "203.0.113.25"
    assert mx.address(6) == "2001:db8:b01a:70da::25"
    assert TOPOLOGIES["screened-host"].PLAN.owner_of("203.0.113.25") == "mx"


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_policy_router_inside_port_is_eth0_on_the_lan(plan: Plan) -> None:
    router = plan.role(plan.policy_router)
    assert router.is_router
    eth0 = next(p for p in router.ports if p.name == "eth0")
    assert eth0.segment == "lan"
    assert {ip_interface(a).network for a in eth0.addresses} == {LAN4, LAN6}
    # the clients the published rules block are on that same segment and prefixes
    for name in plan.clients:
        (port,) = plan.role(name).ports
        assert port.segment == "lan"
        assert {ip_interface(a).network for a in port.addresses} == {LAN4, LAN6}


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_every_address_is_a_documentation_address(plan: Plan) -> None:
    for role in plan.roles:
        for port in role.ports:
            assert port.segment in plan.segments
            for cidr in port.addresses:
                network = ip_interface(cidr).network
                assert any(network.network_address in doc and network.prefixlen >= doc.prefixlen
                           for doc in DOCUMENTATION), (role.name, cidr)
        for route in role.routes:
            via = ip_address(route.via)
            assert any(via in doc for doc in DOCUMENTATION), (role.name, route)


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_addresses_are_unique_and_dual_stack(plan: Plan) -> None:
    addresses = [a for role in plan.roles for a in role.addresses()]
    assert len(addresses) == len(set(addresses))
    for role in plan.roles:
        assert ip_address(role.address(4)).version == 4
        assert ip_address(role.address(6)).version == 6


def _router_port(plan: Plan, address: str) -> tuple[Role, Port]:
    for role in plan.roles:
        for port in role.ports:
            if any(str(ip_interface(c).ip) == address for c in port.addresses):
                return role, port
    raise AssertionError(f"{address} belongs to no role of {plan.name}")


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_routes_go_through_a_router_on_the_same_segment(plan: Plan) -> None:
    for role in plan.roles:
        for route in role.routes:
            owner, port = _router_port(plan, route.via)
            assert owner.is_router and owner.name != role.name, (role.name, route)
            mine = [p for p in role.ports if p.segment == port.segment]
            assert mine, f"{role.name} has no port on {port.segment} for {route}"
            # the gateway is inside the subnet of the role's own port on that segment
            assert any(ip_address(route.via) in ip_interface(c).network
                       for c in mine[0].addresses), (role.name, route)
            assert route.family == ip_address(route.via).version


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_every_host_has_default_routes_for_both_families(plan: Plan) -> None:
    for role in plan.roles:
        if role.is_router:
            continue
        defaults = sorted(r.family for r in role.routes if r.destination == "default")
        assert defaults == [4, 6], role.name


def test_dmz_inner_carries_the_policy_and_mx_is_on_the_dmz() -> None:
    plan = TOPOLOGIES["dmz"].PLAN
    assert plan.policy_router == "inner"
    assert plan.routers == ("inner", "outer")
    (mx_port,) = plan.role("mx").ports
    assert mx_port.segment == "dmz"
    # the way back from the DMZ to the LAN is inner's DMZ address
    back = [r for r in plan.role("mx").routes if r.destination != "default"]
    assert {r.via for r in back} == {a for a in plan.role("inner").addresses()
                                     if ip_address(a) in ip_network("192.0.2.0/24")
                                     or ip_address(a) in ip_network("2001:db8:b01a:d32::/64")}


@pytest.mark.parametrize("plan", PLANS, ids=_ids)
def test_the_tunnel_relay_is_outside_next_to_the_foreign_mx(plan: Plan) -> None:
    relay, remote_mx = plan.role("relay"), plan.role("remote-mx")
    assert "relay" in plan.role_names and not relay.is_router
    assert relay.kind == remote_mx.kind
    assert relay.address(4) == "198.51.100.35"
    assert ip_address(relay.address(6)) in ip_network("2001:db8:ffff:1::/64")
    assert [p.segment for p in relay.ports] == [p.segment for p in remote_mx.ports]
    assert "relay" not in plan.clients
