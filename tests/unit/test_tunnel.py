"""The tunnel probes' packets: every Teredo and 6in4 variant, read back with scapy."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop

from probes.tunnel import (
    INNER_SOURCE,
    SIX_IN_FOUR_VARIANTS,
    TEREDO_PORT,
    TEREDO_VARIANTS,
    VARIANTS,
    Variant,
    build,
)

RELAY = "198.51.100.35"
TARGET6 = "2001:db8:ffff:1::25"
SPORT, SEQ = 40123, 0x01020304
# crafted packets; a `real` variant is a kernel connection over miredo (lab.services.teredo)
CRAFTED = [v for v in TEREDO_VARIANTS.values() if not v.real]
UNFRAGMENTED = [v for v in CRAFTED if not v.fragment]
CONTROLS = {("teredo", "control-80"), ("teredo", "control-587"), ("tunnel6in4", "control-80")}
# the shapes no fixed-offset rule reaches: teredo-payload-nft probes them, the block
# scenarios (whose u32 rules README says which of them u32 misses too) do not
BEYOND_FIXED = ("auth-id", "auth-origin", "ipv6-extension-16", "ipv6-extensions")


def _teredo(variant: Variant) -> Any:
    (datagram,) = build("teredo", variant, RELAY, TARGET6, SPORT, SEQ)
    return IP(datagram)


def _ipv6_start(payload: bytes) -> int:
    """Where the IPv6 packet starts in a Teredo payload, past authentication and origin."""
    if payload[:2] == b"\x00\x01":
        length = 4 + payload[2] + payload[3] + 8 + 1
        return length + _ipv6_start(payload[length:])
    if payload[:2] == b"\x00\x00":
        return 8
    return 0


def _inner(packet: Any) -> Any:
    payload = bytes(packet[UDP].payload)
    return IPv6(payload[_ipv6_start(payload):])


def test_the_catalogue() -> None:
    assert list(TEREDO_VARIANTS) == ["plain", "plain-465", "tclass", "origin", "auth",
                                     "ipv4-options", "ipv6-extension", "fragment",
                                     "other-port", "tunnel", "control-80", "control-587",
                                     *BEYOND_FIXED]
    assert list(SIX_IN_FOUR_VARIANTS) == ["plain", "plain-465", "control-80"]
    assert [v.name for v in TEREDO_VARIANTS.values() if v.real] == ["tunnel"]
    assert not any(v.real for v in SIX_IN_FOUR_VARIANTS.values())
    assert VARIANTS == {"teredo": TEREDO_VARIANTS, "tunnel6in4": SIX_IN_FOUR_VARIANTS}
    for variants in VARIANTS.values():
        assert all(name == v.name and v.summary for name, v in variants.items())


@pytest.mark.parametrize("kind, name", [(k, n) for k, vs in VARIANTS.items() for n in vs])
def test_is_control_for_the_controls_only(kind: str, name: str) -> None:
    assert VARIANTS[kind][name].is_control == ((kind, name) in CONTROLS)


@pytest.mark.parametrize("variant", UNFRAGMENTED, ids=lambda v: v.name)
def test_teredo_datagram(variant: Variant) -> None:
    packet = _teredo(variant)
    assert packet.version == 4 and packet.proto == 17
    assert packet.dst == RELAY
    assert packet.flags == 0 and packet.frag == 0
    assert packet.len == len(bytes(packet))
    udp = packet[UDP]
    assert udp.dport == (3545 if variant.name == "other-port" else TEREDO_PORT)
    assert udp.dport == variant.udp_port
    assert udp.sport == SPORT
    assert udp.len == len(bytes(udp))
    inner = _inner(packet)
    assert inner.version == 6
    assert (inner.src, inner.dst) == (INNER_SOURCE, TARGET6)
    tcp = inner[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq) == (SPORT, variant.inner_port, SEQ)
    assert tcp.flags == "S"
    assert inner.plen == len(bytes(inner.payload))
    # the IPv6 packet is the whole rest of the datagram: nothing trails it
    payload = bytes(udp.payload)
    assert len(payload) == _ipv6_start(payload) + 40 + inner.plen


@pytest.mark.parametrize("variant", UNFRAGMENTED, ids=lambda v: v.name)
def test_teredo_shape_of_each_variant(variant: Variant) -> None:
    packet = _teredo(variant)
    payload = bytes(packet[UDP].payload)
    inner = _inner(packet)
    if variant.origin and variant.auth:
        # authentication first, then the origin indication (RFC 4380 5.1.1)
        assert payload[:4] == b"\x00\x01\x00\x00" and payload[13:15] == b"\x00\x00"
        assert bytes(b ^ 0xFF for b in payload[17:21]) == IPv4Address(RELAY).packed
        assert _ipv6_start(payload) == 13 + 8
        assert payload[21] >> 4 == 6
    elif variant.origin:
        # RFC 4380 5.1.1: 0x0000, the port and the IPv4 address, each bit inverted
        origin = payload[:8]
        assert origin[:2] == b"\x00\x00"
        assert struct.unpack("!H", origin[2:4])[0] ^ 0xFFFF == TEREDO_PORT
        assert bytes(b ^ 0xFF for b in origin[4:8]) == IPv4Address(RELAY).packed
        assert _ipv6_start(payload) == 8
        assert payload[8] >> 4 == 6
    elif variant.auth and variant.client_id:
        # id-len and au-len say how long the two fields after them are
        ids, aus = len(variant.client_id), len(variant.auth_value)
        assert payload[:4] == b"\x00\x01" + bytes([ids, aus]) and ids and aus
        assert payload[4:4 + ids] == variant.client_id == b"client2"
        assert payload[4 + ids:4 + ids + aus] == variant.auth_value
        assert payload[4 + ids + aus + 8] == 0  # the confirmation byte, after the nonce
        assert _ipv6_start(payload) == 4 + ids + aus + 8 + 1 == 32
        assert payload[32] >> 4 == 6
    elif variant.auth:
        # indicator 0x0001, id-len 0, au-len 0, an 8-byte nonce, confirmation byte 0
        assert payload[:4] == b"\x00\x01\x00\x00"
        assert payload[12] == 0
        assert _ipv6_start(payload) == 4 + 8 + 1
        assert payload[13] >> 4 == 6
    else:
        # the IPv6 header starts right after the UDP header
        assert payload[0] >> 4 == 6
    assert packet.ihl == (6 if variant.ipv4_options else 5)
    if variant.ipv4_options:
        assert len(bytes(packet)) - len(bytes(packet[UDP])) == 24
    assert (inner.tc, inner.fl) == (variant.traffic_class, variant.flow_label)
    if variant.name == "tclass":
        assert (inner.tc, inner.fl) == (0xB8, 0x12345)
        # on the wire: version 6, then the traffic class, then the flow label
        header = struct.unpack("!I", payload[:4])[0]
        assert header == (6 << 28) | (0xB8 << 20) | 0x12345
    if variant.hop_by_hop:
        assert inner.nh == 0  # hop-by-hop, then destination options, then TCP
        assert inner[IPv6ExtHdrHopByHop].nh == 60
        assert len(bytes(inner[IPv6ExtHdrHopByHop])) - len(
            bytes(inner[IPv6ExtHdrDestOpt])) == 8
        assert inner[IPv6ExtHdrDestOpt].nh == 6
        assert len(bytes(inner[IPv6ExtHdrDestOpt])) - len(bytes(inner[TCP])) == 8
    elif variant.extension:
        assert inner.nh == 60
        assert inner.haslayer(IPv6ExtHdrDestOpt)
        assert inner[IPv6ExtHdrDestOpt].nh == 6
        size = len(bytes(inner[IPv6ExtHdrDestOpt])) - len(bytes(inner[TCP]))
        assert size == variant.extension_bytes == (16 if variant.name.endswith("-16") else 8)
        assert inner[IPv6ExtHdrDestOpt].len == size // 8 - 1  # its length byte
    else:
        assert inner.nh == 6
        assert not inner.haslayer(IPv6ExtHdrDestOpt)


def _fragments() -> list[Any]:
    return [IP(f) for f in build("teredo", TEREDO_VARIANTS["fragment"], RELAY, TARGET6,
                                 SPORT, SEQ)]


def test_teredo_fragments_offsets_and_flags() -> None:
    fragments = _fragments()
    assert len(fragments) >= 3
    offset = 0
    for number, f in enumerate(fragments):
        last = number == len(fragments) - 1
        assert f.dst == RELAY and f.proto == 17
        assert f.id == fragments[0].id
        assert f.frag * 8 == offset
        assert bool(f.flags.MF) == (not last)
        assert not f.flags.DF
        size = f.len - f.ihl * 4
        assert size == len(bytes(f)) - f.ihl * 4
        if not last:
            assert size % 8 == 0
        offset += size


def test_teredo_fragments_reassemble_to_the_unfragmented_datagram() -> None:
    whole = _teredo(replace(TEREDO_VARIANTS["fragment"], fragment=False))
    fragments = sorted(_fragments(), key=lambda f: int(f.frag))
    reassembled = b"".join(bytes(f)[f.ihl * 4:] for f in fragments)
    assert reassembled == bytes(whole)[whole.ihl * 4:]
    # and what was split is a plain Teredo SYN to port 25
    datagram = IP(bytes(whole))
    assert datagram[UDP].sport == SPORT and datagram[UDP].dport == TEREDO_PORT
    assert _inner(datagram)[TCP].dport == 25


def test_no_teredo_fragment_holds_the_inner_port_where_a_rule_reads_it() -> None:
    fragments = _fragments()
    first = fragments[0]
    # the first fragment (the only one with a UDP header) ends inside the IPv6 header
    assert len(bytes(first)) - first.ihl * 4 < 8 + 40
    assert first[UDP].sport == SPORT and first[UDP].dport == TEREDO_PORT
    for f in fragments:
        data = bytes(f)
        # a rule reads the inner TCP port past IPv4, UDP (8) and IPv6 (40) headers
        at = f.ihl * 4 + 8 + 40 + 2
        assert len(data) < at + 2 or struct.unpack_from("!H", data, at)[0] != 25
        # and no fragment but the first is taken for a UDP datagram
        if f is not first:
            assert f.frag > 0


@pytest.mark.parametrize("variant", list(SIX_IN_FOUR_VARIANTS.values()), ids=lambda v: v.name)
def test_six_in_four(variant: Variant) -> None:
    (datagram,) = build("tunnel6in4", variant, RELAY, TARGET6, SPORT, SEQ)
    packet = IP(datagram)
    assert packet.proto == 41
    assert packet.dst == RELAY
    assert packet.ihl == 5 and packet.frag == 0 and packet.len == len(datagram)
    # IPv6 directly after the IPv4 header: no UDP, no shim
    assert datagram[20] >> 4 == 6
    inner = IPv6(datagram[20:])
    assert (inner.src, inner.dst, inner.nh) == (INNER_SOURCE, TARGET6, 6)
    tcp = inner[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq) == (SPORT, variant.inner_port, SEQ)
    assert tcp.flags == "S"
    assert not packet.haslayer(UDP)


def test_the_inner_port_follows_the_variant() -> None:
    ports = {v.name: _inner(_teredo(v))[TCP].dport for v in UNFRAGMENTED}
    assert ports["plain-465"] == 465
    assert ports["control-80"] == 80 and ports["control-587"] == 587
    assert {ports[n] for n in ("plain", "tclass", "origin", "auth", "ipv4-options",
                               "ipv6-extension", "other-port", *BEYOND_FIXED)} == {25}
