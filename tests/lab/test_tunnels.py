"""Teredo and 6in4 variants through the real kernel: the published u32 expression
(syntax repaired), the corrected rules, and no rule at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.runtime import lifecycle
from probes.tunnel import SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS
from tests.support import leftovers
from tests.unit.test_tunnel import BEYOND_FIXED

pytestmark = pytest.mark.lab


def _verify(name_or_path: str) -> ScenarioResult:
    run = lifecycle.new_run()
    try:
        return verify(scenario.load(name_or_path), run, lambda _: None)
    finally:
        lifecycle.destroy(run)
        assert leftovers(run.prefix) == []


def _tunnels(result: ScenarioResult) -> dict[tuple[str, str], Result]:
    rows = {(r.probe, r.variant): r for r in result.results
            if r.source == "client1" and r.probe in ("teredo", "tunnel6in4")}
    every = {("teredo", v) for v in TEREDO_VARIANTS if v not in BEYOND_FIXED} | {
        ("tunnel6in4", v) for v in SIX_IN_FOUR_VARIANTS}
    assert set(rows) == every
    return rows


def test_the_published_expression_catches_no_variant() -> None:
    result = _verify("seed-teredo-syntax")
    assert result.load_errors == ()  # with --dport the line loads ...
    for (probe, variant), r in _tunnels(result).items():
        # ... and lets every tunnelled SYN through, port 25 included
        assert r.observed == Verdict.ALLOWED, (probe, variant, r.detail)
        if variant == "tunnel":
            # a real TCP connection over miredo reached remote-mx's Postfix
            assert "remote-mx:25 saw the SYN" in r.detail
            assert "banner '220 mx.example.net ESMTP port25lab remote-mx'" in r.detail
            continue
        assert "relay" in r.detail and "received it" in r.detail
        if variant != "fragment":
            assert "carrying TCP to 2001:db8:ffff:1::25 port" in r.detail


@pytest.mark.parametrize("name, router", [("fixed-screened-block", "gw"),
                                          ("fixed-dmz-block", "inner")])
def test_the_corrected_rules_catch_every_smtp_variant_and_no_control(
        name: str, router: str) -> None:
    result = _verify(name)
    for (probe, variant), r in _tunnels(result).items():
        control = (TEREDO_VARIANTS if probe == "teredo" else SIX_IN_FOUR_VARIANTS)[
            variant].is_control
        if control:
            assert r.observed == Verdict.ALLOWED, (variant, r.detail)
            continue
        assert r.observed == Verdict.BLOCKED, (probe, variant, r.detail)
        assert r.rule is not None and r.rule.startswith(f"{router}: iptables -t filter ")
        assert "-m u32" in r.rule and r.rule.endswith("-j DROP")
    rows = _tunnels(result)
    # the fragmented datagram is caught by the plain rule, once the router reassembles;
    # the real tunnel (UDP between the peers' own ports, not 3544) by the same rule
    assert rows["teredo", "fragment"].rule == rows["teredo", "plain"].rule
    assert rows["teredo", "tunnel"].rule == rows["teredo", "plain"].rule
    assert rows["tunnel6in4", "plain"].rule is not None
    assert "-p ipv6" in rows["tunnel6in4", "plain"].rule  # iptables' name for protocol 41


def test_with_no_rule_every_variant_reaches_the_relay(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    (folder / "scenario.yaml").write_text(
        "topology: screened-host\npolicy: {}\nexpect:\n"
        "  - {from: client1, to: remote-mx, probes: [teredo, tunnel6in4], families: [4], "
        "verdict: allowed}\n")
    result = _verify(str(folder))
    assert result.passed, [r.detail for r in result.results if not r.passed]
    assert len(result.results) == len(TEREDO_VARIANTS) + len(SIX_IN_FOUR_VARIANTS)


def test_a_rule_that_drops_teredo_itself_blocks_the_tunnel_and_the_run_goes_on(
        tmp_path: Path) -> None:
    # The "safer" blunt rule: drop every client datagram to UDP 3544. Miredo cannot
    # qualify — the policy working, not a broken lab — and its controls are over-blocked.
    folder = tmp_path / "blunt"
    folder.mkdir()
    fixed = Path(scenario.BUILTIN / "fixed-screened-block" / "rules.sh").read_text()
    (folder / "rules.sh").write_text(
        fixed + "iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 --dport 3544 -j DROP\n")
    (folder / "scenario.yaml").write_text(
        "topology: screened-host\npolicy: {gw: [rules.sh]}\nexpect:\n"
        "  - {from: client1, to: remote-mx, probes: [teredo], variants: [tunnel], "
        "families: [4], verdict: blocked}\n"
        "  - {from: client1, to: remote-mx, probes: [teredo], variants: [control-80, "
        "control-587], families: [4], verdict: allowed}\n")
    result = _verify(str(folder))
    assert result.lab_error is None
    rows = {(r.probe, r.variant): r for r in result.results}
    assert len(rows) == 3
    tunnel = rows["teredo", "tunnel"]
    assert tunnel.observed == Verdict.BLOCKED and tunnel.passed
    assert tunnel.rule is not None and "--dport 3544 -j DROP" in tunnel.rule
    assert "Teredo qualification of client1" in tunnel.detail
    assert "the tunnel never opened" in tunnel.detail
    for control in ("control-80", "control-587"):  # probed, and failing as over-blocked
        assert rows["teredo", control].observed == Verdict.BLOCKED
        assert not rows["teredo", control].passed
    assert not result.passed
