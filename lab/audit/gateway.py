"""The live-gateway audit: read over SSH, check statically, report like `verify`.

`audit()` is what `port25lab audit` runs: connect (read-only, see
`lab.audit.remote`), collect the audit facts (`lab.audit.facts`), run the compliance
checks (`lab.compliance.checks`, the same ones the pytest plugin runs).
The twin (`lab.audit.twin`) is run by the command line on top of it.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.audit import remote
from lab.audit.facts import NFT_JSON, Facts, collect, runner
from lab.compliance.addressing import Addressing, Requested
from lab.compliance.checks import Finding, run_all


@dataclass(frozen=True)
class Access:
    """How to reach the gateway (and the mail server): who, with what, trusting which keys."""

    gateway: remote.Target
    login: remote.Login
    trust: remote.Trust
    mail_server: remote.Target | None = None
    timeout: float = remote.COMMAND_TIMEOUT


@dataclass(frozen=True)
class AuditResult:
    facts: Facts
    addressing: Addressing
    findings: tuple[Finding, ...]
    elapsed_ms: float
    assumed: tuple[str, ...] = ()  # what the addressing took from the gateway, said

    @property
    def passed(self) -> bool:
        """No check failed (a check without what it needs is not a failure)."""
        return all(f.passed is not False for f in self.findings)

    @property
    def notes(self) -> list[str]:
        """What the checks assumed, and what the gateway's rules are written in (facts)."""
        facts = self.facts
        notes = list(self.assumed)
        tables = facts.nft_only_tables
        if facts.nft_state and facts.outputs.get(NFT_JSON) is not None:
            notes.append(f"nftables not read: {facts.nft_state}" + (
                "" if tables else ": the iptables rules are all the checks read"))
        if tables and facts.nft_rules is None:  # the text only: nothing the checks read
            notes.append(f"nftables has tables iptables-save does not show "
                         f"({', '.join(tables)}): the checks and the twin read the iptables "
                         "rules only; see `nft list ruleset` in the JSON report")
        elif tables:
            notes.append(f"nftables has tables iptables-save does not show "
                         f"({', '.join(tables)}): the checks read them with the iptables "
                         f"ones{_hooks(facts)}")
        return notes


def _hooks(facts: Facts) -> str:
    """The native base chains on a forwarded packet's way, as `nft list` names them."""
    rules = facts.nft_rules
    if rules is None:
        return ""
    chains = {f"{c.family} {c.table} {c.name} ({c.hook}, priority {c.priority}, policy "
              f"{c.policy})": None for version in (4, 6)
              for hook in ("prerouting", "forward", "postrouting", "input")
              for c in rules.base_chains(hook, version)
              if (c.family, c.table) not in facts.xtables}
    return f"; base chains: {', '.join(chains)}" if chains else ""


def gather(access: Access) -> Facts:
    """Connect and collect; BadInput (one line) for every refusal or missing command."""
    gateway = remote.connect(access.gateway, access.login, access.trust, access.timeout)
    mail = None
    if access.mail_server is not None:
        mail = remote.connect(access.mail_server, access.login, access.trust, access.timeout)
    try:
        return collect(runner(gateway, str(access.gateway)), str(access.gateway),
                       runner(mail, str(access.mail_server)) if mail else None,
                       str(access.mail_server) if access.mail_server else None)
    finally:
        for host in (gateway, mail):
            if host is not None:
                host.backend.client.close()


def audit(access: Access, addressing: Addressing | Requested) -> AuditResult:
    """Read the gateway and check it; what `Requested` leaves empty comes from the gateway."""
    started = time.monotonic()
    facts = gather(access)
    assumed: tuple[str, ...] = ()
    if isinstance(addressing, Requested):
        addressing, assumed = addressing.resolve(facts)
    findings = tuple(run_all(facts, addressing))
    return AuditResult(facts, addressing, findings,
                       round((time.monotonic() - started) * 1000, 1), assumed)


def table(result: AuditResult) -> str:
    """The findings as the terminal shows them: a row per check, a column per family."""
    status = "PASS" if result.passed else "FAIL"
    a = result.addressing
    lines = [f"== audit {result.facts.gateway} {status} "
             f"(read in {result.elapsed_ms / 1000:.1f} s; clients "
             f"{', '.join(a.clients) or 'unknown'}, mail server "
             f"{', '.join(a.mail_server) or 'unknown'}, inside "
             f"{', '.join(i for i in a.insides if i) or 'unknown'})"]
    if result.facts.mail_server:
        lines.append(f"   mail server read: {result.facts.mail_server}")
    lines += [f"   note: {note}" for note in result.notes]
    rows: dict[str, dict[int | None, Finding]] = {}
    for f in result.findings:
        rows.setdefault(f.check, {})[f.family] = f
    table_rows = [["check", "IPv4", "IPv6", "what"]]
    for check, by_family in rows.items():
        title = next(iter(by_family.values())).title
        if None in by_family:
            cells = [by_family[None].status, ""]
        else:
            cells = [by_family[x].status if x in by_family else "-" for x in (4, 6)]
        table_rows.append([check, *cells, title])
    widths = [max(len(r[i]) for r in table_rows) for i in range(3)]
    for row in table_rows:
        lines.append("   " + "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                         row[3]]).rstrip())
    lines.append("   evidence:")
    lines += [f"     {f.name}: {f.status}: {f.detail}" for f in result.findings]
    return "\n".join(lines)


def as_json(result: AuditResult) -> dict[str, Any]:
    a = result.addressing
    return {"gateway": result.facts.gateway, "mail_server": result.facts.mail_server,
            "passed": result.passed, "elapsed_ms": result.elapsed_ms, "notes": result.notes,
            "addressing": {"clients": list(a.clients), "mail_server": list(a.mail_server),
                           "inside": a.inside, "arrives_on": dict(a.arrives_on)},
            "findings": [{"check": f.check, "family": f.family, "title": f.title,
                          "status": f.status, "passed": f.passed, "detail": f.detail}
                         for f in result.findings],
            "facts": result.facts.as_json()}


def write_json(path: Path, result: AuditResult, twin: dict[str, Any] | None) -> None:
    data = {"audit": as_json(result), **(twin or {"scenarios": []})}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def junit_suite(result: AuditResult) -> ET.Element:
    suite = ET.Element("testsuite", name=f"audit {result.facts.gateway}",
                       tests=str(len(result.findings)),
                       failures=str(sum(f.passed is False for f in result.findings)),
                       skipped=str(sum(f.passed is None for f in result.findings)))
    for f in result.findings:
        case = ET.SubElement(suite, "testcase", classname="port25lab.audit", name=f.name)
        if f.passed is False:
            ET.SubElement(case, "failure", message=f.detail[:200]).text = f.detail
        elif f.passed is None:
            ET.SubElement(case, "skipped", message=f.detail)
    return suite


def write_junit(path: Path, result: AuditResult, twin: Sequence[Any] = ()) -> None:
    """The audit's suite, then the twin's scenarios as `verify --junit` writes them."""
    from lab import report

    suites = ET.Element("testsuites")
    suites.append(junit_suite(result))
    suites.extend(report.junit(list(twin)))
    report.write_xml(path, suites)
