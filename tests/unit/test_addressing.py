"""The audit's default addressing is the published network's, read from the built-in site."""

from __future__ import annotations

import topologies
from lab.compliance.addressing import Addressing


def test_defaults_are_the_screened_host_sites_published_addressing() -> None:
    assert Addressing() == Addressing(("203.0.113.0/24", "2001:db8:b01a:70da::/64"),
                                      ("203.0.113.25", "2001:db8:b01a:70da::25"), "eth0")
    assert Addressing() == Addressing.of(topologies.load("screened-host"))


def test_a_sites_addressing_follows_its_mail_server_and_client_segments() -> None:
    dmz = Addressing.of(topologies.load("dmz"))
    assert dmz.clients == ("203.0.113.0/24", "2001:db8:b01a:70da::/64")
    assert dmz.mail_server == ("192.0.2.25", "2001:db8:b01a:d32::25")
    assert dmz.inside == "eth0"  # inner's interface on the clients' LAN
