"""Reports for machines with the run's record: JSON's version, start, command, sites, rules and
times; JUnit's times, properties and failures with their evidence."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from lab import report
from lab.model.evidence import Delivery, Endpoint, Evidence, Observation, Sighting
from lab.model.evidence_items import as_text, items
from lab.model.record import RunRecord, ScenarioRecord, iso
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.netfilter.counters import Hit
from lab.netfilter.policy import LoadError
from lab.netfilter.rules import Rule
from probes.requests import Guess

DROP = Rule("gw", 4, "filter", "FORWARD", 3,
            "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465 -j DROP", "DROP", 4,
            source="rules.sh:8")
STARTED = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
LEAK = Result("client1", "remote-mx", "teredo", 4, Verdict.BLOCKED, Verdict.ALLOWED, None,
              "plain: relay:3544 received it; sender: no answer", 300.0, wall_ms=1234.5,
              variant="plain", evidence=Evidence(
                  Endpoint("relay", "198.51.100.35", 3544), Observation(20001, "none"),
                  (Sighting("relay", "198.51.100.35", 3544,
                            "TCP to 2001:db8:ffff:1::25 port 25"),)))
HELD = Result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP.cite(),
              "dropped before remote-mx:25", 1000.0, wall_ms=2000.0, evidence=Evidence(
                  Endpoint("remote-mx", "198.51.100.25", 25), Observation(20000, "none"), (),
                  (Hit(DROP, 1),)))
SEED = ScenarioResult("seed", "screened-host", (LoadError("rules.sh", 14, "Bad argument `3544'"),),
                      (HELD, LEAK), boot_ms=1500.0, rules={"gw": ("rules.sh",)})
FIXED = ScenarioResult("fixed", "dmz", results=(HELD,), boot_ms=1000.0, site_file="mine.yaml",
                       rules={"inner": ("a.sh", "b.v6"), "outer": ()})
RUN = RunRecord("0.1.0", STARTED, ("port25lab", "verify", "seed", "fixed", "--json", "x.json"), (
    ScenarioRecord("seed", "screened-host", "", {"gw": ("rules.sh",)}, STARTED, 20.25),
    ScenarioRecord("fixed", "dmz", "mine.yaml", {"inner": ("a.sh", "b.v6"), "outer": ()},
                   STARTED, 10.5)), 31.0)


def test_iso_is_utc_to_the_millisecond() -> None:
    assert iso(STARTED) == "2026-12-01T10:00:00.123Z"
    from datetime import timedelta, timezone
    assert iso(STARTED.astimezone(timezone(timedelta(hours=-3)))) == "2026-12-01T10:00:00.123Z"


def test_json_with_the_run_gains_its_record_and_keeps_every_key() -> None:
    plain, data = report.as_json([SEED, FIXED]), report.as_json([SEED, FIXED], RUN)
    assert list(plain) == ["scenarios"]
    assert list(data) == ["version", "started", "command", "duration_s", "scenarios"]
    assert (data["version"], data["started"], data["command"], data["duration_s"]) == (
        "0.1.0", "2026-12-01T10:00:00.123Z",
        ["port25lab", "verify", "seed", "fixed", "--json", "x.json"], 31.0)
    for before, after in zip(plain["scenarios"], data["scenarios"], strict=True):
        assert before.items() <= after.items()  # every key and value kept
        # the site and rules files come with the result; the run adds when and how long
        assert set(after) - set(before) == {"started", "duration_s"}
    seed, fixed = data["scenarios"]
    assert (seed["site"], seed["rules"], seed["duration_s"], seed["boot_ms"]) == (
        {"name": "screened-host", "file": None}, {"gw": ["rules.sh"]}, 20.25, 1500.0)
    assert (fixed["site"], fixed["rules"]) == ({"name": "dmz", "file": "mine.yaml"},
                                               {"inner": ["a.sh", "b.v6"], "outer": []})
    assert seed["started"] == "2026-12-01T10:00:00.123Z"
    held, leak = seed["results"]
    assert (held["rule_source"], leak["rule_source"]) == ("rules.sh:8", None)
    assert (held["wall_ms"], leak["wall_ms"]) == (2000.0, 1234.5)


def test_json_file_with_the_run(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    report.write_json(path, [SEED], RUN)
    assert json.loads(path.read_text(encoding="utf-8")) == report.as_json([SEED], RUN)


def _suites(root: ET.Element) -> dict[str, ET.Element]:
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def test_junit_has_a_time_on_every_suite_and_case() -> None:
    root = report.junit([SEED, FIXED], RUN)
    assert (root.get("time"), root.get("tests"), root.get("failures")) == ("31.000", "5", "2")
    seed, fixed = _suites(root).values()
    assert (seed.get("time"), fixed.get("time")) == ("20.250", "10.500")
    assert seed.get("timestamp") == "2026-12-01T10:00:00"
    times = {c.get("name"): c.get("time") for c in seed.findall("testcase")}
    assert times == {"policy loads": "0.000", "client1 -> remote-mx smtp IPv4": "2.000",
                     "client1 -> remote-mx teredo:plain IPv4": "1.234"}
    for case in root.iter("testcase"):
        assert re.fullmatch(r"\d+\.\d{3}", case.get("time", "")), case.attrib
    # without the run's record: the boot and the probes that were timed
    alone = _suites(report.junit([SEED]))["seed"]
    assert alone.get("time") == f"{1.5 + 2.0 + 1.2345:.3f}" and alone.get("timestamp") is None


def test_junit_properties_name_the_site_and_the_rules() -> None:
    seed, fixed = _suites(report.junit([SEED, FIXED], RUN)).values()
    assert seed[0].tag == "properties"  # before the cases, as the schema has it
    props = {p.get("name"): p.get("value") for p in fixed.findall("properties/property")}
    assert props == {"site": "dmz", "site file": "mine.yaml", "rules of inner": "a.sh, b.v6",
                     "rules of outer": "(none)"}
    alone = _suites(report.junit([SEED]))["seed"]
    assert [(p.get("name"), p.get("value")) for p in alone.findall("properties/property")] == [
        ("site", "screened-host")]


def test_junit_failures_carry_the_evidence(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    report.write_junit(path, [SEED], RUN)
    cases = {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}
    failure = cases["client1 -> remote-mx teredo:plain IPv4"].find("failure")
    assert failure is not None
    assert failure.get("message") == ("expected blocked, observed allowed: plain: relay:3544 "
                                      "received it; sender: no answer")
    assert (failure.text or "").splitlines() == [
        "expected blocked, observed allowed: plain: relay:3544 received it; sender: no answer",
        "sent to: relay (198.51.100.35) port 3544",
        "sender saw: no answer",
        "far side: relay saw it at 198.51.100.35 port 3544, carrying TCP to "
        "2001:db8:ffff:1::25 port 25",
        "time: 1234 ms in all; the sender waited 300 ms"]
    assert cases["client1 -> remote-mx smtp IPv4"].find("failure") is None


def test_evidence_items_cite_their_policy_lines() -> None:
    held = items(HELD)
    assert [(i.label, i.source) for i in held] == [
        ("sent to", ""), ("sender saw", ""), ("far side", ""), ("rule hit", "rules.sh:8"),
        ("deciding rule", "rules.sh:8"), ("in words", ""), ("time", "")]
    assert held[2].text == "no recorder saw it"
    assert held[3].text == f"{DROP.cite()} (1 packet)"
    assert as_text(HELD).splitlines()[4] == f"deciding rule: {DROP.cite()} (from rules.sh:8)"
    stopped = Result("mx", "remote-mx", "mail", 4, Verdict.ALLOWED, Verdict.BLOCKED, DROP.cite(),
                     "not delivered", 1.0, evidence=Evidence(delivery=Delivery(
                         "4Q", "remote-mx", "mx", True, status="deferred", stopped_by=DROP)))
    delivery = next(i for i in items(stopped) if i.label == "delivery")
    assert (delivery.text, delivery.source) == ("not delivered: mx says: deferred", "rules.sh:8")
    guessed = Result("client2", "mx", "guessing", 4, Verdict.BANNED, Verdict.BANNED, None, "",
                     1.0, evidence=Evidence(guesses=(Guess("u", 0, 535, 1.0),
                                                     Guess("u", 1, 535, 1.1),
                                                     Guess("u", 2, 235, 1.2))))
    (guesses,) = [i.text for i in items(guessed) if i.label == "guesses"]
    assert guesses == "3 (1 answered 235, 2 answered 535); accepted for u: trivial password no. 3"
