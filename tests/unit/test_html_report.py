"""The HTML report's page: self-contained, escaped, its cells, links, policy lines and run."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab.html_report import render, write_html
from lab.model import scenario as scenarios
from lab.model.evidence import Endpoint, Evidence, Observation, Sighting
from lab.model.record import RunRecord, ScenarioRecord
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Scenario
from lab.model.verdict import Verdict
from lab.netfilter.counters import Hit
from lab.netfilter.policy import LoadError
from lab.netfilter.rules import Rule
from lab.userfiles import shown
from tests.html_dom import Element, parse
from tests.support import without_mininet

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _seed() -> tuple[Scenario, str]:
    s = scenarios.load("seed-screened-block")
    return s, shown(s.policies["gw"][0].path)


def _drop(rules: str, line: int, family: int = 4) -> Rule:
    prefix = "203.0.113.0/24" if family == 4 else "2001:db8:b01a:70da::/64"
    return Rule("gw", family, "filter", "FORWARD", 3 if family == 4 else 2,
                f"-s {prefix} -i eth0 -p tcp -m multiport --dports 25,465 -j DROP", "DROP", 1,
                source=f"{rules}:{line}")


def _run(rules: str) -> ScenarioResult:
    """The seed's matrix, shortened: a blocked smtp, the Teredo and 6in4 rows that leak."""
    drop = _drop(rules, 8)
    relay = Endpoint("relay", "198.51.100.35", 3544)
    return ScenarioResult("seed-screened-block", "screened-host", load_errors=(
        LoadError(rules, 14, "Bad argument `3544'"),), boot_ms=2100.0, results=(
        Result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, drop.cite(),
               "dropped before remote-mx:25", 1000.0, wall_ms=1200.0, evidence=Evidence(
                   Endpoint("remote-mx", "198.51.100.25", 25), Observation(20000, "none"), (),
                   (Hit(drop, 1),))),
        Result("client1", "remote-mx", "teredo", 4, Verdict.BLOCKED, Verdict.ALLOWED, None,
               "plain: relay:3544 received it", 300.0, wall_ms=350.0, variant="plain",
               evidence=Evidence(relay, Observation(20001, "none"), (Sighting(
                   "relay", "198.51.100.35", 3544, "TCP to 2001:db8:ffff:1::25 port 25"),))),
        Result("client1", "remote-mx", "tunnel6in4", 4, Verdict.BLOCKED, Verdict.ALLOWED, None,
               "plain: relay received it", 300.0, wall_ms=340.0, variant="plain"),
        Result("client1", "remote-mx", "smtp", 6, Verdict.BLOCKED, Verdict.ALLOWED, None,
               EVIL, 5.0, wall_ms=60.0, evidence=Evidence(
                   Endpoint("remote-mx", "2001:db8:ffff:1::25", 25),
                   Observation(20002, "synack", "2001:db8:ffff:1::25", 25, banner=EVIL))),
    ))


def _record(s: Scenario, rules: str) -> RunRecord:
    at = datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC)
    return RunRecord("0.1.0", at, ("port25lab", "verify", "seed-screened-block", "--html",
                                   "out.html"),
                     (ScenarioRecord(s.name, "screened-host", "", {"gw": (rules,)}, at, 42.5),),
                     43.25)


@pytest.fixture
def page() -> Element:
    s, rules = _seed()
    return parse(render([(s, _run(rules))], _record(s, rules)))


def test_the_page_is_self_contained(page: Element) -> None:
    s, rules = _seed()
    text = render([(s, _run(rules))], _record(s, rules))
    # nothing to fetch: no external script, style sheet, image, font or frame
    assert page.all("link") == [] and page.all("iframe") == [] and page.all("img") == []
    assert all(not e.attrs.get("src") for e in page.walk())
    assert {e.attrs["href"][:1] for e in page.all("a")} == {"#"}  # only within the page
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/)", text)
    assert [e.tag for e in page.all("style")] == ["style"]
    assert len(page.all("svg")) == 1  # the site, drawn inline


def test_untrusted_texts_are_escaped(page: Element) -> None:
    s, rules = _seed()
    text = render([(s, _run(rules))], _record(s, rules))
    assert "<script>alert" not in text and "<img" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert [e.tag for e in page.all("script")] == ["script"]  # the page's own, only
    cell = page.by_id("s0-r3")
    assert EVIL in cell.text()  # what she reads: the text itself, as text


def test_each_cell_says_its_verdict_and_opens_its_evidence(page: Element) -> None:
    verdicts = {c.attrs["id"]: c.all("span", "verdict")[0].text()
                for c in page.all("details", "cell")}
    assert verdicts == {"s0-r0": "blocked", "s0-r1": "allowed", "s0-r2": "allowed",
                        "s0-r3": "allowed"}
    smtp = page.by_id("s0-r0")
    assert "mismatch" not in smtp.classes() and "✓" in smtp.all("summary")[0].text()
    assert "[1]" in smtp.all("summary")[0].text()
    teredo = page.by_id("s0-r1")
    assert "mismatch" in teredo.classes()
    assert "✗ want blocked" in teredo.all("summary")[0].text()
    evidence = teredo.all("div", "evidence")[0].text()
    assert "relay (198.51.100.35) port 3544" in evidence
    assert "relay saw it at 198.51.100.35 port 3544, carrying TCP to 2001:db8:ffff:1::25" \
        in evidence
    assert "no answer" in evidence
    # the deciding rule, its source line linked to the policy listing
    links = {a.text(): a.attrs["href"] for a in smtp.all("a")}
    _, rules = _seed()
    assert links == {f"{rules}:8": "#s0-p0-L8"}
    dt = [d.text() for d in smtp.all("dt")]
    assert dt[:5] == ["verdict", "sent to", "sender saw", "far side", "rule hit"]
    # the matrix: a row per source, target and probe, IPv4 then IPv6
    rows = page.all("table", "matrix")[0].all("tbody")[0].all("tr")
    assert [[td.text().split()[0] for td in r.all("td")[:3]] for r in rows] == [
        ["client1", "remote-mx", "smtp"], ["client1", "remote-mx", "teredo:plain"],
        ["client1", "remote-mx", "tunnel6in4:plain"]]
    assert [c.attrs["id"] for c in rows[0].all("details")] == ["s0-r0", "s0-r3"]
    assert rows[1].all("td")[4].text() == "\N{EN DASH}"  # no IPv6 Teredo row


def test_a_load_error_links_the_rows_it_may_explain_and_back(page: Element) -> None:
    _, rules = _seed()
    error = page.by_id("s0-e0")
    assert f"{rules}:14: Bad argument `3544'" in error.text()
    # the broken line is UDP and IPv4: the Teredo row, not 6in4's (protocol 41) nor IPv6's
    assert [a.attrs["href"] for a in error.all("a")] == ["#s0-p0-L14", "#s0-r1"]
    teredo = page.by_id("s0-r1")
    assert [a.attrs["href"] for a in teredo.all("p", "explained")[0].all("a")] == ["#s0-e0"]
    assert page.by_id("s0-r2").all("p", "explained") == []
    assert page.by_id("s0-r3").all("p", "explained") == []
    assert "1 of them may be explained by " + f"{rules}:14, which did not load" in (
        page.all("p", "summary")[1].text())
    # every link leads somewhere on the page
    ids = set(page.ids())
    assert {a.attrs["href"][1:] for a in page.all("a")} <= ids


def test_policy_lines_that_decided_or_did_not_load_are_marked(page: Element) -> None:
    lines = {e.attrs["id"]: e for e in page.by_id("s0-p0").all("span", "line")}
    assert len(lines) == 16  # the seed's rules.sh, line by line
    assert lines["s0-p0-L8"].classes() == {"line", "decided"}
    assert "← decided 1 verdict" in lines["s0-p0-L8"].text()
    # the Teredo command and the two lines its backslashes join to it
    for n in (14, 15, 16):
        assert lines[f"s0-p0-L{n}"].classes() == {"line", "failed"}, n
    assert "← did not load: Bad argument `3544'" in lines["s0-p0-L14"].text()
    assert lines["s0-p0-L3"].classes() == {"line"}
    assert lines["s0-p0-L14"].text().startswith("14/sbin/iptables -A FORWARD -i eth0 -p udp")


def test_the_run_and_the_scenario_say_what_ran_when_and_how_long(page: Element) -> None:
    _, rules = _seed()
    run = page.all("dl", "run")[0]
    facts = dict(zip((d.text() for d in run.all("dt")), (d.text() for d in run.all("dd")),
                     strict=True))
    assert facts == {"port25lab": "0.1.0", "started": "2026-12-01T10:00:00.250Z",
                     "command": "port25lab verify seed-screened-block --html out.html",
                     "took": "43.2 s"}
    section = page.by_id("s0")
    said = section.all("dl", "facts")[0].text()
    assert "screened-host" in said and rules in said
    assert "42.5 s (the lab booted in 2.1 s), from 2026-12-01T10:00:00.250Z" in said
    assert section.all("p", "summary")[0].text().startswith("FAIL — 3 of 4 rows")


def test_the_legend_names_every_verdict_with_its_colour(page: Element) -> None:
    legend = page.by_id("legend").all("span", "swatch")
    assert [(s.text(), s.classes() - {"swatch"}) for s in legend] == [
        (v.value, {v.value.replace(" ", "-")}) for v in Verdict]


def test_suspects_and_bans_are_shown_with_reaction_times(tmp_path: Path) -> None:
    from lab.model.evidence import Ban, Suspect

    s, _ = _seed()
    result = ScenarioResult(
        "trap", "screened-host", suspects=(Suspect("client2", "203.0.113.11", 3, (25, 465),
                                                    ("198.51.100.25",), "10:00:01", "10:00:02"),),
        expected_suspects=("client2",),
        bans=(Ban("gw", 4, "203.0.113.11", "f2b-port25lab", "gw: iptables … -j REJECT",
                  ("FORWARD#1: -A FORWARD -j f2b-port25lab",), seen_at=100.25, fired_at=100.0,
                  fired_by="its firewall log line"),),
        owners={"203.0.113.11": "client2"})
    path = tmp_path / "report.html"
    write_html(path, [(s, result)], None)
    page = parse(path.read_text(encoding="utf-8"))
    suspects = page.all("table", "suspects")[0].all("td")
    assert [td.text() for td in suspects][:4] == ["client2", "203.0.113.11", "3", "25, 465"]
    bans = [td.text() for td in page.all("table", "bans")[0].all("td")]
    assert bans[:5] == ["client2", "203.0.113.11", "gw", "f2b-port25lab",
                        "250 ms after its firewall log line"]
    assert bans[5:] == ["still in force at the end", "FORWARD#1: -A FORWARD -j f2b-port25lab"]
    assert "✓ as logged" in page.text()
    assert page.all("dl", "run") == []  # no record given: no run facts claimed


def test_the_html_report_renders_where_mininet_cannot_be_imported() -> None:
    # a fresh interpreter without Mininet: the page is drawn from results alone
    done = without_mininet(
        "import sys\n"
        "from lab.html_report import render\n"
        "from lab.model import scenario\n"
        "from lab.model.results import ScenarioResult\n"
        "s = scenario.load('fixed-dmz-block')\n"
        "page = render([(s, ScenarioResult(s.name, s.topology))], None)\n"
        "print('<svg' in page, *sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lab', 'mininet', 'scapy')))")
    assert done.returncode == 0, done.stderr
    drawn, *loaded = done.stdout.split()
    assert drawn == "True" and "lab.html_report.view" in loaded
    assert not [m for m in loaded if m.startswith(("lab.runtime", "lab.engine", "lab.services",
                                                   "lab.audit", "mininet", "scapy"))], loaded


def test_a_source_the_page_does_not_list_is_said_without_a_link() -> None:
    s, rules = _seed()
    result = _run(rules)
    elsewhere = replace(_drop("their-rules.sh", 3), text="-p tcp -j DROP")
    cited = replace(result.results[0], rule=elsewhere.cite(),
                    evidence=Evidence(rule_hits=(Hit(elsewhere, 1),)))
    jail = LoadError("jail.local", 0, "fail2ban in gw: no such jail")
    page = parse(render([(s, replace(result, results=(cited,),
                                     load_errors=(*result.load_errors, jail)))], None))
    cell = page.by_id("s0-r0")
    assert "(from their-rules.sh:3)" in cell.text() and cell.all("a") == []
    (rule,) = page.all("ol", "rules")[0].all("li")
    assert rule.text().endswith("— from their-rules.sh:3") and rule.all("a") == []
    error = page.by_id("s0-e1")
    assert error.all("strong")[0].text() == "jail.local" and error.all("a") == []
    assert "fail2ban in gw: no such jail" in error.text()


def test_a_twins_collected_rules_are_shown_as_collected_never_read_as_a_file() -> None:
    # a twin's policy is no file: "ssh://root@gw iptables-save" is a name, not a path
    from lab.audit.twin import commands
    from lab.html_report.view import _policy_view
    from lab.netfilter.policy import PolicyFile

    source = "ssh://root@gw iptables-save"
    saved = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A FORWARD -s 203.0.113.0/24 -p tcp --dport 25 -j DROP\nCOMMIT\n")
    policy = PolicyFile(Path(source), "script", label=source,
                        commands=tuple(commands(saved, 4, source, {})))
    view = _policy_view("gw", policy, "p0")
    assert view.path == source and view.note == ""
    # each line as the gateway's iptables-save printed it, at its own line number
    texts = [line.text for line in view.lines]
    assert texts[4] == "-A FORWARD -s 203.0.113.0/24 -p tcp --dport 25 -j DROP"
