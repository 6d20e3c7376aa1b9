"""The gateway's verdict on one forwarded packet: its iptables rules and its nftables ones.

Where no native nftables table has a base chain on the packet's way, the iptables
FORWARD chain alone decides (`lab.netfilter.ruleset`, as before nftables was read);
else every base chain does, in priority order (`lab.netfilter.nft_paths`), with
iptables-nft's FORWARD read as its iptables rules, so that no table counts twice.
"""

from __future__ import annotations

from dataclasses import replace

from lab.audit.facts import Facts
from lab.netfilter import nft_paths, ruleset
from lab.netfilter.ruleset import Outcome, Packet


def follow(facts: Facts, family: int, packet: Packet) -> Outcome:
    """The gateway's verdict on a forwarded packet (`outside`: its default route's way)."""
    rules = ruleset.parse(facts.rules(family), family)
    nft = facts.nft_rules
    if nft is None or not facts.native_hooks(family):
        return ruleset.follow(rules, packet)
    route = facts.default_route(family)
    moved = packet if isinstance(packet, nft_paths.Packet) else nft_paths.Packet(
        packet.source, packet.destination, packet.protocol, packet.port, packet.inside,
        packet.source_port)
    if route is not None and not moved.outside:
        moved = replace(moved, outside=route.dev)
    legacy = "(legacy)" in facts.rules(family).partition("\n*")[0]  # its header
    return nft_paths.follow(nft, moved, rules, facts.xtables, legacy)
