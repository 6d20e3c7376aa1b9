"""The IP families and their netfilter tools: IPv6 is a subclass of IPv4, not a dict entry."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address


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
