"""The probes: what a host emits, and what each one's evidence means.

Every probe starts with one SYN, built with scapy, to its port on the host it
connects to:

    IP(dst=remote_mx)/TCP(sport=s, dport=25, flags="S")

The first answer to its source port (SYN-ACK, RST or an ICMP error, from which
address) is the sender's observation. Where the way is open, an SMTP dialogue
follows over the kernel's TCP (probes.dialogue): its banner, EHLO name and TLS
certificate name the server that really answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Probe:
    """A probe: its name, the TCP port it opens, and what it does once connected.

    kind: "connect" — the dialogue only identifies the server (and tries MAIL
    before AUTH); "spam" — unauthenticated mail to the target's port, as a
    spambot sends it; "mail" — authenticated submission to the source's own
    mail server (587), for the target's domain; "mail-25" — the same mail
    program left on port 25 of the target (the talk's unreconfigured users);
    "rfc2142" — RCPT TO abuse@ and postmaster@ of the target's domain;
    "tunnel" — a SYN to the target's IPv6 address inside IPv4, sent to the
    `relay` (variants in probes.tunnel); "syn" — the SYN alone (any service);
    "udp" — one datagram (a DNS query) that nobody needs to answer; "guess" —
    password guessing on the target's submission port (probes.guessing).
    """

    name: str
    port: int
    kind: str
    summary: str

    @property
    def expects_answer(self) -> bool:
        """False for a datagram nobody has to answer: arriving is enough for `allowed`."""
        return self.kind != "udp"

    @property
    def sends_mail(self) -> bool:
        return self.kind in ("spam", "mail", "mail-25")

    @property
    def via_submission_server(self) -> bool:
        """The connection goes to the source's own mail server, not to the target."""
        return self.kind == "mail"


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("smtp", 25, "connect", "direct SMTP (TCP 25), MTA to MTA"),
        Probe("smtps", 465, "connect", "SMTP over implicit TLS (TCP 465)"),
        Probe("submission", 587, "connect", "message submission (TCP 587), STARTTLS"),
        Probe("spam", 25, "spam", "unauthenticated mail to port 25, as a spambot sends it"),
        Probe("mail", 587, "mail", "authenticated submission to the own mail server, "
                                   "delivered to the target's domain"),
        Probe("mail-25", 25, "mail-25", "authenticated mail to the target's port 25 "
                                         "(a mail program never moved to 587)"),
        Probe("rfc2142", 25, "rfc2142", "RCPT TO abuse@ and postmaster@ in any letter case"),
        # IPv6 in IPv4 to the relay, carrying a SYN to the target (probes.tunnel)
        Probe("teredo", 3544, "tunnel", "IPv6/TCP SYN in UDP/IPv4 (Teredo, RFC 4380)"),
        Probe("tunnel6in4", 0, "tunnel", "IPv6/TCP SYN in IPv4 protocol 41 (6in4)"),
        # what a banned host must lose too: the web, name service, submission
        Probe("web", 80, "syn", "a SYN to the web port (TCP 80)"),
        Probe("dns", 53, "udp", "a DNS query (UDP 53)"),
        Probe("guessing", 587, "guess", "password guessing on submission (587, STARTTLS): "
                                        "ten trivial passwords, at most 40 guesses, 20 a "
                                        "second; refuses any target outside the lab's "
                                        "documentation prefixes unless the auditor "
                                        "authorises that address"),
        Probe("guessing-465", 465, "guess", "the same over implicit TLS (465); lab targets "
                                            "only, as above"),
    )
}


def syn(family: int, dst: str, dport: int, sport: int, seq: int) -> Any:
    """The probe's packet (scapy imported here: only the agent inside a node needs it)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    network = IP(dst=dst) if family == 4 else IPv6(dst=dst)
    return network / TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240,
                         options=[("MSS", 1460)])


def dns_query(family: int, dst: str, sport: int) -> Any:
    """A DNS query for the lab's domain, from `sport` (scapy imported here, as above)."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    network = IP(dst=dst) if family == 4 else IPv6(dst=dst)
    return network / UDP(sport=sport, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.test"))
