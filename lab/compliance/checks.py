"""The static compliance checks: audit facts in, findings out. No network, no lab.

Each check reads the collected rules the way the kernel would for one new
connection (`lab.netfilter.ruleset`): from a client of the inside networks, from the
mail server, to an outside address. The addressing is an option; its
defaults are the published ones.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network

from lab.audit.facts import SYSCTLS, Facts
from lab.compliance import paths
from lab.compliance.addressing import OUTSIDE, Addressing
from lab.netfilter import nft_paths, ruleset
from lab.netfilter.family import family as ip_family
from lab.netfilter.rules import BAN_CHAIN, Rule
from lab.netfilter.ruleset import Outcome, Packet
from lab.netfilter.save import Ruleset


@dataclass(frozen=True)
class Finding:
    """One check's result for one family (or for the whole gateway: family None)."""

    check: str
    title: str
    family: int | None
    passed: bool | None  # None: not checked (what it needs was not given)
    detail: str

    @property
    def name(self) -> str:
        return f"{self.check}[v{self.family}]" if self.family else self.check

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "not checked"}[self.passed]


CheckFunction = Callable[[Facts, Addressing, int | None], tuple[bool | None, str]]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    families: tuple[int | None, ...]
    function: CheckFunction

    def __call__(self, facts: Facts, addressing: Addressing, family: int | None) -> Finding:
        passed, detail = self.function(facts, addressing, family)
        return Finding(self.id, self.title, family, passed, detail)


def _rules(facts: Facts, family: int) -> Ruleset:
    return ruleset.parse(facts.rules(family), family)


def _per_family(family: int | None) -> int:
    """The family of a per-family check (its `families` are 4 and 6, never None)."""
    if family is None:
        raise ValueError("a per-family check was run without a family")
    return family


def _label(rule: Rule) -> str:
    if rule.native:
        return f"{rule.table_family} {rule.table} {rule.chain} handle {rule.handle}"
    return f"{rule.chain}#{rule.position}"


def _describe(what: str, path: Outcome) -> str:
    if isinstance(path, nft_paths.Outcome) and path.cannot_tell:
        text = f"{what}: cannot tell: {path.cite()} (an expression the audit does not read)"
    else:
        text = f"{what}: {path.verdict} by {path.cite()}"
    if isinstance(path, nft_paths.Outcome) and path.diverted_by is not None:
        text += f" after a dnat to {path.rewritten} by {path.diverted_by.in_chain()}"
    if path.logged_by:
        text += f" (logged by {', '.join(_label(r) for r in path.logged_by)})"
    if path.unknown:
        text += (f"; not evaluated: {', '.join(r.in_chain() for r in path.unknown)}")
    return text


def _paths(facts: Facts, a: Addressing, family: int | None, ports: tuple[int, ...],
           from_mail_server: bool = False) -> list[tuple[str, Outcome]]:
    family = _per_family(family)
    if from_mail_server:
        server = a.mail_server_address(family)
        sources = [server] if server else []
    else:
        sources = [a.a_client(n) for n in a.client_networks(family)]
    return [(f"{source} → {port}", paths.follow(facts, family, Packet(
        source, OUTSIDE[family], "tcp", port, a.inside_for(source))))
        for source in sources for port in ports]


def _untold(paths: list[tuple[str, Outcome]]) -> bool:
    return any(isinstance(p, nft_paths.Outcome) and p.cannot_tell for _, p in paths)


def _kept_in(path: Outcome) -> bool:
    """Blocked, or diverted by a dnat to an address of the inside (the divert strategy)."""
    return path.blocks or (isinstance(path, nft_paths.Outcome) and path.diverted_by
                           is not None and path.verdict == "ACCEPT")


def _smtp_blocked(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    paths = _paths(facts, a, family, (25, 465))
    if not paths:
        return None, f"no IPv{family} client network given"
    said = "; ".join(_describe(w, p) for w, p in paths)
    if not all(_kept_in(p) for _, p in paths) and _untold(paths):
        return None, said
    return all(_kept_in(p) for _, p in paths), said


def _logged(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    paths = _paths(facts, a, family, (25, 465))
    if not paths:
        return None, f"no IPv{family} client network given"
    ok = all(p.blocks and p.logged_by for _, p in paths)
    if not ok and _untold(paths):
        return None, "; ".join(_describe(w, p) for w, p in paths)
    return ok, "; ".join(_describe(w, p) + ("" if p.logged_by or not p.blocks
                                            else " — dropped without a log")
                         for w, p in paths)


def _submission_open(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    paths = _paths(facts, a, family, (587,))
    if not paths:
        return None, f"no IPv{family} client network given"
    return _accepted(paths)


def _accepted(paths: list[tuple[str, Outcome]]) -> tuple[bool | None, str]:
    said = "; ".join(_describe(w, p) for w, p in paths)
    ok = all(p.verdict == "ACCEPT" for _, p in paths)
    return (None if not ok and _untold(paths) else ok), said


def _mail_server(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    paths = _paths(facts, a, family, (25, 465), from_mail_server=True)
    if not paths:
        return None, f"no IPv{family} mail server address given"
    return _accepted(paths)


def _teredo(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    """A rule that drops the clients' UDP to port 3544 (u32 refinements taken as matching)."""
    rules = _rules(facts, 4)
    found = []
    for network in a.client_networks(4):
        packet = Packet(a.a_client(network), OUTSIDE[4], "udp", 3544, a.inside_for(network))
        for rule in rules.chain("filter", "FORWARD") + [
                r for r in rules.rules if r.table == "filter" and r.chain != "FORWARD"]:
            if rule.target not in ("DROP", "REJECT"):
                continue
            try:
                if ruleset.matches(_without_u32(rule), packet):
                    found.append(rule)
                    break
            except ruleset.Unmodelled:  # some other match: not a rule it can vouch for
                continue
        else:
            if facts.native_hooks(4):  # the nft ruleset, by the packet itself
                return _teredo_nft(facts, a)
            return False, (f"no rule drops UDP port 3544 (Teredo) from {network}: IPv6 "
                           "tunnelled in IPv4 leaves the network")
    said = "; ".join(f"Teredo dropped by {r.in_chain()}" for r in found)
    if any("u32" in r.words for r in found):
        said += (" (present; what its u32 expression catches is not read statically: "
                 "`--twin` replays it)")
    return True, said


def _teredo_nft(facts: Facts, a: Addressing) -> tuple[bool | None, str]:
    """Teredo SYNs to 25 and 465 from each client network, payload and all, through nft."""
    from probes.tunnel import TEREDO_VARIANTS, build  # scapy: only where it is needed

    said, verdicts = [], []
    for network in a.client_networks(4):
        source = a.a_client(network)
        for name in ("plain", "plain-465"):
            datagram = build("teredo", TEREDO_VARIANTS[name], OUTSIDE[4], OUTSIDE[6],
                             40000, 1)[0]
            header = (datagram[0] & 0x0F) * 4 + 8  # the IPv4 and UDP headers
            path = paths.follow(facts, 4, nft_paths.Packet(
                source, OUTSIDE[4], "udp", 3544, a.inside_for(network),
                payload=datagram[header:]))
            verdicts.append(path)
            said.append(_describe(f"Teredo {name} from {source}", path))
    if not verdicts:
        return None, "no IPv4 client network given"
    ok = all(p.blocks for p in verdicts)
    if not ok and any(isinstance(p, nft_paths.Outcome) and p.cannot_tell for p in verdicts):
        return None, "; ".join(said)
    return ok, "; ".join(said) + ("" if ok else ": IPv6 tunnelled in IPv4 leaves the network")


def _without_u32(rule: Rule) -> Rule:
    words = list(rule.words)
    while "u32" in words:
        i = words.index("u32")
        # `-m u32 --u32 EXPR`
        del words[i - 1:i + 3]
    return replace(rule, text=shlex.join(words))


def _forwarding(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    name = "net.ipv4.ip_forward" if family == 4 else "net.ipv6.conf.all.forwarding"
    value = facts.forwarding.get(name)
    if value is None:
        return False, f"{name} is not there (sysctl: {facts.outputs[SYSCTLS].first_error()})"
    return value == "1", f"{name} = {value}"


def _inside(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    if not a.clients:
        return None, "no client network given"
    interfaces = facts.interfaces
    said = []
    for name in a.insides:
        if name not in interfaces:
            return False, (f"the gateway has no interface {name or '(none given)'} (it has "
                           f"{', '.join(sorted(interfaces))}): give the inside interface")
        addresses = interfaces[name]
        inside = [c for c in addresses for n in a.clients
                  if ip_address(c.split("/")[0]) in ip_network(n, strict=False)]
        if not inside:
            return False, (f"{name} has {', '.join(addresses) or 'no address'}, none in the "
                           f"client networks {', '.join(a.clients)}")
        said.append(f"{name}: {', '.join(addresses)}")
    return True, "; ".join(said)


def _submission_auth_tls(facts: Facts, a: Addressing,
                         family: int | None) -> tuple[bool | None, str]:
    if facts.mail_server is None:
        return None, "no mail server given (--mx)"
    main = facts.postfix_main
    services = [e for e in facts.postfix_master
                if len(e) >= 8 and e[0] in ("submission", "587") and e[1] == "inet"]
    if not services:
        return False, "master.cf has no submission (587) service"
    words = services[0]
    overrides = dict(w.split("=", 1) for w in _options(words))
    effective = {**main, **overrides}

    def setting(name: str) -> str:
        return effective.get(name, "")

    tls = setting("smtpd_tls_security_level") == "encrypt" or \
        setting("smtpd_enforce_tls") == "yes"
    auth = setting("smtpd_sasl_auth_enable") == "yes"
    restrictions = [setting(n) for n in ("smtpd_client_restrictions",
                                         "smtpd_sender_restrictions",
                                         "smtpd_relay_restrictions",
                                         "smtpd_recipient_restrictions")]
    required = any(_only_authenticated(r) for r in restrictions)
    said = [f"TLS {'required' if tls else 'not required'} "
            f"(smtpd_tls_security_level={setting('smtpd_tls_security_level') or 'default'})",
            f"SASL {'on' if auth else 'off'}",
            "only authenticated clients pass" if required
            else "unauthenticated clients are not rejected"]
    dovecot = facts.dovecot
    if dovecot is not None:
        said.append("dovecot " + ", ".join(f"{k}={v}" for k, v in dovecot.items()))
    return tls and auth and required, f"{words[0]}: " + "; ".join(said)


def _options(words: list[str]) -> list[str]:
    found = []
    for i, word in enumerate(words):
        if word == "-o" and i + 1 < len(words) and "=" in words[i + 1]:
            found.append(words[i + 1])
        elif word.startswith("-o") and "=" in word[2:]:
            found.append(word[2:])
    return found


def _only_authenticated(restrictions: str) -> bool:
    """`permit_sasl_authenticated` followed by a `reject` with nothing else permitting."""
    steps = [s for s in restrictions.replace(",", " ").split() if s]
    return "permit_sasl_authenticated" in steps and bool(steps) and steps[-1] == "reject" \
        and all(s in ("permit_sasl_authenticated", "reject") or not s.startswith("permit")
                for s in steps)


def _fail2ban(facts: Facts, a: Addressing, family: int | None) -> tuple[bool | None, str]:
    status = facts.fail2ban
    if status is None:
        return False, "fail2ban is not installed on the gateway"
    if not status.ok:
        return False, f"fail2ban is not running: {status.first_error()}"
    jails = facts.jails
    if not jails:
        return False, "fail2ban runs without any jail"
    said = []
    for name, out in jails.items():
        banned = next((ln.split(":", 1)[1].strip() for ln in out.stdout.splitlines()
                       if "Currently banned" in ln), "?")
        said.append(f"{name} ({banned} banned)" if out.ok else
                    f"{name} (status failed: {out.first_error()})")
    ok = all(o.ok for o in jails.values())
    text = "jails: " + ", ".join(said)
    places = _ban_places(facts)
    if places:
        text += "; bans: " + ", ".join(f"{where} ({hook} hook)" for where, hook in places)
    missed = [where for where, hook in places if hook == "input"]
    if missed and not any(hook == "forward" for _, hook in places):
        ok = False
        text += (f"; {', '.join(missed)}: in the input hook a ban stops only what is sent "
                 "to the gateway itself, never what it forwards: a banned client's mail "
                 "still leaves (fail2ban's nftables actions: chain_hook = forward; iptables "
                 "ones: chain = FORWARD)")
    return ok, text


_NFT_BAN_SET = re.compile(r"addr6?-set-(.+)")  # fail2ban's nftables actions: addr-set-<jail>


def _ban_places(facts: Facts) -> list[tuple[str, str]]:
    """Where fail2ban's stock actions put their bans, and the hook each is read in.

    nftables actions: a set `addr-set-<jail>` in a table of their own (`inet f2b-table`)
    whose base chain (`f2b-chain`) hooks `chain_hook` (input unless set); iptables
    actions: a chain `f2b-<jail>` a built-in chain jumps to.
    """
    found = []
    nft = facts.nft_rules
    if nft is not None:
        native = set(nft_paths.native_tables(nft, facts.xtables))
        for (family, table, name), data in sorted(nft.sets.items()):
            jail = _NFT_BAN_SET.fullmatch(name)
            if jail is None or (family, table) not in native:
                continue
            banned = len(data.get("elem", []))
            for chain in nft.chains:
                if (chain.family, chain.table) == (family, table) and chain.base:
                    found.append((f"{family} {table} {chain.name} @{name} ({banned} banned)",
                                  chain.hook))
    for version in (4, 6):
        for rule in _rules(facts, version).rules:
            if rule.table == "filter" and rule.target.startswith(BAN_CHAIN) and \
                    rule.chain in ("INPUT", "FORWARD"):
                found.append((f"{ip_family(version).tool} {rule.chain} → {rule.target}",
                              rule.chain.lower()))
    return found


CHECKS: tuple[Check, ...] = (
    Check("inside-interface", "the inside interface holds a client network address",
          (None,), _inside),
    Check("smtp-blocked", "25 and 465 blocked from the client networks", (4, 6),
          _smtp_blocked),
    Check("teredo-rule", "Teredo (UDP 3544) from the client networks dropped", (None,),
          _teredo),
    Check("submission-open", "587 (submission) not blocked", (4, 6), _submission_open),
    Check("mail-server-exception", "the mail server may reach 25 and 465", (4, 6),
          _mail_server),
    Check("log-before-drop", "a logging rule before the drop", (4, 6), _logged),
    Check("forwarding-on", "the gateway forwards", (4, 6), _forwarding),
    Check("submission-auth-tls", "submission requires AUTH and TLS", (None,),
          _submission_auth_tls),
    Check("fail2ban-jails", "fail2ban jails active", (None,), _fail2ban),
)


def check(check_id: str) -> Check:
    for c in CHECKS:
        if c.id == check_id:
            return c
    raise KeyError(check_id)


def run_all(facts: Facts, addressing: Addressing) -> list[Finding]:
    return [c(facts, addressing, family) for c in CHECKS for family in c.families]
