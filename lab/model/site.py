"""Addressing plans: which roles a topology has, their addresses and routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_interface


@dataclass(frozen=True)
class Port:
    """One interface of a node: its name inside the node and its addresses (CIDR)."""

    name: str
    segment: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """A static route, `destination` may be `default`."""

    destination: str
    via: str

    @property
    def family(self) -> int:
        return 6 if ":" in self.via else 4


@dataclass(frozen=True)
class Role:
    """A node of the lab, named for what it plays: client, mx, gw, remote-mx, ..."""

    name: str
    kind: str  # "client", "server", "router" or "outside"
    ports: tuple[Port, ...]
    routes: tuple[Route, ...] = ()

    def address(self, family: int) -> str:
        """The node's first address of that family (what a probe aims at)."""
        for port in self.ports:
            for cidr in port.addresses:
                if ip_interface(cidr).version == family:
                    return str(ip_interface(cidr).ip)
        raise LookupError(f"{self.name} has no IPv{family} address")

    def addresses(self) -> tuple[str, ...]:
        return tuple(str(ip_interface(c).ip) for p in self.ports for c in p.addresses)

    @property
    def is_router(self) -> bool:
        return self.kind == "router"


@dataclass(frozen=True)
class Plan:
    """A topology's roles and the router that carries the policy."""

    name: str
    description: str
    policy_router: str
    roles: tuple[Role, ...]
    segments: tuple[str, ...] = field(default=())

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    @property
    def clients(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles if r.kind == "client")

    @property
    def routers(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles if r.is_router)

    def owner_of(self, address: str) -> str | None:
        """The role that holds this address, if any."""
        for role in self.roles:
            if address in role.addresses():
                return role.name
        return None
