"""DMZ: the mail server sits on its own segment between two routers.

    client1 ─┐                                                  ┌─ remote-mx
    client2 ─┴─ lan ─ inner(eth0 | eth1) ─ dmz ─ outer(eth0 | eth1) ─ wan ─┼─ sink
                                             │                           └─ relay
                                             mx

"All the configuration is done on the INTERNAL router": `inner` carries the
policy; `outer` only routes. LAN 203.0.113.0/24, 2001:db8:b01a:70da::/64;
DMZ 192.0.2.0/24, 2001:db8:b01a:d32::/64; outside 198.51.100.0/24,
2001:db8:ffff:1::/64.
"""

from __future__ import annotations

from typing import Any

from lab.model.site import Plan, Port, Role, Route
from lab.runtime.builder import PlannedTopo

LAN4, LAN6 = "203.0.113", "2001:db8:b01a:70da:"
DMZ4, DMZ6 = "192.0.2", "2001:db8:b01a:d32:"
WAN4, WAN6 = "198.51.100", "2001:db8:ffff:1:"


def _on(segment: str, net4: str, net6: str, host: str) -> Port:
    return Port("eth0", segment, (f"{net4}.{host}/24", f"{net6}:{host}/64"))


def _via(net4: str, net6: str, host: str, destination: str = "default") -> tuple[Route, Route]:
    return Route(destination, f"{net4}.{host}"), Route(destination, f"{net6}:{host}")


def _client(name: str, host: str) -> Role:
    return Role(name, "client", (_on("lan", LAN4, LAN6, host),), _via(LAN4, LAN6, "1"))


def _outside(name: str, host: str) -> Role:
    return Role(name, "outside", (_on("wan", WAN4, WAN6, host),), _via(WAN4, WAN6, "1"))


# The way back to the LAN from the DMZ goes through inner (192.0.2.2).
_TO_LAN = (Route(f"{LAN4}.0/24", f"{DMZ4}.2"), Route(f"{LAN6}:/64", f"{DMZ6}:2"))

PLAN = Plan(
    name="dmz",
    description="mx on a DMZ between inner (policy) and outer routers",
    policy_router="inner",
    segments=("lan", "dmz", "wan"),
    roles=(
        _client("client1", "10"),
        _client("client2", "11"),
        Role("inner", "router", (
            Port("eth0", "lan", (f"{LAN4}.1/24", f"{LAN6}:1/64")),
            Port("eth1", "dmz", (f"{DMZ4}.2/24", f"{DMZ6}:2/64")),
        ), _via(DMZ4, DMZ6, "1")),
        Role("mx", "server", (_on("dmz", DMZ4, DMZ6, "25"),),
             (*_via(DMZ4, DMZ6, "1"), *_TO_LAN)),
        Role("outer", "router", (
            Port("eth0", "dmz", (f"{DMZ4}.1/24", f"{DMZ6}:1/64")),
            Port("eth1", "wan", (f"{WAN4}.1/24", f"{WAN6}:1/64")),
        ), _TO_LAN),
        _outside("remote-mx", "25"),
        _outside("sink", "80"),
        # a Teredo relay / server and 6in4 tunnel end point "in the jungle"
        _outside("relay", "35"),
    ),
)


class Dmz(PlannedTopo):
    PLAN = PLAN

    def build(self, *args: Any, **params: Any) -> None:
        lan, dmz, wan = self.segment("lan"), self.segment("dmz"), self.segment("wan")
        for name in ("client1", "client2"):
            self.role(name)
            self.wire(name, lan)
        self.role("inner")
        self.wire("inner", lan)
        self.wire("inner", dmz)
        self.role("mx")
        self.wire("mx", dmz)
        self.role("outer")
        self.wire("outer", dmz)
        self.wire("outer", wan)
        for name in ("remote-mx", "sink", "relay"):
            self.role(name)
            self.wire(name, wan)
