"""TCP connection probes: a SYN to a mail port, then the server's banner.

    IP(dst=remote_mx)/TCP(sport=s, dport=25, flags="S")

The sender's observation is the first answer to its source port: SYN-ACK, RST
or an ICMP error, from which address. Where a SYN-ACK comes from the address
aimed at, a kernel connection then reads the banner, which names the server
that really answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TcpProbe:
    """A probe that opens a TCP connection to one well-known port."""

    name: str
    port: int
    summary: str


PROBES: dict[str, TcpProbe] = {
    p.name: p
    for p in (
        TcpProbe("smtp", 25, "direct SMTP (TCP 25), MTA to MTA"),
        TcpProbe("smtps", 465, "SMTP over implicit TLS (TCP 465)"),
        TcpProbe("submission", 587, "message submission (TCP 587)"),
    )
}


def syn(family: int, dst: str, dport: int, sport: int, seq: int) -> Any:
    """The probe's packet (scapy imported here: only the agent inside a node needs it)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    network = IP(dst=dst) if family == 4 else IPv6(dst=dst)
    return network / TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240,
                         options=[("MSS", 1460)])
