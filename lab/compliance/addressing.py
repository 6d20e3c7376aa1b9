"""What the compliance checks assume about the network: by default, the published addressing.

The defaults are read from the built-in screened-host site (the talk's network):
its clients' prefixes, its submission server's addresses and the policy router's
interface towards the clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from ipaddress import ip_address, ip_network

import topologies
from lab.model.site import Site

PUBLISHED_SITE = "screened-host"


@cache
def published() -> Addressing:
    """The addressing of the talk's network (the built-in screened-host site)."""
    return Addressing.of(topologies.load(PUBLISHED_SITE))


@dataclass(frozen=True)
class Addressing:
    """The networks the checks speak of (defaults: the published addressing)."""

    clients: tuple[str, ...] = field(default_factory=lambda: published().clients)
    mail_server: tuple[str, ...] = field(default_factory=lambda: published().mail_server)
    inside: str = field(default_factory=lambda: published().inside)

    @classmethod
    def of(cls, site: Site) -> Addressing:
        """A site's addressing: its clients' segments, its mail server, the way in."""
        segments = list(dict.fromkeys(s for c in site.clients for s in site.role(c).segments))
        router = site.role(site.policy_router)
        inside = next((i.name for i in router.interfaces if i.segment in segments), "")
        return cls(tuple(p for s in segments for p in site.segment(s).prefixes),
                   site.submission_server.addresses(), inside)

    def client_networks(self, family: int) -> list[str]:
        return [n for n in self.clients if ip_network(n, strict=False).version == family]

    def mail_server_address(self, family: int) -> str | None:
        return next((a for a in self.mail_server if ip_address(a).version == family), None)

    def a_client(self, network: str) -> str:
        """A client address of the network: not the gateway's (.1), not the mail server's."""
        net = ip_network(network, strict=False)
        taken = {ip_address(a) for a in self.mail_server}
        start = 10 if net.num_addresses > 16 else 1
        for offset in range(start, min(net.num_addresses, start + 64)):
            candidate = net.network_address + offset
            if candidate not in taken:
                return str(candidate)
        return str(net.network_address)
