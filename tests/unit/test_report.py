"""Reports of verify runs: JSON shape, JUnit XML and the terminal matrix."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from lab import report
from lab.model.evidence import Delivery, Endpoint, Evidence, Observation, Sighting, SmtpTranscript
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.netfilter.counters import Hit
from lab.netfilter.policy import LoadError
from lab.netfilter.rules import Rule

DROP_V4 = ("gw: iptables -t filter FORWARD#3: -A FORWARD -s 203.0.113.0/24 -i eth0 -p tcp "
           "-m multiport --dports 25,465 -j DROP")
DROP_V6 = ("gw: ip6tables -t filter FORWARD#3: -A FORWARD -s 2001:db8:b01a:70da::/64 -i eth0 "
           "-p tcp -m multiport --dports 25,465 -j DROP")
TEREDO_ERROR = LoadError("scenarios/seed-screened-block/rules.sh", 14, "Bad argument `3544'")


def _result(source: str, target: str, probe: str, family: int, expected: Verdict,
            observed: Verdict, rule: str | None = None, detail: str = "") -> Result:
    return Result(source, target, probe, family, expected, observed, rule,
                  detail or f"{observed} by the evidence", 12.5)


PASSING = ScenarioResult("fixed-screened-block", "screened-host", results=(
    _result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V4),
    _result("client1", "remote-mx", "smtp", 6, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V6),
    _result("mx", "remote-mx", "smtp", 4, Verdict.ALLOWED, Verdict.ALLOWED),
    _result("mx", "remote-mx", "smtp", 6, Verdict.ALLOWED, Verdict.ALLOWED),
))
FAILING = ScenarioResult("seed-screened-block", "screened-host",
                         load_errors=(TEREDO_ERROR,), results=(
    _result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V4),
    _result("client1", "remote-mx", "smtps", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V4),
    _result("client1", "mx", "smtps", 6, Verdict.ALLOWED, Verdict.BLOCKED, DROP_V6,
            "dropped before mx:465; sender: no answer"),
))


def test_passed_properties_the_reports_rely_on() -> None:
    assert PASSING.passed
    assert not FAILING.passed
    assert not ScenarioResult("x", "dmz").passed   # no results is not a pass
    error = _result("a", "b", "smtp", 4, Verdict.ERROR, Verdict.ERROR)
    assert not error.passed


def test_json_shape() -> None:
    data = report.as_json([PASSING, FAILING])
    assert list(data) == ["scenarios"]
    assert [s["name"] for s in data["scenarios"]] == ["fixed-screened-block",
                                                      "seed-screened-block"]
    for s in data["scenarios"]:
        assert {"name", "topology", "passed", "load_errors", "results"} <= set(s)
        assert s["topology"] == "screened-host"
        for r in s["results"]:
            assert {"source", "target", "probe", "variant", "family", "expected", "observed",
                    "rule", "detail", "passed"} <= set(r)
            assert r["variant"] is None   # no tunnel probes here
            assert type(r["family"]) is int and r["family"] in (4, 6)
            assert r["observed"] in {v.value for v in Verdict}
            assert r["expected"] in {v.value for v in Verdict}
            assert type(r["passed"]) is bool
    first, second = data["scenarios"]
    assert first["passed"] is True and first["load_errors"] == []
    assert second["passed"] is False
    assert second["load_errors"] == [{"file": "scenarios/seed-screened-block/rules.sh",
                                      "line": 14, "message": "Bad argument `3544'"}]
    wrong = second["results"][2]
    assert {k: wrong[k] for k in ("source", "target", "probe", "family", "expected",
                                  "observed", "rule", "detail", "passed")} == {
        "source": "client1", "target": "mx", "probe": "smtps", "family": 6,
        "expected": "allowed", "observed": "blocked", "rule": DROP_V6,
        "detail": "dropped before mx:465; sender: no answer", "passed": False}
    assert first["results"][2]["rule"] is None


def test_json_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    report.write_json(path, [PASSING, FAILING])
    assert json.loads(path.read_text(encoding="utf-8")) == report.as_json([PASSING, FAILING])


def test_junit_is_parseable_with_failures_for_mismatches_and_load_errors(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    report.write_junit(path, [PASSING, FAILING])
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["fixed-screened-block", "seed-screened-block"]

    good = suites["fixed-screened-block"]
    assert good.get("failures") == "0"
    assert good.get("tests") == str(len(good.findall("testcase"))) == "5"
    assert good.findall("testcase/failure") == []

    bad = suites["seed-screened-block"]
    cases = {c.get("name"): c for c in bad.findall("testcase")}
    assert bad.get("tests") == str(len(cases)) == "4"
    assert bad.get("failures") == "2"
    load = cases["policy loads"].find("failure")
    assert load is not None
    assert "scenarios/seed-screened-block/rules.sh:14: Bad argument `3544'" in (load.text or "")
    mismatch = cases["client1 -> mx smtps IPv6"].find("failure")
    assert mismatch is not None
    assert (mismatch.get("message") or "").startswith("expected allowed, observed blocked")
    assert cases["client1 -> remote-mx smtp IPv4"].find("failure") is None
    assert all(c.get("classname") == "port25lab.seed-screened-block" for c in cases.values())


def test_junit_reports_a_lab_error(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    broken = ScenarioResult("seed-dmz-block", "dmz", lab_error="inner did not boot")
    report.write_junit(path, [broken])
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    failures = [f.text for f in suite.findall("testcase/failure")]
    assert failures == ["inner did not boot"]


def test_matrix_of_a_passing_scenario() -> None:
    text = report.matrix(PASSING)
    lines = text.splitlines()
    assert lines[0] == "== fixed-screened-block [screened-host] PASS"
    row = next(ln for ln in lines if ln.split()[:3] == ["client1", "remote-mx", "smtp"])
    assert row.split()[3:] == ["blocked", "[1]", "blocked", "[2]"]
    assert f"     [1] {DROP_V4}" in lines
    assert f"     [2] {DROP_V6}" in lines
    assert "want" not in text and "load error" not in text and "mismatches" not in text


def test_matrix_of_a_failing_scenario() -> None:
    text = report.matrix(FAILING)
    lines = text.splitlines()
    assert lines[0] == "== seed-screened-block [screened-host] FAIL"
    assert ("   load error: scenarios/seed-screened-block/rules.sh:14: Bad argument `3544'"
            in lines)
    # the same rule cited twice gets one number
    assert text.count(f"] {DROP_V4}") == 1
    smtps_mx = next(ln for ln in lines if ln.split()[:3] == ["client1", "mx", "smtps"])
    assert smtps_mx.split()[3] == "-"          # no IPv4 result for that row
    assert "blocked [2] ✗ (want allowed)" in smtps_mx
    assert "client1 → mx smtps/v6: dropped before mx:465; sender: no answer" in text


def test_summary() -> None:
    assert report.summary([PASSING, FAILING]) == "1 of 2 scenarios pass"


# --- tunnel probes: one row and one case per variant ----------------------------------------

TEREDO_DROP = ('gw: iptables -t filter FORWARD#5: -A FORWARD -s 203.0.113.0/24 -i eth0 -p udp '
               '-m u32 --u32 "0x4&0x3fff=0x0" -j DROP')
TUNNELS = ScenarioResult("fixed-screened-block", "screened-host", results=(
    _result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V4),
    Result("client1", "remote-mx", "teredo", 4, Verdict.BLOCKED, Verdict.BLOCKED, TEREDO_DROP,
           "plain (IPv6/TCP SYN to port 25 right after the UDP header): dropped before "
           "relay:3544; sender: no answer", 3.0, variant="plain"),
    Result("client1", "remote-mx", "teredo", 4, Verdict.BLOCKED, Verdict.ALLOWED, None,
           "fragment (IPv4 fragments): relay:3544 received it; sender: no answer", 3.0,
           variant="fragment"),
))


def test_matrix_labels_tunnel_rows_with_their_variant() -> None:
    lines = report.matrix(TUNNELS).splitlines()
    rows = {tuple(ln.split()[:3]): ln.split()[3:] for ln in lines[2:]
            if ln.startswith("   client1")}
    assert rows == {
        ("client1", "remote-mx", "smtp"): ["blocked", "[1]", "-"],
        ("client1", "remote-mx", "teredo:plain"): ["blocked", "[2]", "-"],
        ("client1", "remote-mx", "teredo:fragment"): ["allowed", "✗", "(want", "blocked)", "-"],
    }
    assert f"     [2] {TEREDO_DROP}" in lines
    assert not any(ln.split()[2:3] == ["teredo"] for ln in lines[1:] if ln.startswith("   c"))


def test_json_variant_of_a_tunnel_result() -> None:
    (data,) = report.as_json([TUNNELS])["scenarios"]
    smtp, plain, fragment = data["results"]
    assert (smtp["probe"], smtp["variant"]) == ("smtp", None)
    assert (plain["probe"], plain["variant"], plain["family"]) == ("teredo", "plain", 4)
    assert (fragment["variant"], fragment["passed"]) == ("fragment", False)


def test_junit_names_a_tunnel_case_with_its_variant(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    report.write_junit(path, [TUNNELS])
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["policy loads", "client1 -> remote-mx smtp IPv4",
                           "client1 -> remote-mx teredo:plain IPv4",
                           "client1 -> remote-mx teredo:fragment IPv4"]
    assert cases["client1 -> remote-mx teredo:plain IPv4"].find("failure") is None
    failure = cases["client1 -> remote-mx teredo:fragment IPv4"].find("failure")
    assert failure is not None
    assert (failure.text or "").startswith("expected blocked, observed allowed: fragment")


# --- the report reads the evidence's fields, not the detail's words ---------------------

MX, REMOTE_MX = "203.0.113.25", "198.51.100.25"
DNAT = ("gw: iptables -t nat PREROUTING#1: -A PREROUTING -s 203.0.113.0/24 -i eth0 -p tcp "
        "-m tcp --dport 25 -j DNAT --to-destination 203.0.113.25:587")
TO_SUBMISSION = Evidence(
    Endpoint("remote-mx", REMOTE_MX, 25),
    Observation(20001, "synack", REMOTE_MX, 25, 63),
    (Sighting("mx", MX, 587),),
    smtp=SmtpTranscript("220 mx.example.org ESMTP port25lab mx", "mx.example.org",
                        steps=(("MAIL", 530, "5.7.0 Must issue a STARTTLS command first"),)))
PROXIED = ScenarioResult("fixed-proxy", "screened-host", results=(
    Result("client1", "remote-mx", "smtp", 4, Verdict.DIVERTED, Verdict.DIVERTED, DNAT,
           "a sentence the report does not split", 0.4, evidence=TO_SUBMISSION),
    Result("client1", "remote-mx", "spam", 4, Verdict.REFUSED, Verdict.REFUSED, DNAT,
           "another sentence", 0.4, evidence=TO_SUBMISSION),
    Result("client1", "remote-mx", "mail", 6, Verdict.DIVERTED, Verdict.DIVERTED, DNAT,
           "a third sentence", 0.4, evidence=replace(
               TO_SUBMISSION, smtp=SmtpTranscript(steps=(("DATA", 250, "queued as 4Q"),)),
               delivery=Delivery("4Q", "remote-mx", "mx", True, mailbox="1.M1.remote-mx"))),
))


def test_diverted_and_refused_are_told_from_the_evidence() -> None:
    text = report.matrix(PROXIED)
    assert "   diverted and refused:\n" + "\n".join([
        "     client1 → remote-mx smtp/v4: answered by mx:587 instead of remote-mx:25",
        "     client1 → remote-mx spam/v4: answered by mx:587 instead of remote-mx:25; "
        "refused: MAIL: 530 5.7.0 Must issue a STARTTLS command first",
        "     client1 → remote-mx mail/v6: answered by mx:587 instead of remote-mx:25; "
        "delivered via mx into remote-mx's mailbox (1.M1.remote-mx)"]) in text
    assert "sentence" not in text


def test_json_carries_the_evidence_of_each_result() -> None:
    (data,) = report.as_json([PROXIED])["scenarios"]
    smtp, spam, mail = (r["evidence"] for r in data["results"])
    assert smtp["addressed"] == {"role": "remote-mx", "address": REMOTE_MX, "port": 25}
    assert smtp["sender"] == {"reply": "synack", "source": REMOTE_MX, "source_port": 25,
                              "ttl": 63, "icmp": None, "banner": None, "elapsed_ms": 0.0}
    assert smtp["far_side"] == [{"role": "mx", "address": MX, "port": 587, "carried": None}]
    assert spam["smtp"]["refusal"] == "MAIL: 530 5.7.0 Must issue a STARTTLS command first"
    assert spam["smtp"]["steps"] == [{"command": "MAIL", "code": 530,
                                      "text": "5.7.0 Must issue a STARTTLS command first"}]
    assert mail["delivery"] == {"delivered": True, "queue_id": "4Q", "relay": "mx",
                                "mailbox": "1.M1.remote-mx", "status": None,
                                "stopped_by": None}
    assert (spam["delivery"], spam["ban"], spam["guesses"]) == (None, None, [])
    # a result without gathered evidence still has the object, empty
    (plain,) = report.as_json([PASSING])["scenarios"][:1]
    assert plain["results"][0]["evidence"]["sender"] is None


def test_the_report_and_its_results_import_nothing_of_the_runtime() -> None:
    # a fresh interpreter: what `import lab.report` pulls in, and nothing else
    code = ("import sys, lab.report, lab.model.results\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lab', 'mininet', 'scapy', 'topologies'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    loaded = done.stdout.split()
    assert "lab.model.results" in loaded
    assert not [m for m in loaded if m.startswith(("lab.runtime", "lab.engine", "lab.services",
                                                   "mininet", "scapy", "topologies"))], loaded


# A drop loaded from the user's script, its log rule, and a rule of no known source
SOURCED_DROP = Rule("gw", 4, "filter", "FORWARD", 3,
                    "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465 -j DROP",
                    "DROP", 9, source="rules.sh:17")
SOURCED_LOG = replace(SOURCED_DROP, position=2, text=SOURCED_DROP.text.replace("DROP", "LOG"),
                      target="LOG", line=8, source="rules.sh:16")
BAN = Rule("gw", 4, "filter", "f2b-trap", 1, "-s 203.0.113.11/32 -j REJECT", "REJECT", 5)
CITED = ScenarioResult("mine", "screened-host", results=(
    Result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED,
           SOURCED_DROP.cite(), "dropped before remote-mx:25", 1.0,
           evidence=Evidence(rule_hits=(Hit(SOURCED_LOG, 1), Hit(SOURCED_DROP, 1)))),
    Result("client1", "remote-mx", "smtps", 4, Verdict.BLOCKED, Verdict.BLOCKED,
           SOURCED_DROP.cite(), "dropped before remote-mx:465", 1.0,
           evidence=Evidence(rule_hits=(Hit(SOURCED_DROP, 1),))),
    Result("client2", "remote-mx", "web", 4, Verdict.BANNED, Verdict.BANNED, BAN.cite(),
           "rejected by a ban", 1.0, evidence=Evidence(rule_hits=(Hit(BAN, 1),))),
    Result("mx", "remote-mx", "mail", 4, Verdict.ALLOWED, Verdict.BLOCKED, SOURCED_DROP.cite(),
           "not delivered", 1.0, evidence=Evidence(delivery=Delivery(
               "4Q", "remote-mx", "mx", False, stopped_by=SOURCED_DROP))),
))


def test_a_deciding_rule_is_cited_with_the_line_of_the_policy_file_it_came_from() -> None:
    smtp, smtps, banned, mail = CITED.results
    assert smtp.rule_source == smtps.rule_source == mail.rule_source == "rules.sh:17"
    assert smtp.deciding_rule == SOURCED_DROP and mail.deciding_rule == SOURCED_DROP
    assert banned.rule_source == "" and banned.deciding_rule == BAN  # fail2ban's own rule
    assert PASSING.results[0].rule_source == ""  # a result without the rule in its evidence
    lines = report.matrix(CITED).splitlines()
    at = lines.index(f"     [1] {SOURCED_DROP.cite()}")  # the kernel's rendering, as before
    assert lines[at + 1] == "         from rules.sh:17"  # and where she finds it in her file
    assert lines[at + 2] == f"     [2] {BAN.cite()}"  # no source known: nothing under it
    assert lines[at + 3] == "   suspects (firewall logs): none"


def test_json_results_carry_the_deciding_rules_source_and_each_hits_source() -> None:
    (data,) = report.as_json([CITED])["scenarios"]
    smtp, _, banned, mail = data["results"]
    assert (smtp["rule"], smtp["rule_source"]) == (SOURCED_DROP.cite(), "rules.sh:17")
    assert banned["rule_source"] is None and mail["rule_source"] == "rules.sh:17"
    assert smtp["evidence"]["rule_hits"] == [
        {"rule": SOURCED_LOG.cite(), "source": "rules.sh:16", "target": "LOG", "packets": 1},
        {"rule": SOURCED_DROP.cite(), "source": "rules.sh:17", "target": "DROP", "packets": 1}]
    assert banned["evidence"]["rule_hits"][0]["source"] is None
    (plain,) = report.as_json([PASSING])["scenarios"][:1]
    assert plain["results"][0]["rule_source"] is None  # no evidence of the rule: no source
