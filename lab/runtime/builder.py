"""The one Mininet topology: any site drawn as bridges, nodes and links.

A bridge per segment, a node per host or router, and a link per interface,
named on the node's side as the site names it (eth0, ens18, ...).
"""

from __future__ import annotations

from typing import Any

from mininet.topo import Topo

from lab.model.site import Site
from lab.runtime.nodes import LabBridge, LabHost, LabLink, LabRouter

IFNAME_MAX = 15


def bridge_port(segment: str, node: str, taken: set[str]) -> str:
    """The bridge's side of a node's link: a unique name that contains the segment's.

    (LinuxBridge enslaves the ports whose names contain the bridge's name.)
    """
    name = f"{segment}-{node}"
    number = 0
    while len(name) > IFNAME_MAX or name in taken:
        number += 1
        name = f"{segment}-{number}"
    taken.add(name)
    return name


class SiteTopo(Topo):  # type: ignore[misc]
    """A site as Mininet builds it: `SiteTopo(site)`."""

    def build(self, site: Site, *args: Any, **params: Any) -> None:
        for segment in site.segments:
            self.addSwitch(segment.name, cls=LabBridge)
        taken: set[str] = set()
        for node in site.nodes:
            if node.light:
                continue  # a bare namespace of its own (lab.runtime.light), made after
            cls = LabRouter if node.is_router else LabHost
            self.addHost(node.name, cls=cls, interfaces=node.interfaces, routes=node.routes)
            for interface in node.interfaces:
                # made from the bridge's side (LabLink: its port up at once)
                self.addLink(interface.segment, node.name, cls=LabLink,
                             intfName1=bridge_port(interface.segment, node.name, taken),
                             intfName2=interface.name)
