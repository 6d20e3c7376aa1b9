"""The twin: a live gateway's collected rules replayed on the lab's policy router.

The lab is the gateway's own network where the audit could derive it
(`lab.audit.derive`: its interfaces, names and addresses, its default route),
else the scenario's site. The rules are loaded line by line (a chain policy, a
user chain, a rule each an iptables command), not with iptables-restore:
restore is all-or-nothing per table, and the report must say which collected
lines did not load in the lab and why. Where the audit collected an nft ruleset
(`nft list ruleset`), its native tables (those iptables-save does not show) are
replayed with `nft -f`, each rule nft refuses left out and reported by its line
(lab.netfilter.policy.load_ruleset). Interface names are mapped from the
gateway's to the lab's where they differ (`--map-interface`). Then the
scenario's own probe matrix runs on them: no packet ever goes to the production
network.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lab.audit import derive
from lab.audit.facts import Facts
from lab.compliance.addressing import Addressing, Requested
from lab.errors import BadInput
from lab.model.scenario import Expectation, Scenario
from lab.model.site import Site
from lab.netfilter import nft, save
from lab.netfilter.family import family as ip_family
from lab.netfilter.policy import PolicyFile
from lab.netfilter.script import Command

_INTERFACE_FLAGS = ("-i", "--in-interface", "-o", "--out-interface")


def parse_mapping(items: list[str]) -> dict[str, str]:
    """`--map-interface GATEWAY=LAB` options as a mapping; BadInput for a malformed one."""
    mapping: dict[str, str] = {}
    for item in items:
        gateway, sep, lab = item.partition("=")
        if not sep or not gateway or not lab or any(c.isspace() for c in item):
            raise BadInput(f"--map-interface {item!r}: give GATEWAY=LAB, e.g. ens3=eth0")
        mapping[gateway] = lab
    return mapping


@dataclass(frozen=True)
class Replay:
    """The collected rules as the lab will load them, and what the lab notes about them.

    `policies`: by family (4, 6: iptables'), and 0 for the native nft tables, if any.
    """

    policies: dict[int, PolicyFile]
    notes: tuple[str, ...]


def commands(text: str, family: int, source: str,
             mapping: dict[str, str]) -> list[Command]:
    """One iptables command per chain and rule of a save dump (line numbers kept)."""
    program = ip_family(family).tool
    ruleset = save.read(text, family)
    said = {number: line for number, line, _ in save.lines(text)}
    found: list[tuple[int, list[str]]] = []
    for chain in ruleset.chains:
        if not chain.builtin:
            found.append((chain.line, [program, "-t", chain.table, "-N", chain.name]))
        elif chain.policy != "ACCEPT":  # a fresh lab router's chains already accept
            found.append((chain.line, [program, "-t", chain.table, "-P", chain.name,
                                       chain.policy]))
    for rule in ruleset.rules:
        found.append((rule.line, [program, "-t", rule.table, "-A", rule.chain,
                                  *_mapped(list(rule.words), mapping)]))
    return [Command(source, number, said[number], tuple(argv), family)
            for number, argv in sorted(found)]


def _mapped(words: list[str], mapping: dict[str, str]) -> list[str]:
    out = list(words)
    for i in range(len(out) - 1):
        if out[i] in _INTERFACE_FLAGS:
            name = out[i + 1]
            wildcard = name.endswith("+")
            base = name[:-1] if wildcard else name
            if base in mapping:
                out[i + 1] = mapping[base] + ("+" if wildcard else "")
    return out


def interfaces_named(policy: PolicyFile) -> set[str]:
    names = set()
    for cmd in policy.commands:
        for i in range(len(cmd.argv) - 1):
            if cmd.argv[i] in _INTERFACE_FLAGS:
                names.add(cmd.argv[i + 1])
    return names


def replay(facts: Facts, scenario: Scenario, mapping: dict[str, str]) -> Replay:
    """The gateway's rules of both families as policies for the scenario's policy router."""
    router = scenario.site.policy_router
    lab_interfaces = {i.name for i in scenario.site.role(router).interfaces}
    unknown = set(mapping) - set(facts.interfaces)
    if unknown and facts.interfaces:
        raise BadInput(f"--map-interface {sorted(unknown)[0]}=…: the gateway has no such "
                       f"interface (it has {', '.join(sorted(facts.interfaces))})")
    wrong = set(mapping.values()) - lab_interfaces
    if wrong:
        raise BadInput(f"--map-interface …={sorted(wrong)[0]}: the lab's {router} has no such "
                       f"interface (it has {', '.join(sorted(lab_interfaces))})")
    policies = {}
    notes = []
    for family in (4, 6):
        source = f"{facts.gateway} {ip_family(family).save}"
        policy = PolicyFile(Path(source), "script", label=source,
                            commands=tuple(commands(facts.rules(family), family, source,
                                                    mapping)))
        policies[family] = policy
        for name in sorted(interfaces_named(policy)):
            if name.rstrip("+") not in lab_interfaces and not any(
                    i.startswith(name[:-1]) for i in lab_interfaces if name.endswith("+")):
                notes.append(f"{source}: rules name interface {name}, which the lab's "
                             f"{router} does not have ({', '.join(sorted(lab_interfaces))}): "
                             f"they never match there; map it with --map-interface "
                             f"{name.rstrip('+')}=LAB")
    native = native_ruleset(facts, mapping)
    if native is not None:
        policies[0] = PolicyFile(native.path, "nft", ruleset=native, replay=True,
                                 label=native.file)
        for name in sorted(nft.interfaces(native.text)):
            base = name.rstrip("*")
            if base not in lab_interfaces and not (name.endswith("*") and any(
                    i.startswith(base) for i in lab_interfaces)):
                notes.append(f"{native.file}: rules name interface {name}, which the lab's "
                             f"{router} does not have ({', '.join(sorted(lab_interfaces))}): "
                             f"they never match there; map it with --map-interface "
                             f"{base}=LAB")
    return Replay(policies, tuple(notes))


def native_ruleset(facts: Facts, mapping: dict[str, str]) -> nft.Ruleset | None:
    """The gateway's nft tables that iptables-save does not show, as a replay; None if none.

    The tables iptables-save prints are iptables' own (replayed as iptables commands
    above); every other table of `nft list ruleset` is native nftables.
    """
    collected = facts.nft
    if collected is None or not collected.ok or not collected.stdout.strip():
        return None
    source = f"{facts.gateway} {collected.command}"
    ruleset = nft.from_text(source, collected.stdout)
    xtables = {(name, table) for name, family in (("ip", 4), ("ip6", 6))
               for table in save_tables(facts.rules(family))}
    native = nft.without_tables(ruleset, xtables)
    if not nft.tables(native.text):
        return None
    return nft.mapped(native, mapping)


def save_tables(text: str) -> set[str]:
    """The tables a save dump holds (`*filter` …)."""
    return {line[1:].strip() for _, line, _ in save.lines(text) if line.startswith("*")}


def twin_scenario(facts: Facts, scenario: Scenario, mapping: dict[str, str],
                  site: Site | None = None) -> tuple[Scenario, tuple[str, ...]]:
    """The scenario with its policy router running the gateway's rules instead of its own.

    On `site` (the gateway's derived one) where given, else on the scenario's own.
    """
    notes: tuple[str, ...] = ()
    if site is not None:
        scenario, notes = on_site(scenario, site)
    collected = replay(facts, scenario, mapping)
    # the gateway's whole policy replaces the scenario's (also an nft ruleset for both
    # families); the native nft tables, for both families, load last
    twin = scenario.with_policy(tuple(collected.policies[f] for f in (4, 6, 0)
                                      if f in collected.policies))
    return (replace(twin, name=f"{scenario.name} twin of {facts.gateway}"),
            notes + collected.notes)


def derived_site(facts: Facts, requested: Requested, addressing: Addressing,
                 router: str) -> tuple[Site | None, tuple[str, ...]]:
    """The gateway's own network as a site, with `router` its policy router.

    None where the gateway has no default route to tell its outside by: the twin
    then runs on the scenario's site, as a note says.
    """
    found = requested.layout(facts)
    if found.outside is None:
        return None, ("the gateway has no default route (or `ip -json route show` could not "
                      "be read): the twin runs on the scenario's own site; map interface "
                      "names with --map-interface GATEWAY=LAB",)
    return derive.site(facts, found, addressing.mail_server, router)


@dataclass(frozen=True)
class OnSite(Scenario):
    """A scenario run on another site than its topology names: the twin's derived one."""

    other: Site | None = None

    @property
    def site(self) -> Site:
        return self.other if self.other is not None else super().site


def on_site(scenario: Scenario, site: Site) -> tuple[Scenario, tuple[str, ...]]:
    """The scenario on `site`, whose roles it needs; its clients' rows cover the site's."""
    named = {r for e in scenario.expectations for r in (e.source, e.target)}
    named |= set(scenario.traps) | set(scenario.suspects or ())
    missing = sorted(named - set(site.role_names))
    if missing:
        raise BadInput(f"--twin {scenario.name}: the scenario names {missing[0]}, which the "
                       f"twin's site lacks (it has {', '.join(site.role_names)})")
    policies = {r: p for r, p in scenario.policies.items() if r in site.routers}
    notes = [f"{scenario.name}: the twin has no router {r}: its policy is not loaded"
             for r in scenario.policies if r not in policies]
    kept = {f.name: getattr(scenario, f.name) for f in fields(scenario)}
    return OnSite(**{**kept, "topology": site.name, "policies": policies,
                     "expectations": every_client(scenario.expectations,
                                                  scenario.site.clients, site.clients)},
                  other=site), tuple(notes)


def every_client(expectations: tuple[Expectation, ...], old: tuple[str, ...],
                 new: tuple[str, ...]) -> tuple[Expectation, ...]:
    """Rows made for every client of the old site, made for every client of the new one.

    A scenario's `from: clients` became a row per client of its own site when it was
    read; on a site with more clients (a second client segment) the others get theirs.
    """
    extra = [c for c in new if c not in old]
    if not extra or not old:
        return expectations

    def key(e: Expectation) -> tuple[object, ...]:
        return (e.target, e.probe, e.family, e.verdict, e.variant, e.after)

    sources: dict[tuple[object, ...], set[str]] = defaultdict(set)
    for e in expectations:
        sources[key(e)].add(e.source)
    found: list[Expectation] = []
    for e in expectations:
        found.append(e)
        if e.source == old[-1] and sources[key(e)] >= set(old):
            found += [replace(e, source=c) for c in extra if c not in sources[key(e)]]
    return tuple(found)
