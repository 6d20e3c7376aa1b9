"""Far-side recorder: one JSON line per IP packet that arrives at this node.

Runs inside a lab node (`python -m lab.services.recorder FILE`). It is the far side's
evidence: a probe's SYN that reached this node is found here by its source port, or, as
NAT may rewrite that port, by its tag: the number the probe writes where NAT leaves it
alone (probes.tcp: a SYN's sequence number, a DNS query's id, the IPv4 id of a fragment).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
ARPHRD_NONE = 0xFFFE  # tun devices (Teredo): bare IP packets, no Ethernet header
_TCP, _UDP, _SIX_IN_FOUR, _IPV6_EXT = 6, 17, 41, frozenset({0, 43, 60})
_FLAGS = "FSRPAUEC"
_DNS = 53
_TAG_SOURCES = ("seq", "id", "dns_id")  # facts the tag is taken from, not kept as facts


def parse(frame: bytes, ethernet: bool = True, tagged: bool = False) -> dict[str, Any] | None:
    """The IP facts of an Ethernet frame (or of a bare IP packet from a tunnel
    interface such as Teredo's), or None if it is not IP; `tagged`: with its `tag`."""
    facts = _parse(frame, ethernet)
    if facts is None:
        return None
    tag = _tag(facts)
    for found in (facts, facts.get("inner") or {}):
        for key in _TAG_SOURCES:
            found.pop(key, None)
    return {**facts, "tag": tag} if tagged else facts


def _tag(facts: dict[str, Any]) -> int | None:
    """The probe's tag, if the packet carries one: NAT rewrites source addresses and
    ports, never these (for Teredo: the sequence number of the SYN inside)."""
    if facts.get("proto") == _TCP and "S" in facts.get("flags", ""):
        return facts.get("seq")
    if facts.get("proto") == _UDP:
        inner = facts.get("inner") or {}
        for found in (inner.get("seq"), facts.get("id"), facts.get("dns_id")):
            if found is not None:
                return int(found)
    return None


def _parse(frame: bytes, ethernet: bool) -> dict[str, Any] | None:
    if ethernet:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        data = frame[14:]
    else:
        data = frame
        ethertype = {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4 if frame else 0, 0)
    if ethertype == 0x0800 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        frag = struct.unpack_from("!H", data, 6)[0]
        facts: dict[str, Any] = {
            "family": 4, "proto": proto,
            "src": str(ipaddress.IPv4Address(data[12:16])),
            "dst": str(ipaddress.IPv4Address(data[16:20])),
        }
        if frag & 0x3FFF:  # more fragments, or an offset: a piece of a datagram
            facts["id"] = struct.unpack_from("!H", data, 4)[0]
        if frag & 0x1FFF:
            facts["fragment"] = True
            return facts
        return _transport(facts, proto, data[ihl:])
    if ethertype == 0x86DD:
        return _ipv6(data)
    return None


def _ipv6(data: bytes) -> dict[str, Any] | None:
    if len(data) < 40 or data[0] >> 4 != 6:
        return None
    proto, offset = data[6], 40
    facts: dict[str, Any] = {"family": 6,
                             "src": str(ipaddress.IPv6Address(data[8:24])),
                             "dst": str(ipaddress.IPv6Address(data[24:40]))}
    while proto in _IPV6_EXT and len(data) >= offset + 8:
        proto, offset = data[offset], offset + (data[offset + 1] + 1) * 8
    facts["proto"] = proto
    return _transport(facts, proto, data[offset:], tunnels=False)


def _teredo(payload: bytes) -> dict[str, Any] | None:
    """The IPv6 packet inside a Teredo datagram, past its optional headers (RFC 4380)."""
    if payload[:2] == b"\x00\x01" and len(payload) >= 4:  # authentication
        payload = payload[4 + payload[2] + payload[3] + 9:]
    if payload[:2] == b"\x00\x00":  # origin indication
        payload = payload[8:]
    return _ipv6(payload)


def _transport(facts: dict[str, Any], proto: int, data: bytes,
               tunnels: bool = True) -> dict[str, Any]:
    if proto in (_TCP, _UDP) and len(data) >= 4:
        facts["sport"], facts["dport"] = struct.unpack_from("!HH", data)
        if proto == _TCP and len(data) >= 14:
            facts["flags"] = "".join(f for i, f in enumerate(_FLAGS) if data[13] & (1 << i))
            facts["seq"] = struct.unpack_from("!I", data, 4)[0]
        if proto == _UDP and facts["dport"] == _DNS and len(data) >= 10:
            facts["dns_id"] = struct.unpack_from("!H", data, 8)[0]
    # IPv6 carried in IPv4 (6in4, or Teredo in UDP): what is inside, as evidence
    if tunnels and proto == _SIX_IN_FOUR:
        inner = _ipv6(data)
    elif tunnels and proto == _UDP:
        inner = _teredo(data[8:])
    else:
        inner = None
    if inner is not None:
        facts["inner"] = inner
    return facts


def main() -> int:
    # line-buffered: the lab reads the file while the recorder writes it
    with open(sys.argv[1], "a", buffering=1) as out, \
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        out.write(json.dumps({"ready": True}) + "\n")
        while True:  # ends when the lab stops the recorder
            frame, addr = sock.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            facts = parse(frame, ethernet=addr[3] != ARPHRD_NONE, tagged=True)
            if facts is not None:
                facts["t"] = round(time.time(), 6)
                facts["if"] = addr[0]
                out.write(json.dumps(facts) + "\n")


if __name__ == "__main__":
    sys.exit(main())
