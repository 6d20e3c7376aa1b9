"""The probe registry: every probe by name, and what its kind means.

A probe is a name, a port and a kind. The kind says how its first packet is
sent (which agent request, probes.requests), what it expects back (an answer
from the far side, or only the far side's record of its arrival), whether an
SMTP dialogue follows, whether that dialogue sends mail and whether it goes
through the source's own submission server. Tunnel probes add how they carry
IPv6 in IPv4 and their variants (probes.tunnel).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from probes.requests import GuessRequest, Request, SynRequest, TunnelRequest, UdpRequest
from probes.tunnel import SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS, Variant

# How the far side's recorders key a probe's first packet (lab.runtime.lab.FarSide):
# a crafted TCP SYN by its tag (its source port, also where NAT leaves it alone), a
# UDP datagram by the TCP port a Teredo datagram carries or by its tag, a 6in4 packet
# by the source port of the TCP segment inside, a kernel's connection by its port.
FarSideKind = Literal["tcp", "udp", "6in4", "connect"]


@dataclass(frozen=True)
class Kind:
    """How a kind of probe is sent, what it waits for, and what follows its first packet."""

    name: str
    sends: type[Request[Any]]  # the agent request that carries the first packet
    far_side: FarSideKind | None = "tcp"  # None: the far side does not record it
    expects_answer: bool = True  # a SYN asks for an answer; a DNS query need not get one
    arrival_is_enough: bool = False  # nobody there answers: arriving is `allowed`
    waits_out_silence: bool = True  # silence no rule explains: asked again, waiting longer
    dialogue: bool = False  # an SMTP dialogue follows where the path is open
    identifies_only: bool = False  # the dialogue names the server; its refusals decide nothing
    sends_mail: bool = False  # the dialogue hands over a message; its delivery is awaited
    via_submission_server: bool = False  # it connects to the source's own mail server


# the dialogue names the server that answered (and tries MAIL before AUTH)
CONNECT = Kind("connect", SynRequest, dialogue=True, identifies_only=True)
# unauthenticated mail to the target's port, as a spambot sends it
SPAM = Kind("spam", SynRequest, dialogue=True, sends_mail=True)
# authenticated submission to the source's own mail server, for the target's domain
MAIL = Kind("mail", SynRequest, dialogue=True, sends_mail=True, via_submission_server=True)
# the same mail program left on the target's port 25 (the talk's unreconfigured users)
MAIL_25 = Kind("mail-25", SynRequest, dialogue=True, sends_mail=True)
# RCPT TO abuse@ and postmaster@ of the target's domain
RFC2142 = Kind("rfc2142", SynRequest, dialogue=True)
# a SYN to the target's IPv6 address inside IPv4, sent to the relay: the relay
# records it and answers nothing, so one short wait and no retry
TUNNEL = Kind("tunnel", TunnelRequest, far_side=None, arrival_is_enough=True,
              waits_out_silence=False)
# the SYN alone (any service)
SYN = Kind("syn", SynRequest)
# one datagram (a DNS query) that nobody needs to answer
UDP = Kind("udp", UdpRequest, far_side="udp", expects_answer=False, arrival_is_enough=True)
# password guessing on the target's submission port (probes.guessing)
GUESS = Kind("guess", GuessRequest, far_side=None, waits_out_silence=False)

KINDS: dict[str, Kind] = {k.name: k for k in (
    CONNECT, SPAM, MAIL, MAIL_25, RFC2142, TUNNEL, SYN, UDP, GUESS)}


@dataclass(frozen=True)
class Encapsulation:
    """How a tunnel probe carries IPv6 in IPv4 to the relay, and its variants."""

    far_side: FarSideKind  # "udp": Teredo, by its UDP port; "6in4": by the inner TCP port
    variants: Mapping[str, Variant]


TEREDO = Encapsulation("udp", TEREDO_VARIANTS)
SIX_IN_FOUR = Encapsulation("6in4", SIX_IN_FOUR_VARIANTS)


@dataclass(frozen=True)
class Probe:
    """A probe: its name, the port it opens (0: none), its kind and what it does."""

    name: str
    port: int
    kind: Kind
    summary: str
    tunnel: Encapsulation | None = None

    @property
    def far_side(self) -> FarSideKind | None:
        return self.tunnel.far_side if self.tunnel is not None else self.kind.far_side

    @property
    def variants(self) -> Mapping[str, Variant]:
        return self.tunnel.variants if self.tunnel is not None else {}

    @property
    def expects_answer(self) -> bool:
        """False for a datagram nobody has to answer: arriving is enough for `allowed`."""
        return self.kind.expects_answer

    @property
    def sends_mail(self) -> bool:
        return self.kind.sends_mail

    @property
    def via_submission_server(self) -> bool:
        """The connection goes to the source's own mail server, not to the target."""
        return self.kind.via_submission_server


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("smtp", 25, CONNECT, "direct SMTP (TCP 25), MTA to MTA"),
        Probe("smtps", 465, CONNECT, "SMTP over implicit TLS (TCP 465)"),
        Probe("submission", 587, CONNECT, "message submission (TCP 587), STARTTLS"),
        Probe("spam", 25, SPAM, "unauthenticated mail to port 25, as a spambot sends it"),
        Probe("mail", 587, MAIL, "authenticated submission to the own mail server, "
                                 "delivered to the target's domain"),
        Probe("mail-25", 25, MAIL_25, "authenticated mail to the target's port 25 "
                                      "(a mail program never moved to 587)"),
        Probe("rfc2142", 25, RFC2142, "RCPT TO abuse@ and postmaster@ in any letter case"),
        # IPv6 in IPv4 to the relay, carrying a SYN to the target (probes.tunnel)
        Probe("teredo", 3544, TUNNEL, "IPv6/TCP SYN in UDP/IPv4 (Teredo, RFC 4380)", TEREDO),
        Probe("tunnel6in4", 0, TUNNEL, "IPv6/TCP SYN in IPv4 protocol 41 (6in4)", SIX_IN_FOUR),
        # what a banned host must lose too: the web, name service, submission
        Probe("web", 80, SYN, "a SYN to the web port (TCP 80)"),
        Probe("dns", 53, UDP, "a DNS query (UDP 53)"),
        Probe("guessing", 587, GUESS, "password guessing on submission (587, STARTTLS): "
                                      "ten trivial passwords, at most 40 guesses, 20 a "
                                      "second; refuses any target outside the lab's "
                                      "documentation prefixes unless the auditor "
                                      "authorises that address"),
        Probe("guessing-465", 465, GUESS, "the same over implicit TLS (465); lab targets "
                                          "only, as above"),
    )
}
