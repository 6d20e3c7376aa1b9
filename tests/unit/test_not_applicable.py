"""Rows a site gives no path: not probed, `not applicable` in every report, counted neither
way; and the report says IPv6 still matters."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from lab import report
from lab.engine.probing import not_applicable
from lab.engine.verify import IPV6_STILL_MATTERS, verify
from lab.model import scenario, site_file
from lab.model.evidence import Sighting
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from lab.runtime.lifecycle import Run
from probes.requests import PacketAnswer
from tests.support import PROJECT
from tests.unit.fake_lab import FakeLab, Reply

CAMPUS = PROJECT / "examples" / "campus" / "campus.yaml"
OFFICE = PROJECT / "examples" / "office" / "office.yaml"  # IPv4 only


def _expect(source: str, target: str, probe: str, family: int, variant: str = "") -> Expectation:
    return Expectation(source, target, probe, family, Verdict.BLOCKED, variant)


def test_which_rows_a_site_gives_no_path() -> None:
    campus = site_file.load(CAMPUS)
    assert not_applicable(campus, _expect("guest1", "remote-mx", "smtp", 4)) is None
    assert not_applicable(campus, _expect("guest1", "remote-mx", "smtp", 6)) == (
        "guest1 has no IPv6 address on site campus: not probed")
    assert not_applicable(campus, _expect("staff1", "remote-mx", "smtp", 6)) is None
    # a tunnel travels in IPv4 and aims at remote-mx's IPv6: it applies to the guests too
    assert not_applicable(campus, _expect("guest1", "remote-mx", "teredo", 4, "plain")) is None


def test_mail_passes_the_own_mail_server(tmp_path: Path) -> None:
    path = tmp_path / "v6-clients.yaml"
    text = OFFICE.read_text()
    path.write_text(text.replace("[192.0.2.0/24]", "[192.0.2.0/24, \"2001:db8:1::/64\"]")
                    .replace("[192.0.2.1/24]", "[192.0.2.1/24, \"2001:db8:1::1/64\"]")
                    .replace("[192.0.2.10/24]", "[192.0.2.10/24, \"2001:db8:1::10/64\"]")
                    .replace("[198.51.100.1/30]", "[198.51.100.1/30, \"2001:db8:2::1/64\"]")
                    .replace("[198.51.100.0/30]", "[198.51.100.0/30, \"2001:db8:2::/64\"]"))
    site = site_file.load(path)
    # pc1 and remote-mx have IPv6; the mail goes through mx, which has none
    assert not_applicable(site, _expect("pc1", "remote-mx", "smtp", 6)) is None
    assert not_applicable(site, _expect("pc1", "remote-mx", "mail", 6)) == (
        "mx has no IPv6 address on site office: not probed")


def test_an_ipv4_only_site_probes_ipv4_and_says_ipv6_still_matters(tmp_path: Path) -> None:
    site = OFFICE
    folder = tmp_path / "drop-25"
    folder.mkdir()
    (folder / "scenario.yaml").write_text(
        "topology: screened-host\nexpect:\n"
        "  - {from: client1, to: sink, probes: [web], families: [4, 6], verdict: allowed}\n")
    s = scenario.load(str(folder), site=site)
    lab = FakeLab(tmp_path / "run")
    lab.site = s.site
    sink = s.site.role("sink").address(4)
    lab.answers("pc1", Reply(PacketAnswer("synack", 20000, 0.3, sink, 80, 62),
                            seen=(Sighting("sink", sink, 80),)))
    said: list[str] = []
    outcome = verify(s, Run("p25-fa4e00", tmp_path / "run"), said.append,
                     boot=lambda _s, _r: lab)
    v4, v6 = outcome.results
    assert (v4.family, v4.observed, v4.passed) == (4, Verdict.ALLOWED, True)
    assert (v6.family, v6.observed, v6.applicable) == (6, Verdict.NOT_APPLICABLE, False)
    assert v6.detail == "pc1 has no IPv6 address on site office: not probed"
    assert len(lab.requests("pc1")) == 1  # the IPv6 row sent nothing
    assert outcome.passed and outcome.not_applicable == (v6,)
    assert IPV6_STILL_MATTERS in outcome.notes
    assert "considerar IPv6 mesmo que sua rede não tenha IPv6" in IPV6_STILL_MATTERS
    assert "drop-25: [2/2] pc1 → sink web/v6: not applicable (n/a)" in said
    assert (outcome.topology, outcome.site_file) == ("office", "examples/office/office.yaml")


def _row(family: int, observed: Verdict, expected: Verdict = Verdict.BLOCKED) -> Result:
    detail = ("guest1 has no IPv6 address on site campus: not probed"
              if observed == Verdict.NOT_APPLICABLE else "dropped")
    return Result("guest1", "remote-mx", "smtp", family, expected, observed, None, detail, 0.0)


ON_CAMPUS = ScenarioResult(
    "fixed-screened-block", "campus", results=(_row(4, Verdict.BLOCKED),
                                               _row(6, Verdict.NOT_APPLICABLE)),
    notes=(IPV6_STILL_MATTERS,), site_file="examples/campus/campus.yaml",
    rules={"fw": ("examples/campus/campus.sh",)})


def test_a_scenario_passes_on_its_applicable_rows_only() -> None:
    assert ON_CAMPUS.passed
    nothing = ScenarioResult("x", "campus", results=(_row(6, Verdict.NOT_APPLICABLE),))
    assert not nothing.passed  # nothing probed is no pass
    wrong = ScenarioResult("x", "campus", results=(
        _row(4, Verdict.ALLOWED), _row(6, Verdict.NOT_APPLICABLE)))
    assert not wrong.passed and [r.failed for r in wrong.results] == [True, False]


def test_the_matrix_names_the_site_and_rules_and_marks_na() -> None:
    lines = report.matrix(ON_CAMPUS).splitlines()
    assert lines[0] == ("== fixed-screened-block [campus: examples/campus/campus.yaml] PASS "
                        "(1 of 2 rows not applicable)")
    assert lines[1] == "   rules: fw: examples/campus/campus.sh"
    row = next(ln for ln in lines if ln.split()[:3] == ["guest1", "remote-mx", "smtp"])
    assert row.split()[3:] == ["blocked", "n/a"]
    assert ("   not applicable (not probed, neither passed nor failed): guest1 has no IPv6 "
            "address on site campus: not probed") in lines
    assert f"   note: {IPV6_STILL_MATTERS}" in lines
    assert "✗" not in "\n".join(lines) and "mismatches" not in "\n".join(lines)


def test_json_and_junit_have_the_site_rules_and_a_status_of_their_own(tmp_path: Path) -> None:
    (data,) = report.as_json([ON_CAMPUS])["scenarios"]
    assert data["site"] == {"name": "campus", "file": "examples/campus/campus.yaml"}
    assert data["rules"] == {"fw": ["examples/campus/campus.sh"]}
    assert (data["passed"], data["not_applicable"]) == (True, 1)
    v4, v6 = data["results"]
    assert (v4["status"], v4["passed"]) == ("passed", True)
    assert (v6["status"], v6["passed"], v6["observed"]) == ("not applicable", None,
                                                           "not applicable")
    json.dumps(data)
    path = tmp_path / "report.xml"
    report.write_junit(path, [ON_CAMPUS])
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "1")
    case = suite.find("testcase[@name='guest1 -> remote-mx smtp IPv6']")
    assert case is not None and case.find("failure") is None
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message") == (
        "not applicable: guest1 has no IPv6 address on site campus: not probed")


def test_a_built_in_site_keeps_its_header() -> None:
    built_in = ScenarioResult("fixed-dmz-block", "dmz", results=(_row(4, Verdict.BLOCKED),),
                              rules={"inner": ("scenarios/fixed-dmz-block/rules.sh",)})
    lines = report.matrix(built_in).splitlines()
    assert lines[:2] == ["== fixed-dmz-block [dmz] PASS",
                         "   rules: inner: scenarios/fixed-dmz-block/rules.sh"]
    (data,) = report.as_json([built_in])["scenarios"]
    assert data["site"] == {"name": "dmz", "file": None}
