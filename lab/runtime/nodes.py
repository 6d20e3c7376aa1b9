"""Mininet node classes for the lab: hosts and routers configured from a site,
and a Linux bridge that lives in a namespace of its own."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any

from mininet.node import Host
from mininet.nodelib import LinuxBridge

from lab.model.site import Interface, Route

_NO_DAD = (
    "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
    "net.ipv6.conf.default.dad_transmits=0 net.ipv6.conf.all.dad_transmits=0 "
    "net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.router_solicitations=0"
)


def host_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The name servers the host's resolver would ask (nodes share its /etc)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.ip_address(words[1].split("%")[0])))
    return tuple(found)


class LabHost(Host):  # type: ignore[misc]
    """A host whose interfaces and routes come from the site.

    Duplicate address detection is off before any link exists: otherwise IPv6
    addresses stay tentative for about a second after boot.
    """

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        self.cmd(_NO_DAD)

    def config(self, interfaces: tuple[Interface, ...] = (), routes: tuple[Route, ...] = (),
               **params: Any) -> dict[str, Any]:
        params["ip"] = None
        result: dict[str, Any] = super().config(**params)
        for interface in interfaces:
            for cidr in interface.addresses:
                self._ip("addr", "add", cidr, "dev", interface.name)
            self._ip("link", "set", interface.name, "up")
        for route in routes:
            self._ip(f"-{route.family}", "route", "replace", route.destination, "via", route.via)
        # No name service in the lab. A query for the host's resolver would
        # otherwise travel the lab's default routes and wait for a timeout
        # (Postfix's master waited 2 s); unreachable routes fail it at once, and
        # no packet for an address outside the lab is ever sent.
        for resolver in host_resolvers():
            if not resolver.startswith("127.") and resolver != "::1":
                family = 6 if ":" in resolver else 4
                self._ip(f"-{family}", "route", "replace", "unreachable", resolver)
        return result

    def _ip(self, *args: str) -> None:
        out = self.cmd("ip", *args)
        if out.strip():
            raise RuntimeError(f"{self.name}: ip {' '.join(args)}: {out.strip()}")


class LabRouter(LabHost):
    """A Linux router (forwarding on for both families)."""

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        self.cmd("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")


class LabBridge(LinuxBridge):  # type: ignore[misc]
    """A Linux bridge created inside its own network namespace.

    The host's root namespace has bridge-nf-call-iptables=1, which would push
    bridged lab traffic through the host's own firewall; inside a fresh
    namespace the lab sets it to 0. Mininet's addSwitch passes
    inNamespace=False, so it is forced here.
    """

    def __init__(self, name: str, **params: Any) -> None:
        params["inNamespace"] = True
        params.setdefault("dpid", "1")  # unused (no OpenFlow), but Switch wants one
        super().__init__(name, **params)

    def start(self, controllers: Any) -> None:
        # br_netfilter's sysctls only exist where the module is loaded; a missing
        # key is fine (then nothing calls iptables for bridged frames here).
        self.cmd("sysctl -qw net.bridge.bridge-nf-call-iptables=0 "
                 "net.bridge.bridge-nf-call-ip6tables=0 "
                 "net.bridge.bridge-nf-call-arptables=0 2>/dev/null")
        self.cmd(_NO_DAD)
        super().start(controllers)
