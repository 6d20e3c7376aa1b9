"""What the compliance checks assume about the network: what the auditor said, else the gateway's.

`Addressing` is what the checks use. `Requested` is what the auditor gave
(`--clients`, `--mail-server`, `--inside`, `--management`); `resolve()` fills
in what she left out from the gateway itself (`lab.audit.derive`): the client
networks are the prefixes of its inside interfaces — all but the default
route's, loopback and management — and the mail server is the host of those
networks that its rules let out to port 25. Every such assumption is said in a
note. `Addressing()` is the published addressing, read from the built-in
screened-host site (the talk's network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from ipaddress import ip_address, ip_interface, ip_network
from typing import TYPE_CHECKING

import topologies
from lab.audit import derive
from lab.compliance import paths
from lab.model.site import Site
from lab.netfilter import nft_paths, ruleset
from lab.netfilter.rules import Rule
from lab.netfilter.ruleset import Packet

if TYPE_CHECKING:  # reading facts needs no SSH code
    from lab.audit.facts import Facts

PUBLISHED_SITE = "screened-host"
# What an auditor may say of the network (`port25lab audit --NAME`, pytest's
# `--port25lab-NAME`): its metavar, whether it repeats, its help.
OPTIONS = {
    "clients": ("CIDR,…", False, "client networks (default: the prefixes of the inside "
                                 "interfaces)"),
    "mail-server": ("ADDR,…", False, "mail server addresses (default: the host of the client "
                                     "networks the gateway's rules let out to port 25)"),
    "inside": ("IFACE", True, "an inside interface, towards clients (repeatable; default: "
                              "every interface but the default route's and management's)"),
    "management": ("IFACE", True, "an interface towards neither clients nor the outside "
                                  "(repeatable)"),
}
# documentation addresses standing for "the Internet" in the evaluated packets
OUTSIDE = {4: "198.51.100.25", 6: "2001:db8:ffff:1::25"}


@cache
def published() -> Addressing:
    """The addressing of the talk's network (the built-in screened-host site)."""
    return Addressing.of(topologies.load(PUBLISHED_SITE))


@dataclass(frozen=True)
class Addressing:
    """The networks the checks speak of (defaults: the published addressing)."""

    clients: tuple[str, ...] = field(default_factory=lambda: published().clients)
    mail_server: tuple[str, ...] = field(default_factory=lambda: published().mail_server)
    inside: str = field(default_factory=lambda: published().inside)
    # (client network, the interface it arrives on) where that is not `inside`
    arrives_on: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, site: Site) -> Addressing:
        """A site's addressing: its clients' segments, its mail server, the way in."""
        segments = list(dict.fromkeys(s for c in site.clients for s in site.role(c).segments))
        router = site.role(site.policy_router)
        inside = next((i.name for i in router.interfaces if i.segment in segments), "")
        return cls(tuple(p for s in segments for p in site.segment(s).prefixes),
                   site.submission_server.addresses(), inside)

    def client_networks(self, family: int) -> list[str]:
        return [n for n in self.clients if ip_network(n, strict=False).version == family]

    def inside_for(self, address: str) -> str:
        """The interface the packets of a client network (or of a host in one) arrive on."""
        within = ip_network(address, strict=False)
        for network, interface in self.arrives_on:
            net = ip_network(network, strict=False)
            if net.version == within.version and within.subnet_of(net):  # type: ignore[arg-type]
                return interface
        return self.inside

    @property
    def insides(self) -> tuple[str, ...]:
        """Every interface the client networks arrive on."""
        return tuple(dict.fromkeys(self.inside_for(n) for n in self.clients)) or (self.inside,)

    def mail_server_address(self, family: int) -> str | None:
        return next((a for a in self.mail_server if ip_address(a).version == family), None)

    def a_client(self, network: str) -> str:
        """A client address of the network: not the gateway's (.1), not the mail server's."""
        net = ip_network(network, strict=False)
        taken = {ip_address(a) for a in self.mail_server}
        start = 10 if net.num_addresses > 16 else 1
        for offset in range(start, min(net.num_addresses, start + 64)):
            candidate = net.network_address + offset
            if candidate not in taken:
                return str(candidate)
        return str(net.network_address)


@dataclass(frozen=True)
class Requested:
    """What the auditor said of the network; what she left empty comes from the gateway."""

    clients: tuple[str, ...] = ()
    mail_server: tuple[str, ...] = ()
    inside: tuple[str, ...] = ()
    management: tuple[str, ...] = ()

    def layout(self, facts: Facts) -> derive.Layout:
        return derive.layout(facts, self.inside, self.clients, self.management)

    def resolve(self, facts: Facts) -> tuple[Addressing, tuple[str, ...]]:
        """The addressing for this gateway, and a note for each thing assumed."""
        found = self.layout(facts)
        notes = list(found.notes)
        clients = self.clients or tuple(
            str(n) for name in found.clients for n in found.networks(name))
        if not self.clients and clients:
            why = ("given as --inside" if self.inside else
                   f"every interface but the default route's {found.outside}"
                   + (f" and management's {', '.join(self.management)}"
                      if self.management else ""))
            notes.append(f"clients assumed: {', '.join(clients)}, the prefixes of the "
                         f"gateway's {', '.join(found.clients)} ({why}); give --clients to "
                         "say otherwise")
        elif not clients:
            fallback = published()
            holder = next((h for c in fallback.clients if (h := found.holding(c))), None)
            if holder is None:
                notes.append("clients unknown: the gateway has no default route to tell its "
                             "inside from its outside; give --clients and --inside")
                return Addressing((), self.mail_server, ""), tuple(notes)
            notes.append(f"the gateway has no default route to tell its inside from its "
                         f"outside, and its {holder} holds the published "
                         f"{', '.join(fallback.clients)}: the published addressing is "
                         "assumed; give --clients, --mail-server and --inside to say otherwise")
            return Addressing(fallback.clients, self.mail_server or fallback.mail_server,
                              self.inside[0] if self.inside else holder), tuple(notes)
        first = self.inside[0] if self.inside else next(iter(found.clients), "")
        arrives_on = tuple((c, found.holding(c) or first) for c in clients)
        inside = self.inside[0] if self.inside else next((i for _, i in arrives_on), first)
        addressing = Addressing(clients, self.mail_server, inside,
                                tuple((c, i) for c, i in arrives_on if i != inside))
        if self.mail_server:
            return addressing, tuple(notes)
        servers = mail_servers_in_rules(facts, addressing)
        if servers:
            notes.append(f"mail server assumed: {', '.join(servers)}: what the gateway's rules "
                         "let out to port 25 of the client networks; give --mail-server to say "
                         "otherwise")
        else:
            notes.append("mail server unknown: none given (--mail-server) and no host of the "
                         "client networks is let out to port 25 by the gateway's rules")
        return Addressing(clients, servers, inside, addressing.arrives_on), tuple(notes)


def _single_source(rule: Rule) -> str | None:
    """The one host a rule's `-s` names (None: a network, a negation or no `-s`)."""
    words = rule.words
    for i, word in enumerate(words[:-1]):
        if word in ("-s", "--source") and (i == 0 or words[i - 1] != "!"):
            try:
                host = ip_interface(words[i + 1])
            except ValueError:
                return None
            return str(host.ip) if host.network.prefixlen == host.max_prefixlen else None
    return None


def mail_servers_in_rules(facts: Facts, addressing: Addressing) -> tuple[str, ...]:
    """The hosts of the client networks the FORWARD rules let out to port 25 while the rest
    of their network is blocked: the mail server's exception (iptables or nft rules)."""
    found: list[str] = []
    for family in (4, 6):
        rules = ruleset.parse(facts.rules(family), family)

        def smtp(source: str, family: int = family) -> ruleset.Outcome:
            return paths.follow(facts, family, Packet(source, OUTSIDE[family], "tcp", 25,
                                                      addressing.inside_for(source)))

        hosts = [h for r in rules.rules if r.table == "filter"
                 and (h := _single_source(r)) is not None]
        if facts.nft_rules is not None and facts.native_hooks(family):
            hosts += nft_paths.single_sources(facts.nft_rules, family)
        for network in addressing.client_networks(family):
            if not smtp(addressing.a_client(network)).blocks:
                continue  # the network is let out anyway: no exception to find
            for host in hosts:
                if (host not in found and ip_address(host) in ip_network(network, strict=False)
                        and smtp(host).verdict == "ACCEPT"):
                    found.append(host)
    return tuple(found)
