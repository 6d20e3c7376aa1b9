"""Sites of one's own against the real kernel: a campus behind NAT, an IPv4-only office, and
NAT that rewrites every source port."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.engine.verify import IPV6_STILL_MATTERS, verify
from lab.model import scenario
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Scenario
from lab.model.verdict import Verdict
from lab.netfilter.policy import read_policy
from lab.runtime import lifecycle
from tests.support import PROJECT, leftovers

pytestmark = pytest.mark.lab

EXAMPLES = PROJECT / "examples"
CAMPUS, OFFICE = EXAMPLES / "campus", EXAMPLES / "office"


def _run(s: Scenario) -> ScenarioResult:
    run = lifecycle.new_run()
    try:
        return verify(s, run, lambda _: None)
    finally:
        lifecycle.destroy(run)
        assert leftovers(run.prefix) == []


def _on(site: Path, rules: Path, name: str = "fixed-screened-block") -> ScenarioResult:
    return _run(scenario.load(name, site=site).with_policy((read_policy(rules),)))


def _rows(result: ScenarioResult, source: str, probe: str, family: int) -> list[Result]:
    return [r for r in result.results
            if r.source == source and r.probe == probe and r.family == family]


@pytest.fixture(scope="module")
def campus() -> Iterator[ScenarioResult]:
    yield _on(CAMPUS / "campus.yaml", CAMPUS / "campus.sh")


def test_the_campus_rules_pass_the_corrected_block_scenario(campus: ScenarioResult) -> None:
    assert campus.lab_error is None and campus.load_errors == ()
    assert [r.detail for r in campus.results if r.failed] == []
    assert campus.passed
    # the guest VLAN has no IPv6: its seven IPv6 rows do not apply, and the report says why
    assert {(r.source, r.family) for r in campus.not_applicable} == {("guest1", 6)}
    assert len(campus.not_applicable) == 7
    assert IPV6_STILL_MATTERS in campus.notes
    assert (campus.topology, campus.site_file) == ("campus", "examples/campus/campus.yaml")
    assert campus.rules == {"fw": ("examples/campus/campus.sh",)}


def test_both_vlans_are_blocked_by_the_campus_rules_on_their_own_interfaces(
        campus: ScenarioResult) -> None:
    for source in ("staff1", "guest1"):
        (smtp,) = [r for r in _rows(campus, source, "smtp", 4) if r.target == "remote-mx"]
        assert smtp.observed == Verdict.BLOCKED
        assert smtp.rule == ("fw: iptables -t filter FORWARD#2: -A FORWARD -i ens18+ -o ens20 "
                             "-p tcp -m multiport --dports 25,465 -j DROP")
        # the real Teredo tunnel qualifies through MASQUERADE, and its SMTP is dropped
        (tunnel,) = [r for r in _rows(campus, source, "teredo", 4) if r.variant == "tunnel"]
        assert tunnel.observed == Verdict.BLOCKED, tunnel.detail
    (v6,) = [r for r in _rows(campus, "staff1", "smtp", 6) if r.target == "remote-mx"]
    assert v6.rule is not None and "ip6tables -t filter FORWARD#2: -A FORWARD -i ens18 " in v6.rule


def test_both_vlans_tunnel_6in4_through_one_nat_address(campus: ScenarioResult) -> None:
    # behind one MASQUERADE address a 6in4 flow is told apart by addresses alone: each
    # probe starts as a new flow, or the second VLAN's would meet the first's mapping
    for source in ("staff1", "guest1"):
        (control,) = [r for r in _rows(campus, source, "tunnel6in4", 4)
                      if r.variant == "control-80"]
        assert control.observed == Verdict.ALLOWED, control.detail


def test_mail_from_both_vlans_goes_through_the_dmz(campus: ScenarioResult) -> None:
    for source in ("staff1", "guest1"):
        (mail,) = _rows(campus, source, "mail", 4)
        assert mail.observed == Verdict.ALLOWED
        assert "via mx into remote-mx's mailbox" in mail.detail


def test_an_ipv4_only_office_without_tunnel_rules_leaks_through_tunnels() -> None:
    result = _on(OFFICE / "office.yaml", OFFICE / "office.sh")
    assert result.lab_error is None and result.load_errors == ()
    # no row of IPv6 applies: nobody inside has IPv6 ...
    assert {r.family for r in result.not_applicable} == {6}
    assert all(not r.applicable for r in result.results if r.family == 6)
    assert IPV6_STILL_MATTERS in result.notes
    # ... but IPv6 still matters: Teredo and 6in4 carry it through IPv4, and the office's
    # rules leave them open: exactly those rows fail, every other holds
    failed = {(r.probe, r.variant) for r in result.results if r.failed}
    assert failed == {("teredo", v) for v in ("plain", "plain-465", "tclass", "origin", "auth",
                                              "ipv4-options", "ipv6-extension", "fragment",
                                              "other-port", "tunnel")} | {
        ("tunnel6in4", "plain"), ("tunnel6in4", "plain-465")}
    assert all(r.observed == Verdict.ALLOWED for r in result.results if r.failed)
    assert not result.passed
    (smtp,) = [r for r in _rows(result, "pc1", "smtp", 4) if r.target == "remote-mx"]
    assert smtp.rule is not None and smtp.rule.startswith("gw: iptables -t filter FORWARD#2:")


NAT = """\
iptables -t nat -A POSTROUTING -o ens20 -s 203.0.113.0/24 -j MASQUERADE --random-fully
iptables -A FORWARD -i ens18+ -o ens20 -p tcp --dport 25 -j DROP
ip6tables -A FORWARD -i ens18 -o ens20 -p tcp --dport 25 -j DROP
"""
EXPECT = """\
  - {from: clients, to: sink, probes: [web, dns], families: [4, 6], verdict: allowed}
  - {from: clients, to: remote-mx, probes: [smtp], families: [4, 6], verdict: blocked}
  - {from: clients, to: remote-mx, probes: [teredo], variants: [plain, control-80, fragment],
     families: [4], verdict: allowed}
  - {from: clients, to: remote-mx, probes: [tunnel6in4], variants: [plain, control-80],
     families: [4], verdict: allowed}
"""


def test_evidence_stays_with_its_probe_when_nat_rewrites_every_port(tmp_path: Path) -> None:
    # a scenario of its own on the campus, the site file in its folder; MASQUERADE
    # --random-fully gives every connection a random source port (before: 12 rows error,
    # the far side looked for the probes' own ports)
    folder = tmp_path / "random-ports"
    folder.mkdir()
    shutil.copy(CAMPUS / "campus.yaml", folder / "campus.yaml")
    (folder / "nat.sh").write_text(NAT)
    (folder / "scenario.yaml").write_text(
        f"topology: campus.yaml\npolicy:\n  fw: [nat.sh]\nexpect:\n{EXPECT}")
    s = scenario.load(str(folder))
    result = _run(s)
    assert result.lab_error is None and result.load_errors == ()
    assert [r.detail for r in result.results if r.failed] == []
    assert result.passed
    for probe in ("web", "dns"):
        (row,) = _rows(result, "guest1", probe, 4)
        assert [s.role for s in row.evidence.far_side] == ["sink"]
        # the packet went through the MASQUERADE rule on its way
        assert any(h.rule.target == "MASQUERADE" for h in row.evidence.rule_hits), row.detail
    # the sink's answer (RST: nothing listens on 80) came back through NAT to the probe's port
    (web,) = _rows(result, "guest1", "web", 4)
    assert web.evidence.sender is not None
    assert (web.evidence.sender.reply, web.evidence.sender.source) == (
        "rst", s.site.role("sink").address(4))
