"""The probe agent: runs inside one lab node and sends probes on request.

Started once per source role (`python -m probes.agent`), so that scapy is
imported once, not per probe. It reads one JSON request per line on standard
input and writes one JSON observation per line on standard output.
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from probes.dialogue import Dialogue, run
from probes.guessing import NotAuthorised, guess
from probes.tcp import dns_query, syn
from probes.tunnel import VARIANTS, build

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_ICMP4 = {3: "unreachable", 11: "time-exceeded"}


class Agent:
    def __init__(self) -> None:
        self.listen = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.listen.setblocking(False)
        self.raw = {4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
                    6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)}

    def drain(self) -> None:
        while True:
            try:
                self.listen.recv(65535)
            except BlockingIOError:
                return

    def syn(self, family: int, dst: str, dport: int, sport: int, wait: float) -> dict[str, Any]:
        """Send one SYN and report the first answer to `sport` within `wait` seconds."""
        self.drain()
        packet = syn(family, dst, dport, sport, random.randrange(1 << 32))
        start = time.monotonic()
        self.raw[family].sendto(bytes(packet), (dst, 0))
        return self.await_answer(sport, start, wait)

    def udp(self, family: int, dst: str, sport: int, wait: float) -> dict[str, Any]:
        """Send one DNS query; report the first answer (or ICMP error) within `wait` s."""
        self.drain()
        packet = dns_query(family, dst, sport)
        start = time.monotonic()
        self.raw[family].sendto(bytes(packet), (dst, 0))
        return self.await_answer(sport, start, wait)

    def await_answer(self, sport: int, start: float, wait: float,
                     relay: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.listen], [], [], left)
            if not ready:
                break
            try:
                frame, addr = self.listen.recvfrom(65535)
            except BlockingIOError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            answer = self.match(Ether(frame), sport, relay)
            if answer is not None:
                answer["elapsed_ms"] = round((time.monotonic() - start) * 1000, 2)
                return answer
        return {"reply": "none", "sport": sport,
                "elapsed_ms": round((time.monotonic() - start) * 1000, 2)}

    @staticmethod
    def match(frame: Any, sport: int, relay: str | None = None) -> dict[str, Any] | None:
        """An answer to our source port: a TCP segment to it, or an ICMP error quoting it
        (for a tunnel: an ICMP error about a datagram to the relay)."""
        net = frame.getlayer(IP) or frame.getlayer(IPv6)
        if net is None or frame.haslayer(IPv6ExtHdrFragment):
            return None
        ttl = net.ttl if isinstance(net, IP) else net.hlim
        tcp = net.getlayer(TCP)
        if tcp is not None and not isinstance(tcp, TCPerror) and tcp.dport == sport:
            flags = int(tcp.flags)
            reply = "synack" if flags & 0x12 == 0x12 else "rst" if flags & 0x04 else None
            if reply:
                return {"reply": reply, "sport": sport, "source": net.src,
                        "source_port": tcp.sport, "ttl": ttl}
        udp = net.getlayer(UDP)
        if udp is not None and not isinstance(udp, UDPerror) and udp.dport == sport:
            return {"reply": "udp", "sport": sport, "source": net.src,
                    "source_port": udp.sport, "ttl": ttl}
        quoted = frame.getlayer(TCPerror) or frame.getlayer(UDPerror)
        about_tunnel = relay is not None and frame.haslayer(IPerror) and (
            frame[IPerror].dst == relay)
        if (quoted is not None and quoted.sport == sport) or about_tunnel:
            if frame.haslayer(ICMP):
                icmp = frame[ICMP]
                what = f"{_ICMP4.get(icmp.type, icmp.type)}/code {icmp.code}"
            elif frame.haslayer(ICMPv6DestUnreach):
                what = f"unreachable/code {frame[ICMPv6DestUnreach].code}"
            else:
                what = "error"
            src = net.src
            return {"reply": "icmp", "sport": sport, "source": src, "icmp": what, "ttl": ttl}
        return None

    def tunnel(self, kind: str, variant: str, relay: str, target6: str, sport: int,
               wait: float) -> dict[str, Any]:
        """Send one tunnelled SYN to the relay; report an ICMP error about it, if any."""
        self.drain()
        datagrams = build(kind, VARIANTS[kind][variant], relay, target6, sport,
                          random.randrange(1 << 32))
        start = time.monotonic()
        for datagram in datagrams:
            self.raw[4].sendto(datagram, (relay, 0))
        return self.await_answer(sport, start, wait, relay=relay)

    @staticmethod
    def connect(family: int, dst: str, dport: int, sport: int,
                timeout: float) -> dict[str, Any]:
        """A kernel TCP connection from a chosen source port (e.g. over a tunnel
        interface); the greeting line is read when it opens."""
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        start = time.monotonic()
        with socket.socket(af, socket.SOCK_STREAM) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            conn.bind(("0.0.0.0" if family == 4 else "::", sport))
            conn.settimeout(timeout)
            try:
                conn.connect((dst, dport))
            except ConnectionRefusedError:
                return {"reply": "rst", "sport": sport, "source": dst, "source_port": dport,
                        "elapsed_ms": round((time.monotonic() - start) * 1000, 2)}
            except OSError:
                return {"reply": "none", "sport": sport,
                        "elapsed_ms": round((time.monotonic() - start) * 1000, 2)}
            elapsed = round((time.monotonic() - start) * 1000, 2)
            try:
                banner = conn.recv(512).decode(errors="replace").strip()
            except OSError as exc:
                banner = f"(no banner: {exc})"
            return {"reply": "synack", "sport": sport, "source": dst, "source_port": dport,
                    "banner": banner, "elapsed_ms": elapsed}

    @staticmethod
    def smtp(dst: str, dport: int, dialogue: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Hold an SMTP dialogue with the kernel's TCP (after the SYN showed the way is open)."""
        talk = Dialogue(**{**dialogue, "rcpts": tuple(dialogue.get("rcpts", ()))})
        return run(dst, dport, talk, timeout).as_dict()


def main() -> int:
    agent = Agent()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "syn":
            result = agent.syn(**request)
        elif op == "connect":
            result = agent.connect(**request)
        elif op == "tunnel":
            result = agent.tunnel(**request)
        elif op == "smtp":
            result = agent.smtp(**request)
        elif op == "udp":
            result = agent.udp(**request)
        elif op == "guess":
            try:
                result = guess(**request)
            except NotAuthorised as exc:
                result = {"error": str(exc)}
        else:
            result = {"error": f"unknown op {op}"}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
