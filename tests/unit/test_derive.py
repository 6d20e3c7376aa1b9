"""The twin's site derived from what the audit read: the gateway's interfaces and routes.

The gateway here is an engineer's own: a LAN on ens18 (192.0.2.0/24 and
2001:db8:cafe::/64, the mail server .25 and ::25), the WAN on ens19 with its
default routes, management on ens20 (a /28 of 203.0.113.0/24, so that the
outside the twin adds must go elsewhere).
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_interface, ip_network
from pathlib import Path
from typing import Any

import pytest

from lab.audit import derive
from lab.audit.facts import ADDRESSES, ROUTES, SYSCTLS, DefaultRoute, Facts, Output
from lab.audit.twin import derived_site, every_client, on_site, twin_scenario
from lab.compliance.addressing import Addressing, Requested
from lab.errors import BadInput
from lab.model import scenario
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from lab.netfilter.family import IPv4, IPv6
from tests.unit.test_audit_checks import PUBLISHED_V4

GATEWAY = "ssh://root@203.0.113.1"
# the published rules, written for this network
RULES_V4 = PUBLISHED_V4.replace("203.0.113.", "192.0.2.").replace("eth0", "ens18")
RULES_V6 = RULES_V4.replace("192.0.2.25/32", "2001:db8:cafe::25/128").replace(
    "192.0.2.0/24", "2001:db8:cafe::/64")


def interface(name: str, *cidrs: str, kind: str = "ether") -> dict[str, Any]:
    """One interface as `ip -json address show` prints it."""
    return {"ifname": name, "link_type": kind, "flags": ["UP"], "addr_info": [
        {"family": "inet6" if ":" in c else "inet", "local": c.split("/")[0],
         "prefixlen": int(c.split("/")[1]),
         "scope": "link" if c.startswith("fe80") else "global"} for c in cidrs]}


LO = interface("lo", "127.0.0.1/8", "::1/128", kind="loopback")
LAN = interface("ens18", "192.0.2.1/24", "2001:db8:cafe::1/64", "fe80::1/64")
WAN = interface("ens19", "198.51.100.1/24", "2001:db8:ffff:1::1/64", "fe80::2/64")
MANAGEMENT = interface("ens20", "203.0.113.1/28", "fe80::3/64")
DEFAULT_V4 = {"dst": "default", "gateway": "198.51.100.254", "dev": "ens19", "flags": []}
DEFAULT_V6 = {"dst": "default", "gateway": "2001:db8:ffff:1::fe", "dev": "ens19",
              "metric": 1024, "flags": []}


def gateway_facts(interfaces: list[dict[str, Any]] | None = None,
                  v4_routes: list[dict[str, Any]] | None = None,
                  v6_routes: list[dict[str, Any]] | None = None,
                  v4: str = RULES_V4, v6: str = RULES_V6) -> Facts:
    def out(command: str, text: str) -> Output:
        return Output(command, 0, text, "")
    kernel = {"dst": "192.0.2.0/24", "dev": "ens18", "protocol": "kernel", "scope": "link"}
    return Facts(GATEWAY, {
        IPv4().save: out(IPv4().save, v4), IPv6().save: out(IPv6().save, v6),
        SYSCTLS: out(SYSCTLS, "net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n"),
        ADDRESSES: out(ADDRESSES, json.dumps(interfaces or [LO, LAN, WAN, MANAGEMENT])),
        ROUTES[4]: out(ROUTES[4], json.dumps([kernel, DEFAULT_V4] if v4_routes is None
                                             else v4_routes)),
        ROUTES[6]: out(ROUTES[6], json.dumps([DEFAULT_V6] if v6_routes is None
                                             else v6_routes))})


def _addresses(site: Any, node: str) -> list[str]:
    return [a for i in site.role(node).interfaces for a in i.addresses]


def test_the_facts_keep_the_default_routes_and_the_interfaces_that_can_be_segments() -> None:
    facts = gateway_facts(v4_routes=[
        {"dst": "default", "type": "unreachable", "dev": "lo", "metric": 1},
        {"dst": "default", "gateway": "192.0.2.254", "dev": "ens18", "metric": 200},
        {**DEFAULT_V4, "metric": 100}],
        v6_routes=[{"dst": "default", "metric": 1024, "nexthops": [
            {"gateway": "fe80::fe", "dev": "ens19"}, {"gateway": "fe80::fd", "dev": "ens19"}]}])
    assert facts.default_route(4) == DefaultRoute(4, "ens19", "198.51.100.254")  # lowest metric
    assert facts.default_route(6) == DefaultRoute(6, "ens19", "fe80::fe")  # multipath: first
    assert facts.global_interfaces == {  # no loopback, no link-local
        "ens18": ("192.0.2.1/24", "2001:db8:cafe::1/64"),
        "ens19": ("198.51.100.1/24", "2001:db8:ffff:1::1/64"), "ens20": ("203.0.113.1/28",)}
    unread = replace(facts, outputs={k: v for k, v in facts.outputs.items()
                                     if k not in ROUTES.values()})
    assert unread.default_route(4) is None  # a gateway whose routes were not read


def test_the_layout_tells_the_outside_the_clients_and_management_apart() -> None:
    facts = gateway_facts()
    found = derive.layout(facts)
    assert (found.outside, found.clients) == ("ens19", ("ens18", "ens20"))
    assert derive.layout(facts, management=("ens20",)).clients == ("ens18",)
    assert derive.layout(facts, inside=("ens20",)).clients == ("ens20",)
    assert derive.layout(facts, clients=("192.0.2.0/25",)).clients == ("ens18",)
    with pytest.raises(BadInput, match=r"--inside ens99: the gateway has no such interface "
                                       r"\(it has ens18, ens19, ens20, lo\)"):
        derive.layout(facts, inside=("ens99",))
    with pytest.raises(BadInput, match="--management ens19: that is the interface of the "
                                       "gateway's default route"):
        derive.layout(facts, management=("ens19",))


def test_the_twin_is_the_gateways_own_network() -> None:
    facts = gateway_facts()
    site, notes = derive.site(facts, derive.layout(facts, management=("ens20",)),
                              ("192.0.2.25", "2001:db8:cafe::25"))
    assert notes == ()
    gw = site.role("gw")
    assert gw.policy and site.policy_router == "gw"
    # its own names and addresses, a segment each; nothing link-local or of the loopback
    assert [(i.name, i.segment, i.addresses) for i in gw.interfaces] == [
        ("ens18", "ens18", ("192.0.2.1/24", "2001:db8:cafe::1/64")),
        ("ens19", "ens19", ("198.51.100.1/24", "2001:db8:ffff:1::1/64")),
        ("ens20", "ens20", ("203.0.113.1/28",))]
    # the default routes' next hops stand in for the upstream router; the twin's gw routes
    # through them as the gateway does
    assert _addresses(site, "upstream")[:2] == ["198.51.100.254/24", "2001:db8:ffff:1::fe/64"]
    assert [(r.destination, r.via) for r in gw.routes] == [
        ("default", "198.51.100.254"), ("default", "2001:db8:ffff:1::fe")]
    # behind it, the outside on documentation prefixes no segment uses
    outside = site.outside
    assert outside.name == "internet" and outside.prefixes == (
        "203.0.113.128/25", "2001:db8:ffff:2::/64")
    for role in ("remote-mx", "relay", "sink"):
        assert site.role(role).segments == ("internet",)
    # two clients on the LAN, the mail server where its address is; management is empty
    assert _addresses(site, "client1") == ["192.0.2.10/24", "2001:db8:cafe::10/64"]
    assert _addresses(site, "client2") == ["192.0.2.11/24", "2001:db8:cafe::11/64"]
    assert _addresses(site, "mx") == ["192.0.2.25/24", "2001:db8:cafe::25/64"]
    assert site.clients == ("client1", "client2")
    assert [n.name for n in site.nodes if "ens20" in n.segments] == ["gw"]
    # an interface named like a node gets a segment of another name
    odd = interface("client1", "203.0.113.1/28")
    site, _ = derive.site(gateway_facts([LO, LAN, WAN, odd]), derive.layout(
        gateway_facts([LO, LAN, WAN, odd]), management=("client1",)), ("192.0.2.25",))
    assert site.role("gw").interfaces[2].segment == "client1-2"


def test_the_twins_clients_take_no_address_the_rules_name_and_every_client_segment() -> None:
    v4 = RULES_V4.replace("COMMIT", "-A FORWARD -s 192.0.2.10/32 -j ACCEPT\n"
                                    "-A FORWARD -d 192.0.2.11/32 -j ACCEPT\nCOMMIT")
    facts = gateway_facts(v4=v4)
    site, notes = derive.site(facts, derive.layout(facts), ("192.0.2.25",))
    assert _addresses(site, "client1") == ["192.0.2.12/24", "2001:db8:cafe::10/64"]
    # without --management, ens20 is a client segment too: two clients there
    assert site.clients == ("client1", "client2", "client3", "client4")
    assert _addresses(site, "client3") == ["203.0.113.2/28"]  # a /28 starts at .1
    # only its IPv4 address is known: it is dual-stack like its segment, on a free address
    assert _addresses(site, "mx") == ["192.0.2.25/24", "2001:db8:cafe::12/64"]
    assert notes == ("the mail server's IPv6 address is unknown (none given or found in the "
                     "rules): the twin's mx takes 2001:db8:cafe::12/64",)


def test_what_the_derivation_has_to_assume_is_said() -> None:
    # the usual IPv6 default route: via the router's link-local address
    facts = gateway_facts(v6_routes=[{**DEFAULT_V6, "gateway": "fe80::fe"}])
    site, notes = derive.site(facts, derive.layout(facts, management=("ens20",)), ())
    assert _addresses(site, "upstream")[1] == "2001:db8:ffff:1::10/64"
    assert notes[0] == ("the IPv6 default route's next hop fe80::fe is link-local: the twin's "
                        "upstream router stands at 2001:db8:ffff:1::10/64")
    assert _addresses(site, "mx") == ["192.0.2.12/24", "2001:db8:cafe::12/64"]  # after clients
    assert notes[1].startswith("no mail server given (--mail-server) or found in the rules: "
                               "the twin's mx is 192.0.2.12/24, 2001:db8:cafe::12/64")
    # no IPv6 default route: IPv6 is not in the twin (nothing of it leaves the gateway)
    facts = gateway_facts(v6_routes=[])
    site, notes = derive.site(facts, derive.layout(facts), ("192.0.2.25", "2001:db8:cafe::25"))
    assert all(ip_network(p).version == 4 for s in site.segments for p in s.prefixes)
    assert notes == ("the gateway has no IPv6 default route: the twin leaves its IPv6 "
                     "addresses out (nothing of IPv6 leaves the gateway)",
                     "the mail server's 2001:db8:cafe::25 is not in the twin: the gateway has "
                     "no IPv6 default route")
    # a point-to-point outside without a global IPv6 address: a documentation prefix
    wan = interface("ppp0", "198.51.100.1/32", "fe80::2/64")
    facts = gateway_facts([LO, LAN, wan], [{"dst": "default", "dev": "ppp0"}],
                          [{"dst": "default", "gateway": "fe80::1", "dev": "ppp0"}])
    site, notes = derive.site(facts, derive.layout(facts), ("192.0.2.25",))
    ppp0 = site.role("gw").interfaces[1]
    assert ppp0.name == "ppp0" and ppp0.addresses == (
        "198.51.100.1/32", "203.0.113.1/24", "2001:db8:ffff:1::1/64")
    assert _addresses(site, "upstream")[:2] == ["203.0.113.2/24", "2001:db8:ffff:1::2/64"]
    assert notes[0] == ("the IPv4 default route's next hop (none: a point-to-point link) is on "
                        "none of ppp0's prefixes: the twin's upstream router and ppp0 of the "
                        "twin get the documentation prefix 203.0.113.0/24 (ppp0 203.0.113.1/24)")
    assert site.outside.prefixes == ("198.51.100.128/25", "2001:db8:ffff:2::/64")


@pytest.mark.parametrize("given, message", [
    (("192.0.2.1",), "mail server 192.0.2.1 is the gateway's own address"),
    (("10.0.0.25",), "mail server 10.0.0.25 is on none of the gateway's prefixes"),
    (("192.0.2.25", "203.0.113.5"), "its addresses are on different segments (ens18, ens20)"),
])
def test_a_mail_server_the_twin_cannot_place_is_one_line(given: tuple[str, ...],
                                                         message: str) -> None:
    facts = gateway_facts()
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        derive.site(facts, derive.layout(facts), given)


def test_a_gateway_without_default_route_keeps_the_scenarios_site() -> None:
    facts = gateway_facts(v4_routes=[], v6_routes=[])
    site, notes = derived_site(facts, Requested(), Addressing(), "gw")
    assert site is None
    assert notes[0].startswith("the gateway has no default route")
    with pytest.raises(BadInput, match="no default route: the twin cannot tell the outside"):
        derive.site(facts, derive.layout(facts), ())
    assert derive.layout(gateway_facts([LO, WAN])).clients == ()  # nothing inside the outside
    with pytest.raises(BadInput, match="the twin has no client segment"):
        derive.site(gateway_facts([LO, WAN]), derive.layout(gateway_facts([LO, WAN])), ())


def test_free_documentation_prefixes_avoid_every_segment() -> None:
    used = [ip_network(p) for p in ("203.0.113.0/24", "198.51.100.0/25", "192.0.2.0/24",
                                    "2001:db8:ffff:1::/64", "2001:db8:ffff:2::/63")]
    assert str(derive.free_prefix(4, used)) == "198.51.100.128/25"
    assert str(derive.free_prefix(6, used)) == "2001:db8:ffff:4::/64"
    with pytest.raises(BadInput, match="leave no IPv6 documentation prefix free"):
        derive.free_prefix(6, [ip_network("2001:db8::/32")])


def test_the_scenario_runs_on_the_derived_site_with_every_client() -> None:
    facts = gateway_facts()
    site, _ = derive.site(facts, derive.layout(facts), ("192.0.2.25", "2001:db8:cafe::25"))
    base = scenario.load("fixed-screened-block")
    twin, notes = twin_scenario(facts, base, {}, site)
    assert twin.site == site and twin.topology == site.name
    assert twin.name == f"fixed-screened-block twin of {GATEWAY}"
    assert notes == ()  # the rules name ens18, which the twin's gw has: nothing to map
    assert [p.path for p in twin.policies["gw"]] == [Path(f"{GATEWAY} iptables-save"),
                                                     Path(f"{GATEWAY} ip6tables-save")]
    assert "-i ens18" in " ".join(twin.policies["gw"][0].commands[0].argv)
    # `from: clients` covers the second client segment's client3 and client4 too
    rows = {(e.source, e.probe, e.family) for e in twin.expectations}
    assert {("client3", "smtp", 6), ("client4", "spam", 4)} <= rows
    assert len(twin.expectations) == len(base.expectations) + 2 * sum(
        e.source == "client2" for e in base.expectations)


def test_a_twin_without_ipv6_runs_on_an_ipv4_only_site() -> None:
    # Its IPv6 rows are reported as not applicable in the lab (tests/lab/test_twin_site.py);
    # refusing it waited for IPv4-only sites, which the lab now runs.
    facts = gateway_facts(v6_routes=[])
    site, _ = derive.site(facts, derive.layout(facts, management=("ens20",)), ("192.0.2.25",))
    assert {n.version for s in site.segments for n in s.networks()} == {4}
    twin, _ = on_site(scenario.load("fixed-screened-block"), site)
    assert twin.site == site
    assert {e.family for e in twin.expectations} == {4, 6}  # the rows stay, to be found n/a


def test_rows_for_some_clients_only_stay_theirs_and_missing_roles_are_one_line() -> None:
    row = Expectation("client1", "remote-mx", "smtp", 4, Verdict.ALLOWED)
    both = (row, replace(row, source="client2"))
    assert every_client((row,), ("client1", "client2"), ("client1", "client2", "client3")) == (
        row,)
    assert every_client(both, ("client1", "client2"), ("client1", "client2", "client3"))[2] == \
        replace(row, source="client3")
    facts = gateway_facts()
    site, _ = derive.site(facts, derive.layout(facts, management=("ens20",)), ("192.0.2.25",))
    dmz = scenario.load("fixed-dmz-block")  # its policy router is inner: the twin has gw
    with pytest.raises(BadInput, match="--twin fixed-dmz-block: the scenario names inner"):
        on_site(replace(dmz, traps={"inner": ()}), site)
    _, notes = on_site(dmz, site)
    assert notes == ("fixed-dmz-block: the twin has no router inner: its policy is not loaded",)


def test_the_checks_defaults_come_from_the_gateways_inside_interfaces() -> None:
    addressing, notes = Requested(management=("ens20",)).resolve(gateway_facts())
    assert addressing == Addressing(("192.0.2.0/24", "2001:db8:cafe::/64"),
                                    ("192.0.2.25", "2001:db8:cafe::25"), "ens18")
    assert notes == (
        "clients assumed: 192.0.2.0/24, 2001:db8:cafe::/64, the prefixes of the gateway's "
        "ens18 (every interface but the default route's ens19 and management's ens20); give "
        "--clients to say otherwise",
        "mail server assumed: 192.0.2.25, 2001:db8:cafe::25: what the gateway's rules let out "
        "to port 25 of the client networks; give --mail-server to say otherwise")
    # what is given is taken as given, and not said again
    given = Requested(("192.0.2.0/24",), ("192.0.2.25",), ("ens18",))
    assert given.resolve(gateway_facts()) == (
        Addressing(("192.0.2.0/24",), ("192.0.2.25",), "ens18"), ())


def test_two_inside_interfaces_each_with_its_own_clients() -> None:
    guest = interface("ens21", "198.51.100.129/25")
    wan = interface("ens19", "198.51.100.1/25", "2001:db8:ffff:1::1/64")
    facts = gateway_facts([LO, LAN, wan, guest])
    addressing, _ = Requested().resolve(facts)
    assert addressing.inside == "ens18"
    assert addressing.inside_for("198.51.100.129") == "ens21"
    assert addressing.insides == ("ens18", "ens21")


def test_no_default_route_assumes_the_published_network_only_where_the_gateway_has_it() -> None:
    published = interface("eth0", "203.0.113.1/24", "2001:db8:b01a:70da::1/64")
    facts = gateway_facts([LO, published, WAN], [], [])
    addressing, notes = Requested().resolve(facts)
    assert addressing == Addressing()
    assert "its eth0 holds the published 203.0.113.0/24" in notes[0]
    addressing, notes = Requested().resolve(gateway_facts([LO, LAN, WAN], [], []))
    assert addressing.clients == () and addressing.mail_server == ()
    assert notes == ("clients unknown: the gateway has no default route to tell its inside "
                     "from its outside; give --clients and --inside",)


def test_host_addresses_the_rules_name() -> None:
    v4 = RULES_V4.replace("COMMIT", "-A FORWARD -d 198.51.100.7/32,192.0.2.0/24 -j ACCEPT\n"
                                    "COMMIT")
    found = derive.hosts_in_rules(gateway_facts(v4=v4))
    assert found == {ip_interface("192.0.2.25/32").ip, ip_interface("2001:db8:cafe::25/128").ip,
                     ip_interface("198.51.100.7/32").ip}
