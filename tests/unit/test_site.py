"""A site's nodes say what they can do; the engine asks for a capability, not a name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import topologies
from lab.model import site_file
from lab.model.site import MTA, POLICY, ROUTER, SUBMISSION, TEREDO_SERVER, TUNNEL_END
from lab.services import mail


@pytest.mark.parametrize("name, policy", [("screened-host", "gw"), ("dmz", "inner")])
def test_builtin_sites_capabilities(name: str, policy: str) -> None:
    site = topologies.load(name)
    assert site.one(TEREDO_SERVER).name == site.one(TUNNEL_END).name == "relay"
    assert site.submission_server.name == "mx"
    assert site.role("mx").capabilities == {SUBMISSION, MTA}
    foreign = site.foreign_mta
    assert foreign is not None and foreign.name == "remote-mx"
    assert site.policy_routers == (policy,) and site.policy_router == policy
    assert site.role(policy).capabilities == {ROUTER, POLICY}
    assert site.clients == ("client1", "client2")
    assert site.role("sink").kind == "outside" and not site.role("sink").capabilities & {
        MTA, TEREDO_SERVER, TUNNEL_END}


RENAMED = """\
name: renamed
segments:
  inside: {prefixes: [192.0.2.0/24, "2001:db8:1::/64"]}
  world: {prefixes: [198.51.100.0/24, "2001:db8:2::/64"], outside: true}
routers:
  fw:
    policy: true
    interfaces:
      lan0: {segment: inside, addresses: [192.0.2.1/24, "2001:db8:1::1/64"]}
      wan0: {segment: world, addresses: [198.51.100.1/24, "2001:db8:2::1/64"]}
hosts:
  desk: {role: client, segment: inside, addresses: [192.0.2.10/24]}
  hub: {role: mx, segment: inside, addresses: [192.0.2.25/24]}
  elsewhere: {role: remote-mx, segment: world,
              addresses: [198.51.100.25/24, "2001:db8:2::25/64"]}
  jungle: {role: relay, segment: world, addresses: [198.51.100.35/24]}
"""


def test_nodes_are_found_by_what_they_do_whatever_their_names() -> None:
    site = site_file.parse(Path("renamed.yaml"), yaml.safe_load(RENAMED))
    assert site.one(TEREDO_SERVER).name == "jungle"
    assert site.submission_server.name == "hub"
    servers = mail.servers_for(site)
    assert list(servers) == ["elsewhere", "hub"]
    assert servers["elsewhere"].domains == (mail.FOREIGN, mail.FOREIGN_V6)
    assert not servers["elsewhere"].submission and servers["hub"].submission
    assert dict(servers["hub"].routes) == {mail.FOREIGN: "[198.51.100.25]",
                                           mail.FOREIGN_V6: "[ipv6:2001:db8:2::25]"}
    with pytest.raises(LookupError, match="no node"):
        site.one("no-such-capability")
    with pytest.raises(LookupError, match="2 node"):
        site.one(MTA)
