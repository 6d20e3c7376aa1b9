"""What the compliance checks assume about the network: by default, the published addressing."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network


@dataclass(frozen=True)
class Addressing:
    """The networks the checks speak of (defaults: the published addressing)."""

    clients: tuple[str, ...] = ("203.0.113.0/24", "2001:db8:b01a:70da::/64")
    mail_server: tuple[str, ...] = ("203.0.113.25", "2001:db8:b01a:70da::25")
    inside: str = "eth0"

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
