"""The bench's side by side (nmap's XML, swaks's outcomes, the ratios) and its headline
figures, without a lab: the figures are measured by `make bench`, never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench, peers, scale
from lab.model import scenario
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.services import mail
from probes.dialogue import Dialogue
from tests.unit.fake_lab import FakeLab

# nmap 7.93's own XML (`nmap -sS -n -T5 -p 587 -oX - 198.51.100.25` from client1 in the
# screened-host lab: nothing listens on remote-mx:587), only its header lines left out
NMAP_CLOSED = """<?xml version="1.0" encoding="UTF-8"?>
<nmaprun scanner="nmap" args="nmap -sS -n -T5 -p 587 -oX - 198.51.100.25" version="7.93">
<scaninfo type="syn" protocol="tcp" numservices="1" services="587"/>
<host starttime="1796127919" endtime="1796127919"><status state="up" reason="echo-reply" \
reason_ttl="63"/>
<address addr="198.51.100.25" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="587"><state state="closed" reason="reset" reason_ttl="63"/>\
<service name="submission" method="table" conf="3"/></port>
</ports>
</host>
<runstats><finished elapsed="0.08" exit="success"/><hosts up="1" down="0" total="1"/>
</runstats>
</nmaprun>
"""
NMAP_FILTERED = NMAP_CLOSED.replace('portid="587"', 'portid="25"').replace(
    'state="closed" reason="reset" reason_ttl="63"', 'state="filtered" reason="no-response" '
    'reason_ttl="0"')
NMAP_DOWN = """<?xml version="1.0" encoding="UTF-8"?>
<nmaprun scanner="nmap" version="7.93">
<runstats><finished elapsed="2.03" exit="success"/><hosts up="0" down="1" total="1"/>
</runstats>
</nmaprun>
"""


class NmapLab(FakeLab):
    """A fake lab whose nodes answer nmap with the XML given, and swaks with an exit."""

    xml = NMAP_FILTERED
    swaks = (0, "<-  250 2.0.0 Ok: queued as 4Q1ABC\n")

    def exec(self, role: str, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]:
        self.executed.append((role, argv))
        return (0, self.xml, "") if argv[0] == "nmap" else (*self.swaks, "")


def test_nmap_state_reads_the_port_and_its_reason() -> None:
    assert peers.nmap_state(NMAP_CLOSED, 587) == ("closed", "reset ttl 63")
    assert peers.nmap_state(NMAP_FILTERED, 25) == ("filtered", "no-response")
    assert peers.nmap_state(NMAP_DOWN, 25) == ("host down", "no answer to nmap's host discovery")


def test_nmap_agrees_with_a_verdict_only_in_the_same_words() -> None:
    assert peers.nmap_agrees(Verdict.BLOCKED, "filtered") == (True, "")
    assert peers.nmap_agrees(Verdict.ALLOWED, "open") == (True, "")
    assert not peers.nmap_agrees(Verdict.ALLOWED, "filtered")[0]
    assert not peers.nmap_agrees(Verdict.BLOCKED, "open")[0]
    agrees, why = peers.nmap_agrees(Verdict.BLOCKED, "closed")
    assert agrees and "REJECT" in why  # a router's reset: nmap cannot tell whose
    agrees, why = peers.nmap_agrees(Verdict.DIVERTED, "open")
    assert agrees and "cannot tell who answered" in why


def test_nmap_runs_from_the_rows_source_to_its_address_each_timing(tmp_path: Path) -> None:
    lab = NmapLab(tmp_path)
    row = peers.Row("client1", "remote-mx", "smtp", 6, "remote-mx", 25)
    runs = peers.nmap_rows(lab, [row], lambda _: None)
    assert [r.peer for r in runs] == ["nmap -sS", "nmap -sS -T5"]
    assert [r.got for r in runs] == ["filtered", "filtered"]
    assert lab.executed[1] == ("client1", ["nmap", "-sS", "-n", "-T5", "-6", "-p", "25",
                                           "-oX", "-", "2001:db8:ffff:1::25"])


def test_swaks_holds_the_labs_dialogue(tmp_path: Path) -> None:
    lab = NmapLab(tmp_path)
    lab.serve_mail(mail.MailServer("mx", "mx.example.org", ("example.org",), submission=True,
                                   users=mail.LAB_USERS))
    row = peers.Row("client1", "remote-mx", "mail", 4, "mx", 587)
    [run] = peers.swaks_rows(lab, [row], lambda _: None)
    role, argv = lab.executed[0]
    assert role == "client1"
    assert argv[:4] == ["swaks", "-4", "--server", "203.0.113.25/587"]
    for option in ("--tls-optional-strict", "--auth-user", "--data"):
        assert option in argv
    assert argv[argv.index("--auth-user") + 1] == mail.LAB_USERS[0].name
    assert run.got == "accepted"


def test_swaks_without_a_message_stops_after_rcpt() -> None:
    talk = Dialogue(tls="implicit", mail_from="check@example.net", rcpts=("abuse@example.org",
                                                                          "postmaster@x"))
    argv = peers.swaks_argv("2001:db8::25", 465, 6, talk)
    assert "--tls-on-connect" in argv and "--auth" not in argv
    assert argv[-4:] == ["--to", "abuse@example.org,postmaster@x", "--quit-after", "RCPT"]


def test_swaks_outcomes_in_the_labs_words() -> None:
    assert peers.swaks_outcome(2, "=== Trying 198.51.100.25:25...\n") == "blocked"
    assert peers.swaks_outcome(0, "<-  250 Ok\n") == "accepted"
    assert peers.swaks_outcome(0, "<** 550 5.1.1 <abuse@x>: rejected\n") == "refused"
    assert peers.swaks_outcome(24, "") == "refused"
    agrees, why = peers.swaks_agrees(Verdict.BLOCKED, "accepted", sends_mail=True)
    assert not agrees and "mailbox" in why  # the relay's delivery was stopped on the way


def _result(source: str, probe: str, observed: Verdict, wall_ms: float) -> Result:
    return Result(source, "remote-mx", probe, 4, observed, observed, None, "", 0.0,
                  wall_ms=wall_ms)


def test_ratios_set_the_labs_time_on_the_same_rows_against_each_peers() -> None:
    outcome = ScenarioResult("fixed-screened-block", "screened-host", results=(
        _result("client1", "smtp", Verdict.BLOCKED, 10.0),
        _result("client2", "smtp", Verdict.BLOCKED, 30.0),
        _result("client1", "web", Verdict.ALLOWED, 500.0)))  # no peer ran it: not counted
    rows = [peers.Row(c, "remote-mx", "smtp", 4, "remote-mx", 25) for c in ("client1", "client2")]
    runs = [peers.PeerRun("nmap -sS -T5", row, 0.6, "filtered", "filtered") for row in rows]
    [ratio] = peers.ratios(outcome, runs)
    assert (ratio.rows, ratio.lab_s, ratio.peer_s) == (2, 0.04, 1.2)
    assert round(ratio.ratio, 3) == 0.033 and round(ratio.faster) == 30
    assert "0 of 2" in peers.comparison(outcome, runs)


def test_the_headline_says_a_missing_figure_is_missing_never_a_number() -> None:
    ratio = peers.Ratio("nmap -sS -T5", 26, 1.0, 31.0)
    probes = [bench.ProbeTiming("s", "smtp", "blocked", "blocked", 8.0, 1.0),
              bench.ProbeTiming("s", "smtps", "allowed", "allowed", 20.0, 1.0)]
    figures = {f.name.split(" (")[0]: f for f in bench.headline([], probes, None, [ratio],
                                                                 None, None)}
    for name in ("1000-client site up", "1000-client site memory",
                 "fleet audit, 20 gateways in parallel"):
        assert figures[name].measured == bench.NOT_IN_BUILD and figures[name].met is None
    assert figures["verify --all wall time"].met is None
    assert figures["blocked SYN row, median"].met is True
    assert figures["allowed SYN row, median"].met is False
    assert figures["vs nmap -sS -T5, 26 SYN rows"].met is True


def test_the_headline_takes_the_fleet_audit_with_every_gateway_at_once() -> None:
    fleet = [scale.FleetRun(20, "default", 15.8, 1, "== fleet audit FAIL: 20 gateways"),
             scale.FleetRun(20, "20", 9.5, 1, "== fleet audit FAIL: 20 gateways")]
    [figure] = [f for f in bench.headline([], [], None, [], None, fleet)
                if f.name.startswith("fleet audit")]
    assert figure.measured == "9.5 s (jobs 20, exit 1)"
    assert "jobs default: 15.8 s" in scale.fleet_details(fleet)


def test_the_large_site_is_found_built_in_or_among_the_examples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario, "builtin_names", lambda: ["fixed-trap"])
    monkeypatch.setattr(scale, "EXAMPLES", tmp_path)
    assert scale.site_scenario() is None  # then the headline says: not in this build
    (tmp_path / scale.SITE_SCENARIO).mkdir()
    (tmp_path / scale.SITE_SCENARIO / "scenario.yaml").write_text("")
    assert scale.site_scenario() == str(tmp_path / scale.SITE_SCENARIO)
