"""A Mininet topology drawn from an addressing plan."""

from __future__ import annotations

from typing import Any

from mininet.topo import Topo

from lab.model.site import Plan
from lab.runtime.nodes import LabBridge, LabHost, LabRouter


class PlannedTopo(Topo):  # type: ignore[misc]
    """Topo whose nodes and links come from `PLAN`; `build()` says how they connect."""

    PLAN: Plan

    def segment(self, name: str) -> str:
        """A LAN segment: a Linux bridge in its own namespace."""
        return str(self.addSwitch(name, cls=LabBridge))

    def role(self, name: str) -> str:
        role = self.PLAN.role(name)
        cls = LabRouter if role.is_router else LabHost
        return str(self.addHost(name, cls=cls, ports=role.ports, routes=role.routes))

    def wire(self, role_name: str, segment: str) -> None:
        """Plug the role's port on `segment` into that segment's bridge."""
        port = next(p for p in self.PLAN.role(role_name).ports if p.segment == segment)
        # LinuxBridge enslaves the ports whose names contain the bridge's name.
        self.addLink(role_name, segment, intfName1=port.name,
                     intfName2=f"{segment}-{role_name}"[:15])

    def build(self, *args: Any, **params: Any) -> None:
        raise NotImplementedError
