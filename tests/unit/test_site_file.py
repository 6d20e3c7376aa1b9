"""Site files: what a good one gives, and one line naming the file, item and fix for each
mistake (before any lab boots)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.errors import BadInput
from lab.model import site_file
from lab.model.site import Route

# An engineer's own network: her interface names, her addressing, a /25 and a /28,
# two addresses on one interface, IPv6 on the LAN only.
GOOD = """\
name: branch
description: a branch office
segments:
  office:
    prefixes: [192.0.2.0/25, "2001:db8:cafe::/64"]
  servers:
    prefixes: [192.0.2.128/28]
  uplink:
    outside: true
    prefixes: [198.51.100.0/24, "2001:db8:ffff:1::/64"]
routers:
  fw:
    policy: true
    interfaces:
      ens18: {segment: office, addresses: [192.0.2.1/25, "2001:db8:cafe::1/64"]}
      ens19.100: {segment: servers, addresses: [192.0.2.129/28, 192.0.2.130/28]}
      ens20: {segment: uplink, addresses: [198.51.100.1/24, "2001:db8:ffff:1::1/64"]}
hosts:
  pc1: {role: client, segment: office, interface: enp0s31f6,
        addresses: [192.0.2.10/25, "2001:db8:cafe::10/64"]}
  mail: {role: mx, segment: servers, addresses: [192.0.2.140/28]}
  remote-mx: {role: remote-mx, segment: uplink, addresses: [198.51.100.25/24]}
  relay: {role: relay, segment: uplink, addresses: [198.51.100.35/24]}
"""


def _site_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "branch.yaml"
    path.write_text(text)
    return path


def _changed(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


def test_a_site_of_ones_own() -> None:
    site = site_file.parse(Path("branch.yaml"), yaml.safe_load(GOOD))
    fw = site.role("fw")
    assert [i.name for i in fw.interfaces] == ["ens18", "ens19.100", "ens20"]
    assert fw.interfaces[1].addresses == ("192.0.2.129/28", "192.0.2.130/28")
    assert site.role("pc1").interfaces[0].name == "enp0s31f6"
    assert site.role("mail").interfaces[0].name == "eth0"  # a host's default name
    assert site.policy_router == "fw" and site.clients == ("pc1",)
    assert site.outside.name == "uplink"
    # routes from the graph: pc1 and mail have their own family's default only
    assert site.role("pc1").routes == (Route("default", "192.0.2.1"),
                                       Route("default", "2001:db8:cafe::1"))
    assert site.role("mail").routes == (Route("default", "192.0.2.129"),)
    assert site.role("relay").routes == (Route("default", "198.51.100.1"),)
    assert fw.routes == ()


def test_own_routes_replace_or_add_to_the_computed_ones(tmp_path: Path) -> None:
    text = _changed("  mail: {role: mx, segment: servers, addresses: [192.0.2.140/28]}\n",
                    "  mail:\n    role: mx\n    segment: servers\n"
                    "    addresses: [192.0.2.140/28]\n    routes:\n"
                    "      - {to: default, via: 192.0.2.130}\n"
                    "      - {to: 203.0.113.0/24, via: 192.0.2.129}\n")
    site = site_file.load(_site_file(tmp_path, text))
    assert site.role("mail").routes == (Route("default", "192.0.2.130"),
                                        Route("203.0.113.0/24", "192.0.2.129"))


ERRORS = {
    # item: (old text, new text, the line named, what the message must say)
    "overlapping prefixes": (
        "prefixes: [192.0.2.128/28]", "prefixes: [192.0.2.64/26]", 6,
        "segment office: prefix 192.0.2.0/25 overlaps 192.0.2.64/26 of servers: give each "
        "segment prefixes of its own"),
    "duplicate prefixes": (
        "prefixes: [192.0.2.128/28]", "prefixes: [192.0.2.128/28, \"2001:db8:cafe::/64\"]", 6,
        "prefix 2001:db8:cafe::/64 is given twice"),
    "prefix with host bits": (
        "prefixes: [192.0.2.128/28]", "prefixes: [192.0.2.129/28]", 7,
        "segment servers: prefix 192.0.2.129/28 has host bits set (write 192.0.2.128/28)"),
    "address outside its segment": (
        "addresses: [192.0.2.140/28]", "addresses: [192.0.2.20/28]", 21,
        "hosts: mail: eth0: address 192.0.2.20/28 is outside segment servers "
        "(192.0.2.128/28): give one inside its prefixes"),
    "address wider than its segment": (
        "addresses: [192.0.2.140/28]", "addresses: [192.0.2.140/24]", 21,
        "address 192.0.2.140/24 is outside segment servers"),
    "address without a prefix length": (
        "addresses: [192.0.2.140/28]", "addresses: [192.0.2.140]", 21,
        "address '192.0.2.140': write it as text with its prefix length"),
    "interface name too long": (
        "ens19.100:", "ens19-servers-vlan:", 16,
        "routers: fw: interface name 'ens19-servers-vlan': give the name as on the box, "
        "1 to 15 letters"),
    "interface name a shell would read": (
        "ens19.100:", "eth0;reboot:", 16, "interface name 'eth0;reboot'"),
    "a host's interface name": (
        "interface: enp0s31f6,", "interface: enp0s31f6 x,", 19, "interface name 'enp0s31f6 x'"),
    "interface duplicated on a node": (
        "ens20:", "ens18:", 17, "duplicate key 'ens18' (first on line 15): give each key once"),
    "duplicate node names": (
        "  mail: {role: mx", "  fw: {role: mx", 21,
        "hosts: fw: a router and a host have this name: give each node its own"),
    "a node named like a segment": (
        "  mail: {role: mx", "  servers: {role: mx", 21,
        "hosts: servers: the name 'servers' is taken (by a segment): choose another"),
    "unknown segment": (
        "mail: {role: mx, segment: servers,", "mail: {role: mx, segment: server,", 21,
        "hosts: mail: eth0: unknown segment 'server' (segments: office, servers, uplink)"),
    "a router with no route to the outside": (
        "      ens20: {segment: uplink, addresses: [198.51.100.1/24, \"2001:db8:ffff:1::1/64\"]}\n",
        "", 12, "router fw has no IPv4 way to the outside segment uplink: connect it through "
                "routers with IPv4 addresses, or give it a default route (routes:)"),
    "no policy router": (
        "    policy: true\n", "", 11,
        "no router carries the policy: add `policy: true` to the router whose rules are checked"),
    "no client": (
        "role: client,", "role: sink,", 18, "no client: add a host with `role: client`"),
    "unknown role": (
        "role: client,", "role: laptop,", 19,
        "hosts: pc1: role 'laptop' is not one of client, mx, remote-mx, sink, relay"),
    "two outside segments": (
        "  servers:\n", "  servers:\n    outside: true\n", 3,
        "segments: mark exactly one as `outside: true` (marked: servers, uplink)"),
    "unknown key": (
        "    policy: true\n", "    policy: true\n    nat: true\n", 14,
        "routers: fw: unknown key 'nat' (known: interfaces, policy, routes)"),
    "two relays": (
        "  relay: {role: relay", "  relay2: {role: relay, segment: uplink, addresses: "
        "[198.51.100.37/24]}\n  relay: {role: relay", 18,
        "hosts: relay2, relay all play relay: a site has one"),
    "teredo server without its second address": (
        "addresses: [198.51.100.25/24]", "addresses: [198.51.100.36/24]", 23,
        "a Teredo server takes two consecutive IPv4 addresses: 198.51.100.36 (after "
        "198.51.100.35) must be free and inside 198.51.100.35/24"),
    "route via an address on none of its segments": (
        "addresses: [192.0.2.140/28]}", "addresses: [192.0.2.140/28],\n"
        "         routes: [{to: default, via: 203.0.113.1}]}", 22,
        "hosts: mail: route #1: via 203.0.113.1 is on none of its segments"),
}

@pytest.mark.parametrize("item", ERRORS)
def test_a_mistake_is_one_line_naming_file_item_and_fix(tmp_path: Path, item: str) -> None:
    old, new, line, said = ERRORS[item]
    path = _site_file(tmp_path, _changed(old, new))
    with pytest.raises(BadInput) as caught:
        site_file.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: "), message
    assert said in message, message


def test_a_host_on_a_segment_no_router_serves(tmp_path: Path) -> None:
    text = _changed("  servers:\n", "  lab:\n    prefixes: [203.0.113.0/24]\n  servers:\n")
    text += "  probe: {role: sink, segment: lab, addresses: [203.0.113.5/24]}\n"
    path = _site_file(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        site_file.load(path)
    assert str(caught.value) == (
        f"{path}:26: host probe has no IPv4 way to the outside segment uplink: connect it "
        "through routers with IPv4 addresses, or give it a default route (routes:)")


@pytest.mark.parametrize("text, said", [
    ("- a list\n", "site file: must be a mapping of name, description, segments, routers"),
    ("name: x\n", "missing key 'segments'"),
    (GOOD.replace("name: branch", "name: Branch Office"), "name 'Branch Office': give a name"),
    (GOOD.replace("    prefixes: [192.0.2.128/28]", "    prefixes: []"),
     "segment servers: prefixes: must be a non-empty list"),
    (GOOD.replace("\"2001:db8:cafe::/64\"]", "2001:db8:cafe::/64x]"),
     "'2001:db8:cafe::/64x' is not a prefix"),
    (GOOD.replace("    policy: true", "    policy: yes please"),
     "routers: fw: policy: must be true or false"),
])
def test_malformed_site_files(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(BadInput) as caught:
        site_file.load(_site_file(tmp_path, text))
    assert said in str(caught.value) and "\n" not in str(caught.value)
