"""The nftables scenarios through `verify`, once each: they pass or fail as their READMEs say.

One lab run per scenario (module-scoped), then several checks on its result:
the failing rows are exactly the ones the README names, and the deciding
rules are the ones it describes.
"""

from __future__ import annotations

from collections.abc import Iterator

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

CLIENTS = ("client1", "client2")
# scenario → its failing rows as (source, probe, variant, family, after), per its README
TUNNELS_TO_SMTP = {(c, p, v, 4, "") for c in CLIENTS
                   for p, vs in (("teredo", TEREDO_VARIANTS), ("tunnel6in4", SIX_IN_FOUR_VARIANTS))
                   for v, variant in vs.items()
                   if not variant.is_control and not (p == "teredo" and v in BEYOND_FIXED)}
FAILING = {
    "fixed-screened-block-nft": set(),
    "fixed-dmz-block-nft": set(),
    "fixed-proxy-nft": set(),
    "fixed-trap-nft": set(),
    "seed-trap-nft": {("client2", p, "", f, "ban") for p in ("web", "dns", "submission")
                      for f in (4, 6)},
    "teredo-payload-nft": {(c, "teredo", v, 4, "") for c in CLIENTS for v in BEYOND_FIXED},
    "seed-translated": TUNNELS_TO_SMTP,
    "fixed-screened-block-translated": TUNNELS_TO_SMTP,
}


@pytest.fixture(scope="module", params=sorted(FAILING))
def outcome(request: pytest.FixtureRequest) -> Iterator[ScenarioResult]:
    run = lifecycle.new_run()
    try:
        result = verify(scenario.load(request.param), run, lambda _: None)
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []
    yield result


def _key(r: Result) -> tuple[str, str, str, int, str]:
    return (r.source, r.probe, r.variant, r.family, r.after)


def test_the_failing_rows_are_the_ones_the_readme_names(outcome: ScenarioResult) -> None:
    assert outcome.lab_error is None and outcome.load_errors == ()
    failing = {_key(r) for r in outcome.results if not r.passed}
    assert failing == FAILING[outcome.name], [
        (r.source, r.target, r.probe, r.variant, r.family, r.observed, r.detail)
        for r in outcome.results if not r.passed]
    assert not any(r.observed == Verdict.ERROR for r in outcome.results)


def test_a_blocked_row_cites_its_nft_rule_and_line(outcome: ScenarioResult) -> None:
    if outcome.name.endswith("trap-nft"):  # the block rules there are iptables'
        return
    router = "inner" if "dmz" in outcome.name else "gw"
    blocked = [r for r in outcome.results if r.observed == Verdict.BLOCKED]
    assert blocked
    for r in blocked:
        assert r.rule is not None and r.rule.startswith(f"{router}: nft "), r.rule
        held = r.deciding_rule
        assert held is not None and held.native and held.drops
        assert held.source.startswith(f"scenarios/{outcome.name}/ruleset.nft:") or (
            outcome.name == "teredo-payload-nft"
            and held.source.startswith("scenarios/fixed-screened-block-nft/ruleset.nft:"))
    if outcome.name.endswith("-nft") and outcome.name != "fixed-proxy-nft":
        teredo = [r for r in blocked if r.probe == "teredo"]
        assert teredo and all("@th," in (r.rule or "") for r in teredo)


def test_the_traps_ban_from_the_kernels_sets(outcome: ScenarioResult) -> None:
    if not outcome.name.endswith("trap-nft"):
        return
    hook = "input" if outcome.name.startswith("seed") else "forward"
    assert {b.address for b in outcome.bans} == {"203.0.113.11", "2001:db8:b01a:70da::11"}
    for ban in outcome.bans:
        assert ban.jail == "port25-trap" and ban.chain == "f2b-chain"
        assert ban.hooked == (f"gw: nft inet f2b-table f2b-chain: type filter hook {hook} "
                              "priority -1",)
        assert ban.fired_by == "its firewall log line"
        assert ban.reaction_ms is not None and 0 < ban.reaction_ms < 5000
        assert ban.lifted_after_s is not None and 3 < ban.lifted_after_s < 30
    banned = [r for r in outcome.results if r.after == "ban"]
    for r in banned:
        if hook == "forward":
            assert r.observed == Verdict.BANNED
            assert r.rule is not None and r.rule.startswith(
                "gw: nft inet f2b-table f2b-chain handle "), r.rule
        else:  # forwarded traffic never passes the input hook
            assert r.observed == Verdict.ALLOWED
            assert "hook input" in r.detail
