"""Far-side recorder: one JSON line per IP packet that arrives at this node.

Runs inside a lab node (`python -m lab.recorder FILE`). It is the far side's
evidence: a probe's SYN that reached this node is found here by its source port.
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
_TCP, _UDP, _IPV6_EXT = 6, 17, frozenset({0, 43, 60})
_FLAGS = "FSRPAUEC"


def parse(frame: bytes) -> dict[str, Any] | None:
    """The IP facts of an Ethernet frame, or None if it is not IP."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    data = frame[14:]
    if ethertype == 0x0800 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        frag = struct.unpack_from("!H", data, 6)[0]
        facts: dict[str, Any] = {
            "family": 4, "proto": proto,
            "src": str(ipaddress.IPv4Address(data[12:16])),
            "dst": str(ipaddress.IPv4Address(data[16:20])),
        }
        if frag & 0x1FFF:
            facts["fragment"] = True
            return facts
        return _transport(facts, proto, data[ihl:])
    if ethertype == 0x86DD and len(data) >= 40:
        proto, offset = data[6], 40
        facts = {"family": 6,
                 "src": str(ipaddress.IPv6Address(data[8:24])),
                 "dst": str(ipaddress.IPv6Address(data[24:40]))}
        while proto in _IPV6_EXT and len(data) >= offset + 8:
            proto, offset = data[offset], offset + (data[offset + 1] + 1) * 8
        facts["proto"] = proto
        return _transport(facts, proto, data[offset:])
    return None


def _transport(facts: dict[str, Any], proto: int, data: bytes) -> dict[str, Any]:
    if proto in (_TCP, _UDP) and len(data) >= 4:
        facts["sport"], facts["dport"] = struct.unpack_from("!HH", data)
        if proto == _TCP and len(data) >= 14:
            facts["flags"] = "".join(f for i, f in enumerate(_FLAGS) if data[13] & (1 << i))
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
            facts = parse(frame)
            if facts is not None:
                facts["t"] = round(time.time(), 6)
                facts["if"] = addr[0]
                out.write(json.dumps(facts) + "\n")


if __name__ == "__main__":
    sys.exit(main())
