"""The spambot-epidemic's site booted for real: a thousand light clients, each reachable in
the families it has, and the firewall logs naming exactly the fifty bots.

One boot (about 10 s on 2 cores, and as long again for the rest); the whole scenario,
with its trap and 226 probes, is `port25lab verify examples/spambot-epidemic` (about 100 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lab.engine.verify import load_policies, suspects_of
from lab.model import scenario
from lab.model.scenario import Scenario
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from tests.support import PROJECT, leftovers

pytestmark = pytest.mark.lab

# Run in gw: an echo request to each address, from gw's outside address (so that each
# reply takes the client's default route back), and the addresses that answered.
SWEEP = r"""
import json, select, socket, struct, sys, time
targets = json.loads(sys.argv[1])
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
sockets = {4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
           6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)}
sockets[4].bind((sys.argv[2], 0)); sockets[6].bind((sys.argv[3], 0))
for s in sockets.values():  # room for every reply while the requests are still sent
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 23)  # SO_RCVBUFFORCE (root)
for n, address in enumerate(targets):
    family = 6 if ":" in address else 4
    kind = 128 if family == 6 else 8  # the kernel sums ICMPv6
    body = struct.pack("!BBHHH", kind, 0, 0, 0x2525, n)
    if family == 4:
        body = struct.pack("!BBHHH", kind, 0, checksum(body), 0x2525, n)
    try:
        sockets[family].sendto(body, (address, 0))
    except OSError as exc:
        sys.exit(f"{address}: {exc}")
    if n % 50 == 49:
        time.sleep(0.01)  # the neighbour tables' queues hold a few packets each
answered, deadline = set(), time.monotonic() + 5
while len(answered) < len(targets) and time.monotonic() < deadline:
    ready, _, _ = select.select(list(sockets.values()), [], [], 0.2)
    for s in ready:
        data, (source, *_) = s.recvfrom(2048)
        reply = data[(data[0] & 15) * 4:] if s.family == socket.AF_INET else data
        if reply[0] in (0, 129):
            answered.add(source)
print(json.dumps(sorted(answered)))
"""


@pytest.fixture(scope="module")
def epidemic() -> Iterator[tuple[Scenario, Lab]]:
    s, _ = scenario.load(str(PROJECT / "examples" / "spambot-epidemic")).with_nflog()
    run = lifecycle.new_run()
    try:
        with Lab(s.site, run) as lab:
            yield s, lab
    finally:
        lifecycle.destroy(run)
        assert leftovers(run.prefix) == []


def test_every_client_answers_in_the_families_it_has(epidemic: tuple[Scenario, Lab]) -> None:
    s, lab = epidemic
    site = s.site
    addresses = [a for c in site.clients for a in site.role(c).addresses()]
    assert len(addresses) == 1450  # 1000 IPv6, 450 IPv4
    outside = site.role("gw").interface_holding("198.51.100.1")[0].addresses
    status, out, err = lab.exec("gw", [sys.executable, "-c", SWEEP, json.dumps(addresses),
                                       "198.51.100.1", "2001:db8:ffff:1::1"], timeout=30)
    assert status == 0, err
    assert "198.51.100.1/24" in outside
    assert sorted(set(addresses) - set(json.loads(out))) == []
    # the IPv6-only wifi has no IPv4 at all
    (_, shown, _) = lab.exec("client1000", ["ip", "-4", "-o", "addr", "show", "scope", "global"])
    assert shown == ""


def test_the_logs_name_exactly_the_fifty_bots(epidemic: tuple[Scenario, Lab]) -> None:
    s, lab = epidemic
    assert load_policies(lab, s) == []
    assert s.suspects is not None and len(s.suspects) == 50
    site = s.site
    remote = {4: site.role("remote-mx").address(4), 6: site.role("remote-mx").address(6)}
    clean = ["client1", "client201", "client451", "client1000"]

    def attempt(role: str, port: int) -> subprocess.Popen[bytes]:
        # a bare TCP connect (no agent): the bot's SYN is all the log needs
        family = 4 if site.role(role).has(4) else 6
        target = remote[family] if port == 25 else site.role("mx").address(family)
        return lab.nodes[role].popen(["timeout", "2", "bash", "-c",
                                      f"echo > /dev/tcp/{target}/{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    procs = [attempt(bot, 25) for bot in s.suspects] + [attempt(c, 587) for c in clean]
    for proc in procs:
        proc.wait()
    deadline = time.monotonic() + 5
    while (found := {x.role for x in suspects_of(lab)}) != set(s.suspects) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert found == set(s.suspects)
