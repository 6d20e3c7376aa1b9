"""The probe agent: runs inside one lab node and sends probes on request.

Started once per source role (`python -m probes.agent`), so that scapy is
imported once, not per probe. It reads one request per line on standard input
and writes one answer per line on standard output (probes.requests: the same
typed requests and answers the lab sends and reads).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from dataclasses import replace
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from probes.dialogue import Transcript, prepare, run
from probes.guessing import NotAuthorised, guess
from probes.requests import (
    STOP,
    AgentError,
    ConnectRequest,
    GuessAnswer,
    GuessRequest,
    PacketAnswer,
    Request,
    SmtpRequest,
    SynRequest,
    TunnelRequest,
    UdpRequest,
    failure_line,
    parse_request,
)
from probes.tcp import dns_query, syn
from probes.tunnel import VARIANTS, build

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_ICMP4 = {3: "unreachable", 11: "time-exceeded"}


class Lines:
    """Standard input's lines, read unbuffered: select() on it then tells the truth."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.buffer = b""
        self.closed = False

    def stopped(self) -> bool:
        """Read what came; True (and it is taken) if the next line is the lab's STOP."""
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        self.closed = not chunk
        if self.buffer.startswith(STOP.encode() + b"\n"):
            self.buffer = self.buffer[len(STOP) + 1:]
            return True
        return False

    def next(self) -> str | None:
        """The next line (None at the end)."""
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


class Agent:
    def __init__(self, lines: Lines | None = None) -> None:
        self.lines = lines
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

    def syn(self, request: SynRequest) -> PacketAnswer:
        """Send one SYN and report the first answer to its source port within its wait."""
        self.drain()
        packet = syn(request.family, request.dst, request.dport, request.sport)
        start = time.monotonic()
        self.raw[request.family].sendto(bytes(packet), (request.dst, 0))
        return self.await_answer(request.sport, start, request.wait)

    def udp(self, request: UdpRequest) -> PacketAnswer:
        """Send one DNS query; report the first answer (or ICMP error) within its wait."""
        self.drain()
        packet = dns_query(request.family, request.dst, request.sport)
        start = time.monotonic()
        self.raw[request.family].sendto(bytes(packet), (request.dst, 0))
        return self.await_answer(request.sport, start, request.wait)

    def await_answer(self, sport: int, start: float, wait: float,
                     relay: str | None = None) -> PacketAnswer:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            lines = self.lines if self.lines is not None and not self.lines.closed else None
            waited: list[int] = [self.listen.fileno(), *([lines.fd] if lines else [])]
            ready, _, _ = select.select(waited, [], [], left)
            if not ready:
                break
            if lines is not None and lines.fd in ready:
                if lines.stopped():  # the lab saw the kernel drop it: no answer can come
                    break
                continue
            try:
                frame, addr = self.listen.recvfrom(65535)
            except BlockingIOError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            answer = self.match(Ether(frame), sport, relay)
            if answer is not None:
                return replace(answer, elapsed_ms=_since(start))
        return PacketAnswer("none", sport, _since(start))

    @staticmethod
    def match(frame: Any, sport: int, relay: str | None = None) -> PacketAnswer | None:
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
                return PacketAnswer(reply, sport, source=net.src, source_port=tcp.sport,
                                    ttl=ttl)
        udp = net.getlayer(UDP)
        if udp is not None and not isinstance(udp, UDPerror) and udp.dport == sport:
            return PacketAnswer("udp", sport, source=net.src, source_port=udp.sport, ttl=ttl)
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
            return PacketAnswer("icmp", sport, source=net.src, icmp=what, ttl=ttl)
        return None

    def tunnel(self, request: TunnelRequest) -> PacketAnswer:
        """Send one tunnelled SYN to the relay; report an ICMP error about it, if any."""
        self.drain()
        datagrams = build(request.kind, VARIANTS[request.kind][request.variant], request.relay,
                          request.target6, request.sport, request.sport)
        start = time.monotonic()
        for datagram in datagrams:
            self.raw[4].sendto(datagram, (request.relay, 0))
        return self.await_answer(request.sport, start, request.wait, relay=request.relay)

    @staticmethod
    def connect(request: ConnectRequest) -> PacketAnswer:
        """A kernel TCP connection from a chosen source port (e.g. over a tunnel
        interface); the greeting line is read when it opens."""
        family, dst, dport, sport = request.family, request.dst, request.dport, request.sport
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        start = time.monotonic()
        with socket.socket(af, socket.SOCK_STREAM) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            conn.bind(("0.0.0.0" if family == 4 else "::", sport))
            conn.settimeout(request.timeout)
            try:
                conn.connect((dst, dport))
            except ConnectionRefusedError:
                return PacketAnswer("rst", sport, _since(start), source=dst, source_port=dport)
            except OSError:
                return PacketAnswer("none", sport, _since(start))
            elapsed = _since(start)
            try:
                banner = conn.recv(512).decode(errors="replace").strip()
            except OSError as exc:
                banner = f"(no banner: {exc})"
            return PacketAnswer("synack", sport, elapsed, source=dst, source_port=dport,
                                banner=banner)

    @staticmethod
    def smtp(request: SmtpRequest) -> Transcript:
        """Hold an SMTP dialogue with the kernel's TCP (after the SYN showed the way is open)."""
        return run(request.dst, request.dport, request.dialogue, request.timeout)

    @staticmethod
    def guess(request: GuessRequest) -> GuessAnswer:
        try:
            return GuessAnswer(guess(request.dst, request.port, request.users,
                                     timeout=request.timeout))
        except NotAuthorised as exc:
            return GuessAnswer(error=str(exc))

    def answer(self, request: Request[Any]) -> str:
        """The answer line to one request."""
        match request:
            case SynRequest():
                return request.answer_line(self.syn(request))
            case UdpRequest():
                return request.answer_line(self.udp(request))
            case TunnelRequest():
                return request.answer_line(self.tunnel(request))
            case ConnectRequest():
                return request.answer_line(self.connect(request))
            case SmtpRequest():
                return request.answer_line(self.smtp(request))
            case GuessRequest():
                return request.answer_line(self.guess(request))
        raise AgentError(f"no handler for {request.op}")


def _since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 2)


def main() -> int:
    lines = Lines()
    agent = Agent(lines)
    prepare()
    print(json.dumps({"ready": True}), flush=True)
    while (line := lines.next()) is not None:
        if line.strip() == STOP:
            continue  # it came after the answer: nothing was waiting any more
        try:
            said = agent.answer(parse_request(line))
        except AgentError as exc:
            said = failure_line(str(exc))
        print(said, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
