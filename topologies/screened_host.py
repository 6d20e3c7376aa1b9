"""Screened host: clients and the mail server share one LAN behind the router `gw`.

    client1 ─┐                               ┌─ remote-mx
    client2 ─┼─ lan ─ gw(eth0 | eth1) ─ wan ─┼─ sink
    mx ──────┘                               └─ relay (Teredo / 6in4)

LAN 203.0.113.0/24, 2001:db8:b01a:70da::/64 (the published addressing);
outside 198.51.100.0/24, 2001:db8:ffff:1::/64.
"""

from __future__ import annotations

from typing import Any

from lab.model.site import Plan, Port, Role, Route
from lab.runtime.builder import PlannedTopo

LAN4, LAN6 = "203.0.113", "2001:db8:b01a:70da:"
WAN4, WAN6 = "198.51.100", "2001:db8:ffff:1:"


def _inside(name: str, kind: str, host: str) -> Role:
    return Role(name, kind,
                (Port("eth0", "lan", (f"{LAN4}.{host}/24", f"{LAN6}:{host}/64")),),
                (Route("default", f"{LAN4}.1"), Route("default", f"{LAN6}:1")))


def _outside(name: str, host: str) -> Role:
    return Role(name, "outside",
                (Port("eth0", "wan", (f"{WAN4}.{host}/24", f"{WAN6}:{host}/64")),),
                (Route("default", f"{WAN4}.1"), Route("default", f"{WAN6}:1")))


PLAN = Plan(
    name="screened-host",
    description="clients and mx on one LAN behind gw; gw carries the policy",
    policy_router="gw",
    segments=("lan", "wan"),
    roles=(
        _inside("client1", "client", "10"),
        _inside("client2", "client", "11"),
        # 203.0.113.25 and 2001:db8:b01a:70da::25, as published
        Role("mx", "server",
             (Port("eth0", "lan", (f"{LAN4}.25/24", f"{LAN6}:25/64")),),
             (Route("default", f"{LAN4}.1"), Route("default", f"{LAN6}:1"))),
        Role("gw", "router", (
            Port("eth0", "lan", (f"{LAN4}.1/24", f"{LAN6}:1/64")),
            Port("eth1", "wan", (f"{WAN4}.1/24", f"{WAN6}:1/64")),
        )),
        _outside("remote-mx", "25"),
        _outside("sink", "80"),
        # a Teredo relay / server and 6in4 tunnel end point "in the jungle"
        _outside("relay", "35"),
    ),
)


class ScreenedHost(PlannedTopo):
    PLAN = PLAN

    def build(self, *args: Any, **params: Any) -> None:
        lan, wan = self.segment("lan"), self.segment("wan")
        for name in ("client1", "client2", "mx"):
            self.role(name)
            self.wire(name, lan)
        self.role("gw")
        self.wire("gw", lan)
        self.wire("gw", wan)
        for name in ("remote-mx", "sink", "relay"):
            self.role(name)
            self.wire(name, wan)
