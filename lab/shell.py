"""`port25lab shell`: a scenario's lab kept up for exploring and teaching.

Mininet's CLI (`ROLE COMMAND` runs a command in a node) with the lab's own commands:
a probe sent as `verify` sends it, with its verdict and evidence; a router's loaded
policy with its counters and the lines they came from; its firewall log; the lab's
mail accounts; a ping between every two nodes over both families. The commands are
plain methods of `Teaching` over a `LabView`, so that a fake lab can stand in.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO

from lab.engine.labview import LabView
from lab.engine.probing import probe_once
from lab.engine.verify import source_ports
from lab.errors import LabFailure
from lab.evidence.firewall_log import read_records
from lab.model.results import Result
from lab.model.scenario import Expectation, Scenario
from lab.model.site import Node
from lab.model.verdict import Verdict
from lab.netfilter.family import family as ip_family
from lab.netfilter.rules import Rule
from probes.registry import PROBES

if TYPE_CHECKING:
    from lab.runtime.lab import Lab

USAGE = {
    "probe": "probe SRC DST PROBE [-4|-6] [VARIANT]",
    "rules": "rules ROUTER",
    "logs": "logs ROUTER",
}
HELP = """\
The lab's own commands:
  probe SRC DST PROBE [-4|-6] [VARIANT]
      send PROBE from role SRC to role DST over IPv4 (-4, the default) or IPv6 (-6),
      exactly as `port25lab verify` sends it, and show its verdict and evidence: what
      the sender saw, where the packet arrived, the rule that decided (with the line
      of the policy file it came from) and what the scenario expects of it.
      `port25lab list --probes` lists the probes and their variants (teredo and
      tunnel6in4 need one: `probe client1 remote-mx teredo plain`).
  rules ROUTER     the router's loaded rules, with their packet counters and the line of
                   the policy file each came from (IPv4 and IPv6)
  logs ROUTER      what the router's firewall logged (the rules with -j LOG, run as NFLOG)
  accounts         the mail accounts of the lab's mail server, with their passwords
  pingall          ping between every two nodes, over IPv4 and IPv6
  ROLE COMMAND     run COMMAND in that node, e.g. `gw iptables -L FORWARD -n -v`
  exit             tear the lab down and leave
"""
LOG_LINES = 30  # the most of a firewall log `logs` shows: the latest records


class Unusable(ValueError):
    """A command line the shell cannot run: one line saying why and what would do."""


class Teaching:
    """The shell's own commands over a running lab; what they print goes to `out`."""

    def __init__(self, lab: LabView, scenario: Scenario, out: TextIO = sys.stdout) -> None:
        self.lab = lab
        self.scenario = scenario
        self.out = out
        self.ports: Iterator[int] = source_ports()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self, command: str, line: str) -> None:
        """Run one of the lab's commands; a mistake or a lab failure is one line."""
        try:
            getattr(self, command)(line)
        except Unusable as exc:
            self.say(f"{command}: {exc}")
        except LabFailure as exc:
            self.say(f"{command}: the lab failed: {exc}")

    # --- the banner ---------------------------------------------------------------------

    def banner(self) -> str:
        """The nodes with their roles and addresses, where the logs are, the commands."""
        site = self.lab.site
        width = max(len(n.name) for n in site.nodes)
        lines = ["nodes (* carries the policy):"]
        for node in site.nodes:
            addresses = "; ".join(f"{i.name} {' '.join(i.addresses)}" for i in node.interfaces)
            mark = "*" if node.policy else " "
            lines.append(f"  {node.name:<{width}} {mark} {node.role:<9}  {addresses}")
        lines.append(f"logs: under {self.lab.run.folder}")
        for router, path in self.lab.firewall_logs.items():
            lines.append(f"  {router}'s firewall log: {path} (`logs {router}`)")
        for role, inst in self.lab.mail.items():
            lines.append(f"  {role}'s mail log: {inst.log}")
        lines.append("commands: probe, rules, logs, accounts, pingall, help (`help` explains "
                     "them); ROLE COMMAND runs a command in a node")
        return "\n".join(lines)

    # --- probe --------------------------------------------------------------------------

    def probe(self, line: str) -> None:
        """Send a probe as `verify` does and show its verdict and evidence."""
        expectation, expected = self.expectation(line)
        self.lab.start_agents([expectation.source])
        result = probe_once(self.lab, expectation, next(self.ports))
        self.show(result, expected)

    def expectation(self, line: str) -> tuple[Expectation, Verdict | None]:
        """The probe a command line asks for, and the verdict the scenario expects of it."""
        words = line.split()
        family = 6 if "-6" in words else 4
        words = [w for w in words if w not in ("-4", "-6")]
        for word in words:
            if word.startswith("-"):
                raise Unusable(f"no option {word!r}: -4 (IPv4, the default) or -6 (IPv6)")
        if len(words) not in (3, 4):
            raise Unusable(f"usage: {USAGE['probe']}")
        source, target, name, *rest = words
        roles = self.lab.site.role_names
        for role in (source, target):
            if role not in roles:
                raise Unusable(f"no role {role!r} in this lab (roles: {', '.join(roles)})")
        if name not in PROBES:
            raise Unusable(f"no probe {name!r} (probes: {', '.join(PROBES)})")
        probe = PROBES[name]
        variant = rest[0] if rest else ""
        if probe.variants and variant not in probe.variants:
            said = f"no variant {variant!r} of {name}" if variant else f"{name} needs a VARIANT"
            raise Unusable(f"{said} (variants: {', '.join(probe.variants)})")
        if variant and not probe.variants:
            raise Unusable(f"{name} has no variants: usage: {USAGE['probe']}")
        if probe.tunnel is not None and family == 6:
            raise Unusable(f"{name} carries IPv6 inside IPv4: it is sent over IPv4 (-4)")
        expected = next((e.verdict for e in self.scenario.expectations
                         if (e.source, e.target, e.probe, e.family, e.variant, e.after)
                         == (source, target, name, family, variant, "")), None)
        # the expectation's verdict is only what the result is compared with
        return Expectation(source, target, name, family, expected or Verdict.ERROR,
                           variant), expected

    def show(self, r: Result, expected: Verdict | None) -> None:
        probe = f"{r.probe}:{r.variant}" if r.variant else r.probe
        self.say(f"{r.source} → {r.target} {probe}/v{r.family}: {r.observed}")
        self.say(f"  evidence: {r.detail}")
        deciding = r.deciding_rule
        if r.rule:
            where = f"{deciding.source}: " if deciding is not None and deciding.source else ""
            self.say(f"  decided by {where}{r.rule}")
        for hit in r.evidence.rule_hits:
            where = f"{hit.rule.source}: " if hit.rule.source else ""
            self.say(f"  rule hit ({hit.packets} packet{'s' if hit.packets != 1 else ''}): "
                     f"{where}{hit.rule.cite()}")
        if expected is None:
            self.say("  the scenario expects nothing of this probe")
        else:
            held = "as expected" if r.observed == expected else "NOT as expected"
            self.say(f"  the scenario expects {expected}: {held}")

    # --- rules and logs -----------------------------------------------------------------

    def router(self, line: str, command: str) -> str:
        words = line.split()
        routers = self.lab.site.routers
        if len(words) != 1:
            raise Unusable(f"usage: {USAGE[command]} (routers: {', '.join(routers)})")
        if words[0] not in routers:
            raise Unusable(f"no router {words[0]!r} in this lab (routers: "
                           f"{', '.join(routers)})")
        return words[0]

    def rules(self, line: str) -> None:
        """The router's loaded rules, with packet counters and their policy file lines."""
        router = self.router(line, "rules")
        for family in (4, 6):
            mine = [r for r in self.lab.rules(family) if r.router == router]
            self.say(f"{router}, IPv{family} ({ip_family(family).tool}), packets counted "
                     "since the lab booted:")
            chains: dict[tuple[str, str], list[Rule]] = {}
            for rule in mine:
                chains.setdefault((rule.table, rule.chain), []).append(rule)
            width = max((len(r.source) for r in mine), default=0)
            shown = False
            for (table, chain), rules in chains.items():
                policy = next((r for r in rules if r.is_policy), None)
                listed = [r for r in rules if not r.is_policy]
                if not listed and (policy is None or policy.target == "ACCEPT"):
                    continue  # an empty chain that lets all through: nothing to read
                shown = True
                said = (f" (policy {policy.target}, {policy.packets} packets)"
                        if policy is not None else "")
                self.say(f"  -t {table} {chain}{said}")
                for r in listed:
                    self.say(f"    #{r.position:<3}{r.packets:>7}  {r.source:<{width}}  "
                             f"-A {r.chain} {r.text}")
            if not shown:
                self.say("  no rules: every chain is empty and lets all through")

    def logs(self, line: str) -> None:
        """What the router's firewall logged, the latest records last."""
        router = self.router(line, "logs")
        path = self.lab.firewall_logs.get(router)
        if path is None:
            raise Unusable(f"{router} keeps no firewall log")
        records = list(read_records([path]))
        if not records:
            self.say(f"{path}: nothing logged yet (a rule with -j LOG writes here)")
            return
        shown = records[-LOG_LINES:]
        self.say(f"{path}: {len(records)} records"
                 + (f", the last {len(shown)}:" if len(shown) < len(records) else ":"))
        owner = self.lab.site.owner_of
        for rec in shown:
            src, dst = str(rec.get("src_ip", "?")), str(rec.get("dest_ip", "?"))
            protocol = {6: "tcp", 17: "udp", 41: "6in4", 1: "icmp", 58: "icmpv6"}.get(
                rec.get("ip.protocol") or rec.get("ip6.nexthdr") or -1, "ip")
            who = f"{owner(src) or '?'} → {owner(dst) or '?'}"
            prefix = f" {rec['oob.prefix']}" if rec.get("oob.prefix") else ""
            self.say(f"  {rec.get('timestamp', '?')}  {rec.get('oob.in', '')}→"
                     f"{rec.get('oob.out', '')}  {protocol} {_at(src, rec.get('src_port'))} → "
                     f"{_at(dst, rec.get('dest_port'))}  ({who}){prefix}")

    # --- accounts and ping --------------------------------------------------------------

    def accounts(self, line: str) -> None:
        """The mail accounts of the lab's mail servers, with their passwords (lab data)."""
        if line.strip():
            raise Unusable("takes no arguments")
        servers = [s for s in self.lab.mail_servers.values() if s.users]
        if not servers:
            self.say("this lab's mail servers have no accounts")
        for server in servers:
            self.say(f"{server.role} ({server.hostname}; ports "
                     f"{', '.join(map(str, server.ports))}): log in on 587 after STARTTLS "
                     "or on 465 (TLS) as")
            width = max(len(u.name) for u in server.users)
            for user in server.users:
                self.say(f"  {user.name:<{width}}  {user.password}")
        self.say("(lab passwords, not secrets; one is trivial on purpose, for the "
                 "password-guessing scenarios)")

    def pingall(self, line: str) -> None:
        """One ping from every node to every other's address, over IPv4 and IPv6."""
        if line.strip():
            raise Unusable("takes no arguments")
        nodes = [n for n in self.lab.site.nodes if n.addresses()]
        pairs = [(family, a, b) for family in (4, 6) for a, b in itertools.permutations(nodes, 2)
                 if _has(a, family) and _has(b, family)]

        def ping(pair: tuple[int, Node, Node]) -> bool:
            family, a, b = pair
            status, _, _ = self.lab.exec(a.name, ["ping", f"-{family}", "-c1", "-W1", "-n",
                                                  b.address(family)], timeout=10)
            return status == 0

        with ThreadPoolExecutor(max_workers=8) as pool:  # a dropped ping waits 1 s
            answered = dict(zip(pairs, pool.map(ping, pairs), strict=True))
        for family in (4, 6):
            self.say(f"*** IPv{family}: X where no answer came")
            for a in nodes:
                row = [b.name if answered[family, a, b] else "X"
                       for b in nodes if (family, a, b) in answered]
                if row:
                    self.say(f"{a.name} -> {' '.join(row)}")
        lost = sum(not ok for ok in answered.values())
        self.say(f"*** Results: {round(100 * lost / len(answered)) if answered else 0}% dropped "
                 f"({len(answered) - lost}/{len(answered)} received)")


def _at(address: str, port: object) -> str:
    """An address with its port, as one writes it: `[2001:db8::1]:25` for IPv6."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _has(node: Node, family: int) -> bool:
    try:
        node.address(family)
    except LookupError:
        return False
    return True


def open_shell(lab: Lab, scenario: Scenario) -> None:
    """Mininet's CLI on the lab's network, with the lab's commands, until `exit`."""
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    teaching = Teaching(lab, scenario)

    class LabCLI(CLI):  # type: ignore[misc]
        prompt = "port25lab> "
        identchars = CLI.identchars + "-"  # so that `remote-mx ping …` names a node

        def do_probe(self, line: str) -> None:
            """probe SRC DST PROBE [-4|-6] [VARIANT]: a probe as `verify` sends it."""
            teaching.run("probe", line)

        def do_rules(self, line: str) -> None:
            """rules ROUTER: the loaded rules, their counters and policy file lines."""
            teaching.run("rules", line)

        def do_logs(self, line: str) -> None:
            """logs ROUTER: what the router's firewall logged."""
            teaching.run("logs", line)

        def do_accounts(self, line: str) -> None:
            """accounts: the lab's mail accounts and their passwords."""
            teaching.run("accounts", line)

        def do_pingall(self, line: str) -> None:
            """pingall: ping between every two nodes, over IPv4 and IPv6."""
            teaching.run("pingall", line)

        def do_help(self, line: str) -> None:
            if not line:
                teaching.say(HELP)
            super().do_help(line)

    print(teaching.banner(), file=sys.stderr, flush=True)
    setLogLevel("output")  # the CLI prints what commands print at this level
    LabCLI(lab.net)
    setLogLevel("error")
