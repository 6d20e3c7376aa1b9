"""The four block scenarios against the real kernel: verdicts, evidence, load errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.runtime import lifecycle
from tests.support import leftovers

pytestmark = pytest.mark.lab


def _run(name: str) -> ScenarioResult:
    run = lifecycle.new_run()
    try:
        result = verify(scenario.load(name), run, lambda _: None)
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []
    return result


@pytest.fixture(scope="module", params=["seed-screened-block", "seed-dmz-block",
                                        "fixed-screened-block", "fixed-dmz-block"])
def outcome(request: pytest.FixtureRequest) -> Iterator[ScenarioResult]:
    yield _run(request.param)


def _rows(result: ScenarioResult, source: str, target: str) -> list[Result]:
    rows = [r for r in result.results if r.source.startswith(source) and r.target == target]
    assert rows, f"no results for {source} → {target}"
    return rows


def test_lab_ran(outcome: ScenarioResult) -> None:
    assert outcome.lab_error is None
    assert not any(r.observed == Verdict.ERROR for r in outcome.results), [
        r.detail for r in outcome.results if r.observed == Verdict.ERROR]


def test_clients_blocked_to_foreign_mx_with_the_deciding_rule(outcome: ScenarioResult) -> None:
    router = "gw" if "screened" in outcome.name else "inner"
    rows = [r for r in _rows(outcome, "client", "remote-mx") if r.probe in ("smtp", "smtps")]
    assert {(r.probe, r.family) for r in rows} == {
        (p, f) for p in ("smtp", "smtps") for f in (4, 6)}
    for r in rows:
        assert r.observed == Verdict.BLOCKED
        assert r.rule is not None and r.rule.startswith(f"{router}: ")
        tool = "iptables" if r.family == 4 else "ip6tables"
        assert f"{tool} -t filter FORWARD#" in r.rule
        assert r.rule.endswith("--dports 25,465 -j DROP")
        assert "logged by" in r.detail  # the published LOG rule matched first


def test_mail_server_reaches_the_world_and_is_reached(outcome: ScenarioResult) -> None:
    for r in _rows(outcome, "mx", "remote-mx"):
        assert r.observed == Verdict.ALLOWED
        # the real Postfix of remote-mx answered, over TLS on 465
        assert "banner '220 mx.example.net ESMTP port25lab remote-mx'" in r.detail
        assert ("TLS CN=mx.example.net" in r.detail) == (r.probe == "smtps")
    for r in _rows(outcome, "remote-mx", "mx"):
        assert r.observed == Verdict.ALLOWED
        assert "banner '220 mx.example.org ESMTP port25lab mx'" in r.detail


def test_clients_submit_on_587(outcome: ScenarioResult) -> None:
    rows = [r for r in _rows(outcome, "client", "mx") if r.probe == "submission"]
    assert len(rows) == 4
    assert all(r.observed == Verdict.ALLOWED for r in rows)


def test_published_teredo_line_fails_to_load(outcome: ScenarioResult) -> None:
    if outcome.name.startswith("fixed-"):
        assert outcome.load_errors == ()
        assert outcome.passed
        return
    line = 14 if "screened" in outcome.name else 10
    assert [(e.file.split("/")[-2:], e.line, e.message) for e in outcome.load_errors] == [
        ([outcome.name, "rules.sh"], line, "Bad argument `3544'")]
    assert not outcome.passed


def test_dmz_published_rules_cut_clients_off_their_own_465(outcome: ScenarioResult) -> None:
    rows = [r for r in _rows(outcome, "client", "mx") if r.probe == "smtps"]
    want = Verdict.BLOCKED if outcome.name == "seed-dmz-block" else Verdict.ALLOWED
    assert [r.observed for r in rows] == [want] * 4


def test_submission_is_delivered_and_the_spambot_is_stopped(outcome: ScenarioResult) -> None:
    router = "gw" if "screened" in outcome.name else "inner"
    for r in _rows(outcome, "client", "remote-mx"):
        if r.probe == "mail":
            assert r.observed == Verdict.ALLOWED, r.detail
            assert "AUTH: 235" in r.detail and "via mx into remote-mx's mailbox" in r.detail
        elif r.probe == "spam":
            assert r.observed == Verdict.BLOCKED
            assert r.rule is not None and r.rule.startswith(f"{router}: ")


def test_rfc2142_addresses_are_accepted(outcome: ScenarioResult) -> None:
    rows = [r for r in _rows(outcome, "remote-mx", "mx") if r.probe == "rfc2142"]
    assert [r.observed for r in rows] == [Verdict.ALLOWED] * 2
    for r in rows:
        for rcpt in ("abuse@example.org", "Abuse@EXAMPLE.ORG", "postmaster@example.org",
                     "POSTMASTER@Example.Org"):
            assert f"RCPT {rcpt}: 250" in r.detail
