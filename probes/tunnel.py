"""IPv6-in-IPv4 tunnel probes: Teredo (RFC 4380) and 6in4 (IPv4 protocol 41).

A Teredo probe reads like its packet:

    IP(dst=relay)/UDP(sport=s, dport=3544)/IPv6(dst=remote_mx6)/TCP(dport=25, flags="S")

Its variants are parameters of that one packet: what a firewall rule has to
cope with when it looks inside the UDP payload for port 25.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

TEREDO_PORT = 3544
INNER_SOURCE = "2001:db8:3544::1"  # the tunnelled host's IPv6 address (documentation prefix)


@dataclass(frozen=True)
class Variant:
    """One shape of the tunnelled SYN."""

    name: str
    summary: str
    inner_port: int = 25
    udp_port: int = TEREDO_PORT
    traffic_class: int = 0
    flow_label: int = 0
    origin: bool = False  # Teredo origin indication before the IPv6 packet
    auth: bool = False  # Teredo authentication header before it
    client_id: bytes = b""  # its client identifier and authentication value (RFC 4380
    auth_value: bytes = b""  # 5.1.1: each as long as its length byte says; empty by default)
    ipv4_options: bool = False
    extension: bool = False  # an IPv6 destination options header before TCP
    extension_bytes: int = 8  # its length: a multiple of 8 (its length byte + 1, times 8)
    hop_by_hop: bool = False  # an IPv6 hop-by-hop options header (8 bytes) before that
    fragment: bool = False  # the IPv4 datagram split, the IPv6 header across fragments
    real: bool = False  # not a crafted packet: a kernel TCP connection over miredo

    @property
    def is_control(self) -> bool:
        """A control: no SMTP inside, so a correct rule lets it pass."""
        return self.inner_port not in (25, 465)


TEREDO_VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("plain", "IPv6/TCP SYN to port 25 right after the UDP header"),
    Variant("plain-465", "the same to port 465", inner_port=465),
    Variant("tclass", "non-zero traffic class and flow label", traffic_class=0xB8,
            flow_label=0x12345),
    Variant("origin", "an origin indication header before the IPv6 packet", origin=True),
    Variant("auth", "an authentication header before the IPv6 packet", auth=True),
    Variant("ipv4-options", "IPv4 header options (IHL 6)", ipv4_options=True),
    Variant("ipv6-extension", "a destination options header before TCP", extension=True),
    Variant("fragment", "IPv4 fragments: no fragment holds the inner TCP port", fragment=True),
    Variant("other-port", "a relay on UDP port 3545 instead of 3544", udp_port=3545),
    Variant("tunnel", "a real Teredo tunnel (miredo): TCP to remote-mx's Teredo address",
            real=True),
    Variant("control-80", "control: TCP port 80 inside (web over Teredo)", inner_port=80),
    Variant("control-587", "control: TCP port 587 inside (submission)", inner_port=587),
    # shapes no fixed offset reaches (teredo-payload-nft): the IPv6 header, or TCP,
    # starts at a place only the packet's own length fields tell
    Variant("auth-id", "an authentication header with a client id and an authentication "
            "value", auth=True, client_id=b"client2", auth_value=bytes(range(0xA0, 0xAC))),
    Variant("auth-origin", "an authentication header, then an origin indication",
            auth=True, origin=True),
    Variant("ipv6-extension-16", "a destination options header of 16 bytes before TCP",
            extension=True, extension_bytes=16),
    Variant("ipv6-extensions", "a hop-by-hop and a destination options header before TCP",
            extension=True, hop_by_hop=True),
)}

SIX_IN_FOUR_VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("plain", "IPv6/TCP SYN to port 25 in IPv4 protocol 41"),
    Variant("plain-465", "the same to port 465", inner_port=465),
    Variant("control-80", "control: TCP port 80 inside", inner_port=80),
)}

VARIANTS = {"teredo": TEREDO_VARIANTS, "tunnel6in4": SIX_IN_FOUR_VARIANTS}


def build(kind: str, variant: Variant, relay: str, target6: str, sport: int,
          seq: int) -> list[bytes]:
    """The IPv4 datagrams of one tunnelled SYN (several when fragmented)."""
    if variant.real:
        raise ValueError(f"{variant.name} is a real tunnel, not a crafted packet")
    from scapy.layers.inet import IP, TCP, UDP, IPOption_EOL, IPOption_NOP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, PadN
    from scapy.packet import Raw

    options = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
    # the IPv4 id is the probe's tag too: a fragment without the UDP header is found by it
    outer = IP(dst=relay, id=sport, options=options) if variant.ipv4_options else IP(
        dst=relay, id=sport)
    inner: Any = IPv6(src=INNER_SOURCE, dst=target6, tc=variant.traffic_class,
                      fl=variant.flow_label)
    if variant.hop_by_hop:
        inner = inner / IPv6ExtHdrHopByHop()
    if variant.extension:
        # options: a PadN filling the header past its 2 bytes and the 2 of a PadN
        pad = variant.extension_bytes - 4
        inner = inner / (IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(pad))]) if pad > 2
                         else IPv6ExtHdrDestOpt())
    inner = inner / TCP(sport=sport, dport=variant.inner_port, flags="S", seq=seq)
    if kind == "tunnel6in4":
        packet = outer / inner
        packet.proto = 41
    else:
        # RFC 4380 5.1.1: origin indication (0x0000, obfuscated port and address)
        # and authentication (0x0001, id-len, au-len, client id, authentication
        # value, nonce, confirmation); authentication first (RFC 4380 5.1.1)
        shims = b""
        if variant.auth:
            shims += (b"\x00\x01" + bytes([len(variant.client_id), len(variant.auth_value)])
                      + variant.client_id + variant.auth_value + bytes(range(1, 9)) + b"\x00")
        if variant.origin:
            shims += b"\x00\x00" + (variant.udp_port ^ 0xFFFF).to_bytes(2, "big") + bytes(
                b ^ 0xFF for b in ipaddress.IPv4Address(relay).packed)
        udp = UDP(sport=sport, dport=variant.udp_port)
        packet = outer / udp / Raw(shims) / inner if shims else outer / udp / inner
    datagram = IP(bytes(packet))  # checksums and lengths computed once, as sent
    if variant.fragment:
        # 24 bytes of payload in the first fragment: the UDP header and the first
        # 16 bytes of the IPv6 header; the TCP ports travel in a later fragment
        pieces: list[Any] = fragment(datagram, fragsize=24)  # type: ignore[no-untyped-call]
        return [bytes(f) for f in pieces]
    return [bytes(datagram)]
