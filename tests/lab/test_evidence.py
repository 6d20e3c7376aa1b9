"""Verdicts that need other rules than the published ones: REJECT, DNAT, a chain policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.model.results import ScenarioResult
from lab.model.verdict import Verdict
from lab.runtime import lifecycle
from tests.support import leftovers

pytestmark = pytest.mark.lab


def _scenario(folder: Path, topology: str, router: str, rules: str, expect: str) -> Path:
    folder.mkdir()
    (folder / "rules.sh").write_text(rules)
    (folder / "scenario.yaml").write_text(
        f"topology: {topology}\npolicy:\n  {router}: [rules.sh]\nexpect:\n{expect}")
    return folder


def _verify(folder: Path) -> ScenarioResult:
    run = lifecycle.new_run()
    try:
        return verify(scenario.load(str(folder)), run, lambda _: None)
    finally:
        lifecycle.destroy(run)
        assert leftovers(run.prefix) == []


def test_reject_is_blocked_and_names_the_rule(tmp_path: Path) -> None:
    folder = _scenario(tmp_path / "reject", "screened-host", "gw", (
        "iptables -A FORWARD -i eth0 -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n"
        "iptables -A FORWARD -i eth0 -p tcp --dport 465 -j REJECT\n"
        "ip6tables -A FORWARD -i eth0 -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n"),
        "  - {from: client1, to: remote-mx, probes: [smtp, smtps], families: [4], "
        "verdict: blocked}\n"
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [6], verdict: blocked}\n")
    result = _verify(folder)
    assert result.passed, [r.detail for r in result.results]
    by = {(r.probe, r.family): r for r in result.results}
    # the RST carries remote-mx's address but comes from the router: the counter decides
    assert "rejected" in by["smtp", 4].detail and "RST from 198.51.100.25" in by["smtp", 4].detail
    assert "ICMP unreachable/code 3 from 203.0.113.1" in by["smtps", 4].detail
    assert by["smtp", 4].rule == ("gw: iptables -t filter FORWARD#1: -A FORWARD -i eth0 -p tcp "
                                  "-m tcp --dport 25 -j REJECT --reject-with tcp-reset")
    assert by["smtp", 6].rule is not None and "ip6tables" in by["smtp", 6].rule


def test_dnat_to_submission_is_diverted(tmp_path: Path) -> None:
    # In the DMZ the mail server answers through the inner router, so DNAT works.
    folder = _scenario(tmp_path / "divert", "dmz", "inner", (
        "iptables -t nat -A PREROUTING -i eth0 -p tcp -s 203.0.113.0/24 --dport 25 "
        "-j DNAT --to-destination 192.0.2.25:587\n"
        "ip6tables -t nat -A PREROUTING -i eth0 -p tcp -s 2001:db8:b01a:70da::/64 --dport 25 "
        "-j DNAT --to-destination [2001:db8:b01a:d32::25]:587\n"),
        "  - {from: client2, to: remote-mx, probes: [smtp], families: [4, 6], "
        "verdict: diverted}\n"
        "  - {from: client2, to: remote-mx, probes: [smtps], families: [4], verdict: allowed}\n")
    result = _verify(folder)
    assert result.passed, [r.detail for r in result.results]
    for r in result.results:
        if r.probe == "smtp":
            assert "answered by mx:587 instead of remote-mx:25" in r.detail
            assert "banner '220 mx.example.org ESMTP port25lab mx'" in r.detail
            assert r.rule is not None and "-t nat PREROUTING#1" in r.rule and "DNAT" in r.rule


def test_chain_policy_drop_is_cited_when_no_rule_matches(tmp_path: Path) -> None:
    folder = _scenario(tmp_path / "policy", "screened-host", "gw", (
        "iptables -P FORWARD DROP\n"
        "iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "iptables -A FORWARD -i eth0 -s 203.0.113.25 -j ACCEPT\n"),
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n"
        "  - {from: mx, to: remote-mx, probes: [smtp], families: [4], verdict: allowed}\n")
    result = _verify(folder)
    assert result.passed, [r.detail for r in result.results]
    blocked = next(r for r in result.results if r.source == "client1")
    assert blocked.rule == "gw: iptables -t filter -P FORWARD DROP (policy)"


def test_a_failing_line_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    folder = _scenario(tmp_path / "broken", "screened-host", "gw", (
        "iptables -A FORWARD -i eth0 -p tcp --dport 25 -j NOSUCHTARGET\n"
        "\n"
        "iptables -A FORWARD -i eth0 -p tcp --dport 25 -j DROP\n"),
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n")
    result = _verify(folder)
    assert [(e.line, "NOSUCHTARGET" in e.message or "target" in e.message.lower())
            for e in result.load_errors] == [(1, True)]
    assert result.results[0].observed == Verdict.BLOCKED
    assert result.results[0].rule is not None and result.results[0].rule.endswith("-j DROP")
    assert not result.passed


def test_a_rewrite_then_dropped_names_the_rewrite_and_the_drop(tmp_path: Path) -> None:
    # DNAT to the screened host's own mx:25, with FORWARD's 25/465 drop behind it:
    # the rewritten SYN is dropped on its way back out of eth0.
    folder = _scenario(tmp_path / "dnat-dropped", "screened-host", "gw", (
        "iptables -t nat -A PREROUTING -i eth0 -p tcp -s 203.0.113.10 --dport 25 "
        "-j DNAT --to-destination 203.0.113.25:25\n"
        "iptables -A FORWARD -i eth0 -p tcp -s 203.0.113.0/24 -m multiport --dports 25,465 "
        "-j DROP\n"),
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n")
    result = _verify(folder)
    assert result.passed, [r.detail for r in result.results]
    (row,) = result.results
    assert row.rule is not None and row.rule.startswith("gw: iptables -t filter FORWARD#1:")
    assert "rewritten to 203.0.113.25:25 by gw: iptables -t nat PREROUTING#1:" in row.detail
    assert "then dropped before remote-mx:25" in row.detail
