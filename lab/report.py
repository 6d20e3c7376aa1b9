"""Reports of verify runs: the terminal matrix, JSON and JUnit XML.

Each names the site a scenario ran on (its name, and its file unless built in) and
the policy files each router ran. A row the site gives no path (a node without an
address of its family) is `not applicable`: `n/a` in the matrix, `"passed": null`
in JSON, `<skipped>` in JUnit; it counts neither way, and a scenario passes when
every applicable row holds (and one at least is applicable).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from lab.model.evidence import Evidence
from lab.model.evidence_items import as_text
from lab.model.record import RunRecord, ScenarioRecord, iso
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from probes.registry import GUESS, PROBES


def site_label(scenario: ScenarioResult) -> str:
    """The site as a report names it: `screened-host`, or `campus: campus.yaml`."""
    return (f"{scenario.topology}: {scenario.site_file}" if scenario.site_file
            else scenario.topology)


def matrix(scenario: ScenarioResult) -> str:
    """One scenario as a table: a row per (source, target, probe), a column per family."""
    status = "PASS" if scenario.passed else "FAIL"
    skipped = len(scenario.not_applicable)
    if skipped:
        status += f" ({skipped} of {len(scenario.results)} rows not applicable)"
    lines = [f"== {scenario.name} [{site_label(scenario)}] {status}"]
    if scenario.rules:
        lines.append("   rules: " + "; ".join(f"{router}: {', '.join(files) or '(none)'}"
                                            for router, files in scenario.rules.items()))
    if scenario.lab_error:
        lines.append(f"   lab error: {scenario.lab_error}")
    for error in scenario.load_errors:
        lines.append(f"   load error: {error}")
    for note in scenario.notes:
        lines.append(f"   note: {note}")
    rules: dict[str, str] = {}  # the deciding rules as cited → their source lines
    rows: dict[tuple[str, str, str], dict[int, Result]] = {}
    for r in scenario.results:
        rows.setdefault((r.source, r.target, label(r)), {})[r.family] = r
    header = ["source", "target", "probe", "IPv4", "IPv6"]
    table: list[list[str]] = [header]
    for (source, target, probe), by_family in rows.items():
        cells = []
        for family in (4, 6):
            found = by_family.get(family)
            if found is None:
                cells.append("-")
                continue
            r = found
            if not r.applicable:
                cells.append("n/a")
                continue
            cell = str(r.observed)
            if r.rule:
                rules.setdefault(r.rule, r.rule_source)
                cell += f" [{list(rules).index(r.rule) + 1}]"
            if r.failed:
                cell += f" ✗ (want {r.expected})"
            cells.append(cell)
        table.append([source, target, probe, *cells])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("   " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     .rstrip())
    if rules:
        lines.append("   deciding rules:")
        for n, (rule, source) in enumerate(rules.items(), 1):
            lines.append(f"     [{n}] {rule}")
            if source:  # under the rule: where she finds it in her own file
                lines.append(f"         from {source}")
    # where traffic went instead: the answering host for diversions, the reply for refusals
    rerouted = [r for r in scenario.results
                if r.passed and r.observed in (Verdict.DIVERTED, Verdict.REFUSED)]
    if rerouted:
        lines.append("   diverted and refused:")
        lines += [f"     {r.source} → {r.target} {r.probe}/v{r.family}: {rerouted_to(r)}"
                  for r in rerouted]
    guessed = [r for r in scenario.results if PROBES[r.probe].kind is GUESS]
    if guessed:
        lines.append("   password guessing:")
        lines += [f"     {r.source} → {r.target} {label(r)}/v{r.family}: {r.detail}"
                  for r in guessed]
    if skipped:
        reasons = list(dict.fromkeys(r.detail for r in scenario.not_applicable))
        lines.append(f"   not applicable (not probed, neither passed nor failed): "
                     f"{'; '.join(reasons)}")
    lines += suspect_lines(scenario)
    lines += trap_lines(scenario)
    wrong = [r for r in scenario.results if r.failed]
    if wrong:
        lines.append("   evidence of mismatches:")
        lines += [f"     {r.source} → {r.target} {label(r)}/v{r.family}: {r.detail}"
                  for r in wrong]
    return "\n".join(lines)


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
