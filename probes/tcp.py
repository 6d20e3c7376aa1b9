"""The probes' own packets, built with scapy: the SYN and the DNS query.

A probe that connects (probes.registry) starts with one SYN to its port on
the host it connects to:

    IP(dst=remote_mx)/TCP(sport=s, dport=25, flags="S")

The first answer to its source port (SYN-ACK, RST or an ICMP error, from which
address) is the sender's observation. NAT on the way may rewrite that port, so
each packet also carries it where NAT leaves it alone, as its tag: a SYN as its
sequence number, a DNS query as its id (the far side's recorders find it by it).
"""

from __future__ import annotations

from typing import Any


def syn(family: int, dst: str, dport: int, sport: int, seq: int | None = None) -> Any:
    """The probe's packet (scapy imported here: only the agent inside a node needs it)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    network = IP(dst=dst) if family == 4 else IPv6(dst=dst)
    return network / TCP(sport=sport, dport=dport, flags="S", seq=sport if seq is None else seq,
                         window=64240,
                         options=[("MSS", 1460)])


def dns_query(family: int, dst: str, sport: int) -> Any:
    """A DNS query for the lab's domain, from `sport` (scapy imported here, as above)."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    network = IP(dst=dst) if family == 4 else IPv6(dst=dst)
    return network / UDP(sport=sport, dport=53) / DNS(id=sport, rd=1,
                                                      qd=DNSQR(qname="example.test"))
