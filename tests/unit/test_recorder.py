"""The far side's evidence: frames parsed by the recorder, and FarSide reading its files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop

from lab.model.evidence import Sighting
from lab.runtime.lab import FarSide
from lab.services.recorder import parse
from probes.tunnel import INNER_SOURCE, SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS, Variant, build

RELAY = "198.51.100.35"
REMOTE_MX = "198.51.100.25"
TARGET6 = "2001:db8:ffff:1::25"
CLIENT = "203.0.113.10"
SPORT = 40321
MACS = bytes.fromhex("02000000000102000000000a")  # destination, then source


def _ether(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return MACS + ethertype.to_bytes(2, "big") + packet


def _frames(kind: str, variant: Variant, sport: int = SPORT) -> list[bytes]:
    return [_ether(d) for d in build(kind, variant, RELAY, TARGET6, sport, 1)]


def _parsed(frame: bytes) -> dict[str, Any]:
    facts = parse(frame)
    assert facts is not None
    return facts


# --- parse() ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [v for v in TEREDO_VARIANTS.values()
                                     if not v.fragment and not v.real], ids=lambda v: v.name)
def test_teredo_inner_packet(variant: Variant) -> None:
    (frame,) = _frames("teredo", variant)
    facts = _parsed(frame)
    assert facts["family"] == 4 and facts["proto"] == 17
    assert facts["dst"] == RELAY
    assert (facts["sport"], facts["dport"]) == (SPORT, variant.udp_port)
    assert "flags" not in facts and "fragment" not in facts
    assert facts["inner"] == {"family": 6, "src": INNER_SOURCE, "dst": TARGET6, "proto": 6,
                              "sport": SPORT, "dport": variant.inner_port, "flags": "S"}


@pytest.mark.parametrize("variant", list(SIX_IN_FOUR_VARIANTS.values()), ids=lambda v: v.name)
def test_six_in_four_inner_packet(variant: Variant) -> None:
    (frame,) = _frames("tunnel6in4", variant)
    facts = _parsed(frame)
    assert facts["family"] == 4 and facts["proto"] == 41
    assert facts["dst"] == RELAY
    # protocol 41 has no ports of its own: they are inside
    assert "sport" not in facts and "dport" not in facts
    assert facts["inner"] == {"family": 6, "src": INNER_SOURCE, "dst": TARGET6, "proto": 6,
                              "sport": SPORT, "dport": variant.inner_port, "flags": "S"}


def test_teredo_fragments() -> None:
    first, *later = [_parsed(f) for f in _frames("teredo", TEREDO_VARIANTS["fragment"])]
    assert later
    # the first fragment has the UDP header, but not the whole IPv6 header: no inner TCP
    assert (first["proto"], first["sport"], first["dport"]) == (17, SPORT, 3544)
    assert "inner" not in first and "fragment" not in first
    for facts in later:
        assert facts["fragment"] is True
        assert facts["dst"] == RELAY and facts["proto"] == 17
        assert not {"sport", "dport", "inner"} & set(facts)


def test_teredo_with_a_client_id_and_an_origin_after_authentication() -> None:
    # RFC 4380: authentication (with id-len 3, au-len 2) and then origin indication
    inner = bytes(IPv6(src=INNER_SOURCE, dst=TARGET6) / TCP(sport=SPORT, dport=465, flags="S"))
    shims = (b"\x00\x01\x03\x02" + b"abc" + b"xy" + bytes(8) + b"\x00"
             + b"\x00\x00\xf2\x27" + bytes([57, 204, 155, 220]))
    datagram = bytes(IP(src=CLIENT, dst=RELAY) / UDP(sport=SPORT, dport=3544) / (shims + inner))
    facts = _parsed(_ether(datagram))
    assert facts["inner"]["dport"] == 465
    assert facts["inner"]["dst"] == TARGET6


def test_udp_that_is_not_teredo_has_no_inner() -> None:
    dns = bytes(IP(src=CLIENT, dst=RELAY) / UDP(sport=SPORT, dport=53) / (b"\x12\x34" + bytes(40)))
    facts = _parsed(_ether(dns))
    assert (facts["proto"], facts["sport"], facts["dport"]) == (17, SPORT, 53)
    assert "inner" not in facts


def test_plain_tcp_syn_over_ipv4_has_no_inner() -> None:
    syn = bytes(IP(src=CLIENT, dst=REMOTE_MX) / TCP(sport=SPORT, dport=25, flags="S"))
    assert _parsed(_ether(syn)) == {"family": 4, "proto": 6, "src": CLIENT, "dst": REMOTE_MX,
                                    "sport": SPORT, "dport": 25, "flags": "S"}


def test_ipv6_syn_past_a_hop_by_hop_header() -> None:
    packet = IPv6(src="2001:db8:b01a:70da::10", dst=TARGET6) / IPv6ExtHdrHopByHop() / TCP(
        sport=SPORT, dport=25, flags="S")
    facts = _parsed(_ether(bytes(packet), 0x86DD))
    assert facts == {"family": 6, "src": "2001:db8:b01a:70da::10", "dst": TARGET6, "proto": 6,
                     "sport": SPORT, "dport": 25, "flags": "S"}


def test_ipv6_in_ipv6_is_not_taken_for_a_tunnel() -> None:
    # only IPv4 carries the tunnels the lab looks for
    packet = IPv6(dst=TARGET6, nh=41) / IPv6(src=INNER_SOURCE, dst=TARGET6) / TCP(dport=25)
    facts = _parsed(_ether(bytes(packet), 0x86DD))
    assert facts["proto"] == 41 and "inner" not in facts


def test_a_bare_ipv6_packet_from_a_tunnel_interface() -> None:
    # a Teredo interface hands over IP packets without an Ethernet header
    packet = bytes(IPv6(src=INNER_SOURCE, dst=TARGET6) / TCP(sport=SPORT, dport=25, flags="S"))
    assert parse(packet, ethernet=False) == {"family": 6, "src": INNER_SOURCE, "dst": TARGET6,
                                             "proto": 6, "sport": SPORT, "dport": 25,
                                             "flags": "S"}
    assert parse(b"", ethernet=False) is None


def test_non_ip_frames() -> None:
    arp = _ether(bytes.fromhex("0001080006040001") + bytes(20), 0x0806)
    assert parse(arp) is None
    # an IPv6 ethertype with something else inside
    assert parse(_ether(bytes(IP(dst=RELAY) / TCP()), 0x86DD)) is None


# --- FarSide ---------------------------------------------------------------------------

def _line(facts: dict[str, Any]) -> str:
    return json.dumps({**facts, "t": 1.0, "if": 2}) + "\n"


def _syn(sport: int, dst: str = REMOTE_MX, dport: int = 25, flags: str = "S") -> dict[str, Any]:
    return {"family": 4, "proto": 6, "src": CLIENT, "dst": dst, "sport": sport, "dport": dport,
            "flags": flags}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    found = {role: tmp_path / f"{role}.packets.jsonl" for role in ("remote-mx", "sink", "relay")}
    for path in found.values():
        path.write_text(json.dumps({"ready": True}) + "\n")
    return found


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_a_syn_is_a_sighting_a_syn_ack_is_not(files: dict[str, Path]) -> None:
    _append(files["remote-mx"], _line(_syn(41000)) + _line(_syn(41001, flags="SA"))
            + _line(_syn(41002, flags="A")))
    far = FarSide(files)
    assert far.sightings(41000, expect=False) == [Sighting("remote-mx", REMOTE_MX, 25)]
    assert far.sightings(41001, expect=False) == []
    assert far.sightings(41002, expect=False) == []


def test_a_retransmission_is_reported_once_per_role(files: dict[str, Path]) -> None:
    _append(files["remote-mx"], _line(_syn(41000)) * 3)
    _append(files["sink"], _line(_syn(41000, "198.51.100.80", 80)))
    _append(files["remote-mx"], _line(_syn(41000, dport=2525)))
    found = FarSide(files).sightings(41000, expect=False)
    # the first record of each role, in the order the files are read
    assert found == [Sighting("remote-mx", REMOTE_MX, 25), Sighting("sink", "198.51.100.80", 80)]


def test_teredo_is_found_by_its_udp_port(files: dict[str, Path]) -> None:
    for frame in _frames("teredo", TEREDO_VARIANTS["plain"], 42000):
        _append(files["relay"], _line(_parsed(frame)))
    far = FarSide(files)
    expected = Sighting("relay", RELAY, 3544, f"TCP to {TARGET6} port 25")
    assert far.sightings(42000, expect=False, kind="udp") == [expected]
    # a TCP probe with the same number is another probe
    assert far.sightings(42000, expect=False, kind="tcp") == []
    assert far.sightings(42000, expect=False, kind="6in4") == []


def test_teredo_fragments_are_one_sighting_without_inner(files: dict[str, Path]) -> None:
    for frame in _frames("teredo", TEREDO_VARIANTS["fragment"], 42001):
        _append(files["relay"], _line(_parsed(frame)))
    assert FarSide(files).sightings(42001, expect=False, kind="udp") == [
        Sighting("relay", RELAY, 3544, "")]


def test_six_in_four_is_found_by_the_inner_tcp_port(files: dict[str, Path]) -> None:
    for frame in _frames("tunnel6in4", SIX_IN_FOUR_VARIANTS["plain-465"], 43000):
        _append(files["relay"], _line(_parsed(frame)))
    far = FarSide(files)
    assert far.sightings(43000, expect=False, kind="6in4") == [
        Sighting("relay", RELAY, 0, f"TCP to {TARGET6} port 465")]
    assert far.sightings(43000, expect=False, kind="udp") == []
    assert far.sightings(43000, expect=False) == []


def test_a_half_written_line_is_read_once_it_is_complete(files: dict[str, Path]) -> None:
    (frame,) = _frames("teredo", TEREDO_VARIANTS["control-80"], 44000)
    line = _line(_parsed(frame))
    _append(files["relay"], _line(_syn(44001, RELAY, 22)) + line[:25])
    far = FarSide(files)
    assert far.sightings(44000, expect=False, kind="udp") == []
    assert far.sightings(44001, expect=False) == [Sighting("relay", RELAY, 22)]
    _append(files["relay"], line[25:-1])   # still no newline
    assert far.sightings(44000, expect=False, kind="udp") == []
    _append(files["relay"], "\n")
    assert far.sightings(44000, expect=False, kind="udp") == [
        Sighting("relay", RELAY, 3544, f"TCP to {TARGET6} port 80")]
    # lines already read are not read again
    assert far.sightings(44001, expect=False) == [Sighting("relay", RELAY, 22)]
    assert len(far.seen["tcp", 44001]) == 1


def test_expecting_waits_for_the_recorders(files: dict[str, Path]) -> None:
    far = FarSide(files)
    started = time.monotonic()
    assert far.sightings(45000, expect=True, wait=0.05) == []
    assert time.monotonic() - started >= 0.05
    started = time.monotonic()
    assert far.sightings(45000, expect=False, wait=5.0) == []
    assert time.monotonic() - started < 1.0
