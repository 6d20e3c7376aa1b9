"""Reports of verify runs: the terminal matrix, JSON and JUnit XML.

Each names the site a scenario ran on (its name, and its file unless built in) and
the policy files each router ran. A row the site gives no path (a node without an
address of its family) is `not applicable`: `n/a` in the matrix, `"passed": null`
in JSON, `<skipped>` in JUnit; it counts neither way, and a scenario passes when
every applicable row holds (and one at least is applicable).

The terminal report is built as rich `Text`: its styles are shown as colour on a
terminal, and its plain text (what `matrix` returns) is what a pipe or a file gets.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from lab.model.evidence import Evidence
from lab.model.evidence_items import as_text
from lab.model.record import RunRecord, ScenarioRecord, iso
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError
from probes.registry import GUESS, PROBES

if TYPE_CHECKING:  # the scenario as written: importing it would load the built-in sites
    from lab.model.scenario import Scenario
    from lab.model.site import Site
    from lab.netfilter.script import Command

def site_label(scenario: ScenarioResult) -> str:
    """The site as a report names it: `screened-host`, or `campus: campus.yaml`."""
    return (f"{scenario.topology}: {scenario.site_file}" if scenario.site_file
            else scenario.topology)


# The terminal's styles (rich style names), one per meaning
GOOD, BAD, WRONG, CAUSE, REF, SOURCE, QUIET = (
    "green", "bold red", "red", "yellow", "cyan", "bold", "dim")


def matrix(scenario: ScenarioResult, spec: Scenario | None = None) -> str:
    """One scenario as a table: a row per (source, target, probe), a column per family.

    `spec`, the scenario as written, lets the summary name the policy line that did
    not load as the cause of failing rows (see `cause`).
    """
    return styled(scenario, spec).plain


def styled(scenario: ScenarioResult, spec: Scenario | None = None) -> Text:
    """The matrix with its styles: what a terminal shows in colour."""
    status = Text("PASS", GOOD) if scenario.passed else Text("FAIL", BAD)
    skipped = len(scenario.not_applicable)
    if skipped:
        status.append(f" ({skipped} of {len(scenario.results)} rows not applicable)")
    lines = [Text.assemble((f"== {scenario.name} [{site_label(scenario)}] ", "bold"), status)]
    if scenario.rules:
        lines.append(Text("   rules: " + "; ".join(
            f"{router}: {', '.join(files) or '(none)'}"
            for router, files in scenario.rules.items())))
    if scenario.lab_error:
        lines.append(Text(f"   lab error: {scenario.lab_error}", BAD))
    for error in scenario.load_errors:
        lines.append(Text(f"   load error: {error}", BAD))
    for note in scenario.notes:
        lines.append(Text(f"   note: {note}", QUIET))
    rules: dict[str, str] = {}  # the deciding rules as cited → their source lines
    rows: dict[tuple[str, str, str], dict[int, Result]] = {}
    for r in scenario.results:
        rows.setdefault((r.source, r.target, label(r)), {})[r.family] = r
    header = ["source", "target", "probe", "IPv4", "IPv6"]
    table: list[list[Text]] = [[Text(h, QUIET) for h in header]]
    for (source, target, probe), by_family in rows.items():
        cells = []
        for family in (4, 6):
            found = by_family.get(family)
            if found is None:
                cells.append(Text("-", QUIET))
                continue
            r = found
            if not r.applicable:
                cells.append(Text("n/a", QUIET))
                continue
            cell = Text(str(r.observed), GOOD if r.passed else BAD)
            if r.rule:
                rules.setdefault(r.rule, r.rule_source)
                cell.append(f" [{list(rules).index(r.rule) + 1}]", REF)
            if r.failed:
                cell.append(f" ✗ (want {r.expected})", BAD)
            cells.append(cell)
        table.append([Text(source), Text(target), Text(probe), *cells])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        line = Text("   ")
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            line.append("  " if i else "")
            line.append_text(cell)
            line.append(" " * (width - len(cell)))
        line.rstrip()
        lines.append(line)
    if rules:
        lines.append(Text("   deciding rules:"))
        for n, (rule, source) in enumerate(rules.items(), 1):
            lines.append(Text.assemble("     ", (f"[{n}]", REF), f" {rule}"))
            if source:  # under the rule: where she finds it in her own file
                lines.append(Text.assemble("         from ", (source, SOURCE)))
    # where traffic went instead: the answering host for diversions, the reply for refusals
    rerouted = [r for r in scenario.results
                if r.passed and r.observed in (Verdict.DIVERTED, Verdict.REFUSED)]
    if rerouted:
        lines.append(Text("   diverted and refused:"))
        lines += [Text(f"     {r.source} → {r.target} {r.probe}/v{r.family}: {rerouted_to(r)}")
                  for r in rerouted]
    guessed = [r for r in scenario.results if PROBES[r.probe].kind is GUESS]
    if guessed:
        lines.append(Text("   password guessing:"))
        lines += [Text(f"     {r.source} → {r.target} {label(r)}/v{r.family}: {r.detail}")
                  for r in guessed]
    if skipped:
        reasons = list(dict.fromkeys(r.detail for r in scenario.not_applicable))
        lines.append(Text(f"   not applicable (not probed, neither passed nor failed): "
                          f"{'; '.join(reasons)}", QUIET))
    lines += _marked(suspect_lines(scenario))
    lines += _marked(trap_lines(scenario))
    why = cause(scenario, spec) if spec is not None else None
    lines += mismatch_lines(scenario, list(rules), why)
    lines.append(Text("   ").append_text(_outcome(scenario, why)))
    return Text("\n").join(lines)


def mismatch_lines(scenario: ScenarioResult, rules: Sequence[str],
                   found: Cause | None = None) -> list[Text]:
    """The evidence of each result not as expected, under the policy line that decided it.

    `rules` are the deciding rules as the matrix numbers them; results that no rule
    decided are under the line that did not load where `found` says they are its kind.
    """
    groups: dict[str, tuple[Text, list[Result]]] = {}
    for r in scenario.results:
        if r.failed:
            header = _decided_by(r, rules, found)
            groups.setdefault(header.plain, (header, []))[1].append(r)
    if not groups:
        return []
    lines = [Text("   evidence of mismatches:")]
    for header, results in groups.values():
        lines.append(header)
        lines += [Text.assemble(f"       {r.source} → {r.target} {label(r)}/v{r.family}: ",
                                (r.detail, WRONG)) for r in results]
    return lines


def _decided_by(r: Result, rules: Sequence[str], found: Cause | None) -> Text:
    if r.rule:
        ref = (f"[{rules.index(r.rule) + 1}]", REF)
        if r.rule_source:
            return Text.assemble("     decided by ", (r.rule_source, SOURCE), " ", ref, ":")
        return Text.assemble("     decided by ", ref, ", a rule of no policy file:")
    if found is not None and r in found.explains:
        return Text.assemble("     no rule decided; ", (_where(found.error), SOURCE),
                             ", written for them, did not load:")
    return Text("     no rule decided:")


def _marked(lines: Iterable[str]) -> list[Text]:
    """Lines that keep the terminal's colours, with ✓ and ✗ marked."""
    styled_lines = []
    for line in lines:
        text = Text(line)
        text.highlight_words(["✓"], GOOD)
        text.highlight_regex(r"✗ \(want [^)]*\)", BAD)
        styled_lines.append(text)
    return styled_lines


def rerouted_to(r: Result) -> str:
    """Where a diverted or refused probe went: who answered, what it refused, where the
    mail went."""
    e = r.evidence
    if PROBES[r.probe].kind is GUESS or e.addressed is None:
        return r.detail  # the guessing ladder's own sentence says it all
    elsewhere = e.elsewhere
    if e.arrived or not elsewhere:
        parts = [f"{e.addressed} saw the SYN"]
    else:
        parts = [f"answered by {elsewhere[0].role}:{elsewhere[0].dport} instead of "
                 f"{e.addressed}"]
    if r.observed == Verdict.REFUSED and e.smtp is not None and e.smtp.refusal is not None:
        parts.append(f"refused: {e.smtp.refusal}")
    if e.delivery is not None and e.delivery.delivered:
        parts.append(e.delivery.describe())
    return "; ".join(parts)


def label(r: Result) -> str:
    """A probe as the matrix names it: with its variant, and the ban it waited for."""
    probe = f"{r.probe}:{r.variant}" if r.variant else r.probe
    return f"{probe} (after {r.after})" if r.after else probe


def trap_lines(scenario: ScenarioResult) -> list[str]:
    """What the traps banned, from where the ban applies, how fast, for how long."""
    lines = []
    if scenario.bans:
        lines.append("   bans (fail2ban):")
    for b in scenario.bans:
        who = scenario.owners.get(b.address, "?")
        reaction = (f", {b.reaction_ms:.0f} ms after {b.fired_by}"
                    if b.reaction_ms is not None else "")
        lifted = (f", lifted after {b.lifted_after_s} s" if b.lifted_after_s is not None
                  else ", still in force at the end")
        lines.append(f"     {who} ({b.address}) banned on {b.node} in {b.chain}{reaction}"
                     f"{lifted}")
        hooks = b.hooked or ("no built-in chain jumps to it",)
        lines += [f"       reached from {h}" for h in hooks]
    if scenario.weak_accounts:
        lines.append("   weak accounts (a trivial password was accepted): "
                     + ", ".join(scenario.weak_accounts))
    return lines


def suspect_lines(scenario: ScenarioResult) -> list[str]:
    """The firewall logs' suspects: internal hosts that tried 25/465 of the world."""
    check = ""
    if scenario.expected_suspects is not None:
        want = ", ".join(scenario.expected_suspects) or "none"
        check = " ✓" if scenario.suspects_match else f" ✗ (want {want})"
    if not scenario.suspects:
        return [f"   suspects (firewall logs): none{check}"]
    lines = [f"   suspects (firewall logs):{check}"]
    for s in scenario.suspects:
        lines.append(f"     {s.role} ({s.address}): {s.count} attempts, ports "
                     f"{', '.join(map(str, s.ports))}, to {', '.join(s.destinations)}, "
                     f"{s.first} … {s.last}")
    return lines


def summary(scenarios: Sequence[ScenarioResult]) -> str:
    passed = sum(s.passed for s in scenarios)
    return f"{passed} of {len(scenarios)} scenarios pass"


def totals(scenarios: Sequence[ScenarioResult], seconds: float | None = None) -> str:
    """The run in one line: probes, those not as expected, lines that did not load, labs."""
    probes = sum(len(s.results) for s in scenarios)
    wrong = sum(r.failed for s in scenarios for r in s.results)
    parts = [f"total: {probes} probes in {len(scenarios)} scenario"
             f"{'s' if len(scenarios) != 1 else ''}, {wrong} not as expected"]
    unloaded = sum(len(s.load_errors) for s in scenarios)
    if unloaded:
        parts.append(f"{unloaded} policy line{'s' if unloaded > 1 else ''} did not load")
    failed = sum(s.lab_error is not None for s in scenarios)
    if failed:
        parts.append(f"{failed} lab{'s' if failed > 1 else ''} failed")
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return ", ".join(parts)


def outcome(scenario: ScenarioResult, spec: Scenario | None = None) -> Text:
    """The scenario in one line: PASS or FAIL, how many probes were wrong, and why.

    A line that did not load is named as the cause only as `cause` decides it.
    """
    return _outcome(scenario, cause(scenario, spec) if spec is not None else None)


def _outcome(scenario: ScenarioResult, found: Cause | None) -> Text:
    results = scenario.results
    wrong = [r for r in results if r.failed]
    line = Text.assemble(("PASS", GOOD) if scenario.passed else ("FAIL", BAD), " — ")
    if scenario.lab_error is not None:
        line.append(f"the lab failed ({scenario.lab_error}) after {len(results)} probes", BAD)
        if wrong:
            line.append(f", {len(wrong)} of them not as expected")
    elif not results:
        line.append("no probe ran", BAD)
    elif wrong:
        line.append(f"{len(wrong)} of {len(results)} probes not as expected")
    else:
        line.append(f"{len(results)} of {len(results)} probes as expected")
    errors = scenario.load_errors
    if found is not None:
        whom = "cause" if len(found.explains) == len(wrong) else (
            f"cause of {len(found.explains)} ({found.aim})")
        line.append(f"; {whom}: ")
        line.append(f"{_unloaded(found.error)}", CAUSE)
        others = [r for r in wrong if r not in found.explains]
        if others:
            probes = list(dict.fromkeys(label(r) for r in others))
            named = ", ".join(probes[:3]) + (", …" if len(probes) > 3 else "")
            line.append(f"; {len(others)} others ({named})")
    elif len(errors) == 1:
        line.append("; " if wrong or scenario.lab_error else ", but ")
        line.append(_unloaded(errors[0]), CAUSE)
    elif errors:
        named = ", ".join(map(_where, errors))
        line.append("; " if wrong or scenario.lab_error else ", but ")
        line.append(f"{len(errors)} policy lines did not load ({named})", CAUSE)
    if not scenario.suspects_match:
        logged = ", ".join(sorted({s.role for s in scenario.suspects})) or "nobody"
        want = ", ".join(scenario.expected_suspects or ()) or "nobody"
        line.append(f"; the firewall logs name {logged}, expected {want}", BAD)
    return line


def _where(error: LoadError) -> str:
    return f"{error.file}:{error.line}" if error.line else error.file


def _unloaded(error: LoadError) -> str:
    return f"{_where(error)} did not load ({error.message})"


@dataclass(frozen=True)
class Aim:
    """What a policy line was written to decide, as far as its words can be read."""

    family: int
    verdict: Verdict  # what the line would have made of the packets it matches
    protocol: str | None  # "tcp", "udp" or "41"; None: any
    ports: tuple[tuple[int, int], ...] | None  # destination port ranges; None: any
    sources: tuple[str, ...] | None  # source networks; None: any

    def __str__(self) -> str:
        ports = "" if self.ports is None else " port " + ",".join(
            str(a) if a == b else f"{a}:{b}" for a, b in self.ports)
        protocol = {"41": "protocol 41", None: "any protocol"}.get(self.protocol,
                                                                 self.protocol or "")
        return f"IPv{self.family} {protocol}{ports} to be {self.verdict}"

    def takes(self, r: Result, site: Site) -> bool:
        """Whether a failing result is of the kind the line was written for."""
        probe = PROBES[r.probe]
        if (not r.failed or r.family != self.family or r.expected != self.verdict
                or probe.via_submission_server):  # the mail's last leg starts elsewhere
            return False
        protocol = {"udp": "udp", "6in4": "41"}.get(probe.far_side or "tcp", "tcp")
        if self.protocol is not None and protocol != self.protocol:
            return False
        variant = probe.variants.get(r.variant)
        port = variant.udp_port if variant is not None and protocol == "udp" else probe.port
        if self.ports is not None and not any(a <= port <= b for a, b in self.ports):
            return False
        if self.sources is None:
            return True
        try:
            address = ip_address(site.role(r.source).address(r.family))
        except LookupError:
            return False
        return any(address in ip_network(n, strict=False) for n in self.sources)


@dataclass(frozen=True)
class Cause:
    """The one policy line that did not load, and the failing results it explains."""

    error: LoadError
    aim: Aim
    explains: tuple[Result, ...]


def cause(scenario: ScenarioResult, spec: Scenario) -> Cause | None:
    """The load error that explains failing results, decided conservatively.

    Only when it is the scenario's one error (one line did not load, the lab ran) and
    that line is a command of the scenario's policy whose words can be read (`aim`): it
    explains the failing results of its family whose expected verdict is the one the line
    decides, sent with the line's protocol, to one of its destination ports and from one
    of its source networks where the line names them, and no rule decided (a result that
    a loaded rule decided is that rule's). What the line says beyond that (interfaces,
    destinations, u32 payload tests) is not read: it could only narrow the match. So the
    results it explains are of the kind the line was written for; whether the line,
    loaded, would have caught each of them only loading it can tell.
    """
    if len(scenario.load_errors) != 1 or scenario.lab_error is not None:
        return None
    (error,) = scenario.load_errors
    command = next((c for files in spec.policies.values() for p in files for c in p.commands
                    if (c.file, c.line) == (error.file, error.line)), None)
    found = aim(command) if command is not None else None
    if found is None:
        return None
    site = spec.site
    explains = tuple(r for r in scenario.results if not r.rule and found.takes(r, site))
    return Cause(error, found, explains) if explains else None


VERDICTS = {"DROP": Verdict.BLOCKED, "REJECT": Verdict.BLOCKED, "ACCEPT": Verdict.ALLOWED,
            "DNAT": Verdict.DIVERTED, "REDIRECT": Verdict.DIVERTED}
PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "41": "41", "ipv6": "41"}
ANY_PROTOCOL = ("all", "0")
DESTINATION_PORTS = ("--dport", "--dports", "--destination-port", "--destination-ports")
UNREAD = ("!", "--sport", "--sports", "--source-port", "--source-ports", "-g", "--goto")
# the chains forwarded packets pass (a probe crosses routers, it never ends in one)
FORWARDED = ("FORWARD", "PREROUTING", "POSTROUTING")


def aim(command: Command) -> Aim | None:
    """What an iptables command was written to decide, or None where it cannot be told.

    Read: the chain, the target (or the chain's policy), the table, `-p`, `-s` and the
    destination ports. A negation, source ports, a protocol of another name or a chain
    that forwarded packets do not pass (INPUT, OUTPUT, a chain of her own: what jumps to
    it is not followed) make it unreadable.
    """
    words = iter(command.argv[1:])
    target = table = chain = ""
    protocol: str | None = None
    ports: tuple[tuple[int, int], ...] | None = None
    sources: tuple[str, ...] | None = None
    for word in words:
        if word in UNREAD:
            return None
        if word in ("-j", "--jump"):
            target = next(words, "")
        elif word in ("-A", "--append", "-I", "--insert", "-R", "--replace"):
            chain = next(words, "")
        elif word in ("-P", "--policy"):
            chain = next(words, "")
            target = next(words, "")
        elif word in ("-t", "--table"):
            table = next(words, "")
        elif word in ("-p", "--protocol"):
            name = next(words, "").lower()
            if name not in (*PROTOCOLS, *ANY_PROTOCOL):
                return None
            protocol = PROTOCOLS.get(name)
        elif word in DESTINATION_PORTS:
            ports = _port_ranges(next(words, ""))
            if ports is None:
                return None
        elif word in ("-s", "--source", "--src"):
            sources = tuple(next(words, "").split(","))
            try:
                for network in sources:
                    ip_network(network, strict=False)
            except ValueError:  # a host name: not read
                return None
    verdict = VERDICTS.get(target)
    if verdict is None or chain not in FORWARDED or (
            verdict is Verdict.ALLOWED and table not in ("", "filter")):
        return None
    return Aim(command.family, verdict, protocol, ports, sources)


def _port_ranges(value: str) -> tuple[tuple[int, int], ...] | None:
    ranges = []
    for part in value.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or not (high or low).isdigit():
            return None
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


def as_json(scenarios: Sequence[ScenarioResult], run: RunRecord | None = None) -> dict[str, Any]:
    """The results; with the run's record also its version, start (UTC), command and time,
    and each scenario's site, rules files, start and time."""
    data = {"scenarios": [{
        "name": s.name,
        "topology": s.topology,
        "site": {"name": s.topology, "file": s.site_file or None},
        "rules": {router: list(files) for router, files in s.rules.items()},
        **_record_json(run.scenario(n) if run is not None else None),
        "passed": s.passed,
        "boot_ms": s.boot_ms,
        "not_applicable": len(s.not_applicable),
        "lab_error": s.lab_error,
        "notes": list(s.notes),
        "suspects": [{"host": x.role, "address": x.address, "count": x.count,
                      "ports": list(x.ports), "destinations": list(x.destinations),
                      "first": x.first, "last": x.last} for x in s.suspects],
        "expected_suspects": (None if s.expected_suspects is None
                              else list(s.expected_suspects)),
        "load_errors": [{"file": e.file, "line": e.line, "message": e.message}
                        for e in s.load_errors],
        "bans": [{"host": s.owners.get(b.address), "address": b.address, "node": b.node,
                  "family": b.family, "chain": b.chain, "rule": b.rule,
                  "reached_from": list(b.hooked), "reaction_ms": b.reaction_ms,
                  "fired_by": b.fired_by or None, "lifted_after_s": b.lifted_after_s}
                 for b in s.bans],
        "weak_accounts": list(s.weak_accounts),
        "results": [{
            "source": r.source, "target": r.target, "probe": r.probe,
            "variant": r.variant or None, "after": r.after or None, "family": r.family,
            "expected": str(r.expected), "observed": str(r.observed), "rule": r.rule,
            "rule_source": r.rule_source or None, "detail": r.detail,
            "passed": r.passed if r.applicable else None,
            "status": status(r), "elapsed_ms": r.elapsed_ms,
            "wall_ms": r.wall_ms, "evidence": evidence_json(r.evidence),
        } for r in s.results],
    } for n, s in enumerate(scenarios)]}
    if run is None:
        return data
    return {"version": run.version, "started": iso(run.started), "command": list(run.command),
            "duration_s": run.seconds, **data}


def _record_json(record: ScenarioRecord | None) -> dict[str, Any]:
    """A scenario's start and time, as its run recorded them (its site and rules files
    come with its result)."""
    if record is None:
        return {}
    return {"started": iso(record.started) if record.started else None,
            "duration_s": record.seconds}


def status(r: Result) -> str:
    """A row's status: passed, failed, or not applicable."""
    return "not applicable" if not r.applicable else "passed" if r.passed else "failed"


def evidence_json(e: Evidence) -> dict[str, Any]:
    """One result's evidence, field by field (what `detail` says in words)."""
    return {
        "addressed": None if e.addressed is None else {
            "role": e.addressed.role, "address": e.addressed.address, "port": e.addressed.port},
        "sender": None if e.sender is None else {
            "reply": e.sender.reply, "source": e.sender.source,
            "source_port": e.sender.source_port, "ttl": e.sender.ttl, "icmp": e.sender.icmp,
            "banner": e.sender.banner, "elapsed_ms": e.sender.elapsed_ms},
        "far_side": [{"role": s.role, "address": s.dst, "port": s.dport,
                      "carried": s.inner or None} for s in e.far_side],
        "rule_hits": [{"rule": h.rule.cite(), "source": h.rule.source or None,
                       "target": h.rule.target, "packets": h.packets} for h in e.rule_hits],
        "smtp": None if e.smtp is None else {
            "banner": e.smtp.banner, "ehlo_name": e.smtp.ehlo_name,
            "tls_subject": e.smtp.tls_subject, "auth_before_tls": e.smtp.auth_before_tls,
            "starttls_offered": e.smtp.starttls_offered,
            "steps": [{"command": c, "code": code, "text": text}
                      for c, code, text in e.smtp.steps],
            "refusal": e.smtp.refusal, "queue_id": e.smtp.queue_id, "error": e.smtp.error},
        "delivery": None if e.delivery is None else {
            "delivered": e.delivery.delivered, "queue_id": e.delivery.queue_id,
            "relay": e.delivery.relay if e.delivery.via_relay else None,
            "mailbox": e.delivery.mailbox, "status": e.delivery.status,
            "stopped_by": (None if e.delivery.stopped_by is None
                           else e.delivery.stopped_by.cite())},
        "guesses": [{"user": g.user, "index": g.index, "code": g.code, "error": g.error or None}
                    for g in e.guesses],
        "ban": None if e.ban is None else {
            "address": e.ban.address, "node": e.ban.node, "rule": e.ban.rule},
    }


def write_json(path: Path, scenarios: Sequence[ScenarioResult],
               run: RunRecord | None = None) -> None:
    path.write_text(json.dumps(as_json(scenarios, run), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def write_junit(path: Path, scenarios: Sequence[ScenarioResult],
                run: RunRecord | None = None) -> None:
    write_xml(path, junit(scenarios, run))


def write_xml(path: Path, root: ET.Element) -> None:
    """Serialised first, then written: a failure cannot leave half a document."""
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def junit(scenarios: Sequence[ScenarioResult], run: RunRecord | None = None) -> ET.Element:
    """`<testsuites>`: a suite per scenario, a case per expectation (and per load, lab).

    Every suite and case has its `time` in seconds: a probe's case the probe's whole
    round, a suite its scenario's boot to teardown as the run recorded it (without a
    record: the boot and the probes), the cases that are no probe 0 (their time is the
    suite's). A suite's `<properties>` name its site and each router's rules files; a
    failure's text is its evidence, item by item.
    """
    suites = ET.Element("testsuites")
    total = 0.0
    for n, s in enumerate(scenarios):
        record = run.scenario(n) if run is not None else None
        skipped: dict[str, str] = {}  # not applicable rows: JUnit's own status for neither
        # (name, failure, seconds)
        cases: list[tuple[str, str | None, float]] = [
            ("policy loads", "; ".join(map(str, s.load_errors)) or None, 0.0)]
        if s.lab_error:
            cases.append(("lab runs", s.lab_error, 0.0))
        if s.expected_suspects is not None:
            cases.append(("firewall logs name the suspects", None if s.suspects_match else
                          f"logged {[x.role for x in s.suspects]}, "
                          f"expected {list(s.expected_suspects)}", 0.0))
        for r in s.results:
            name = f"{r.source} -> {r.target} {label(r)} IPv{r.family}"
            failure = None if not r.failed else (
                f"expected {r.expected}, observed {r.observed}: {r.detail}\n"
                f"{as_text(r, without=('in words',))}")
            cases.append((name, failure, r.wall_ms / 1000))
            if not r.applicable:
                skipped[name] = r.detail
        seconds = record.seconds if record is not None else (
            s.boot_ms / 1000 + sum(t for _, _, t in cases))
        total += seconds
        suite = ET.SubElement(suites, "testsuite", name=s.name, tests=str(len(cases)),
                              failures=str(sum(f is not None for _, f, _ in cases)),
                              skipped=str(len(skipped)), time=_seconds(seconds))
        if record is not None and record.started is not None:
            # JUnit's timestamp: ISO 8601 without a zone (this one is UTC)
            suite.set("timestamp", record.started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="site",
                      value=record.site if record is not None else s.topology)
        if record is not None and record.site_file:
            ET.SubElement(properties, "property", name="site file", value=record.site_file)
        for router, files in (record.rules.items() if record is not None else ()):
            ET.SubElement(properties, "property", name=f"rules of {router}",
                          value=", ".join(files) or "(none)")
        for name, failure, took in cases:
            case = ET.SubElement(suite, "testcase", classname=f"port25lab.{s.name}", name=name,
                                 time=_seconds(took))
            if failure is not None:
                ET.SubElement(case, "failure", message=failure.splitlines()[0][:200]
                              ).text = failure
            if name in skipped:
                ET.SubElement(case, "skipped", message=f"not applicable: {skipped[name]}"[:200])
    for key, value in (("tests", sum(int(x.get("tests", 0)) for x in suites)),
                       ("failures", sum(int(x.get("failures", 0)) for x in suites)),
                       ("time", _seconds(run.seconds if run is not None else total))):
        suites.set(key, str(value))
    return suites


def _seconds(value: float) -> str:
    """A JUnit `time`: seconds, to the millisecond."""
    return f"{value:.3f}"
