"""The IP families and their netfilter tools: IPv6 is a subclass of IPv4, not a dict entry."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

# the xtables tools' names for their backends: iptables, iptables-legacy, iptables-nft
_BACKENDS = ("", "-legacy", "-nft")


class IPv4:
    """IPv4's netfilter tools (`iptables`, `iptables-save`, `iptables-restore`)."""

    version = 4
    tool = "iptables"

    @property
    def save(self) -> str:
        """The tool that prints the family's rules (with `-c`: and their counters)."""
        return f"{self.tool}-save"

    @property
    def restore(self) -> str:
        return f"{self.tool}-restore"

    @property
    def programs(self) -> tuple[str, ...]:
        """The tool under each name it has: the default backend, legacy and nf_tables."""
        return tuple(f"{self.tool}{backend}" for backend in _BACKENDS)

    @property
    def other(self) -> IPv4:
        """The other family: IPv6 for IPv4, IPv4 for IPv6."""
        return next(f for f in FAMILIES if f.version != self.version)

    def holds(self, address: str) -> bool:
        """The address (without a prefix length) belongs to this family."""
        try:
            return isinstance(ip_address(address.split("/")[0].strip("[]")),
                              IPv6Address if self.version == 6 else IPv4Address)
        except ValueError:
            return False

    def __repr__(self) -> str:
        return f"IPv{self.version}"


class IPv6(IPv4):
    """IPv6's tools (`ip6tables`, …)."""

    version = 6
    tool = "ip6tables"


FAMILIES: tuple[IPv4, ...] = (IPv4(), IPv6())


def family(version: int) -> IPv4:
    """The family of an IP version (4 or 6)."""
    for found in FAMILIES:
        if found.version == version:
            return found
    raise ValueError(f"no IP version {version}")


def of_program(name: str) -> IPv4 | None:
    """The family whose netfilter tool `name` is (`ip6tables-nft`: IPv6), or None."""
    return next((f for f in FAMILIES if name in f.programs), None)
