"""The guessing ladder: what a bounded password-guessing run on submission proves.

    a guess accepted                      → allowed, and the account is weak
    refusals, then cut off by a ban rule  → banned (the trap fired)
    refusals, then cut off, no ban rule   → error (nothing explains it)
    every guess refused                   → refused
"""

from __future__ import annotations

from dataclasses import replace

from lab.engine.bans import maxretry
from lab.engine.labview import LabView
from lab.engine.round import evidence_round
from lab.evidence.bans import BanWatcher
from lab.model.evidence import Endpoint, Evidence
from lab.model.results import Result
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from probes.guessing import LIMIT, TRIVIAL_PASSWORDS
from probes.registry import PROBES
from probes.requests import GuessRequest

GUESS_TIMEOUT = 3.0  # s: per guessing connection


def guess_probe(lab: LabView, expectation: Expectation, watcher: BanWatcher | None) -> Result:
    """Password guessing on the target's submission port (probes.guessing)."""
    probe = PROBES[expectation.probe]
    family = expectation.family
    address = lab.site.role(expectation.target).address(family)
    source = lab.site.role(expectation.source).address(family)
    evidence = Evidence(Endpoint(expectation.target, address, probe.port))

    def result(verdict: Verdict, rule: str | None, detail: str, elapsed: float = 0.0,
               weak: str = "") -> Result:
        # `evidence` as gathered by then
        return Result(expectation.source, expectation.target, expectation.probe, family,
                      expectation.verdict, verdict, rule, detail, elapsed, weak_account=weak,
                      evidence=evidence)

    server = lab.mail.get(expectation.target)
    if server is None or not server.server.users:
        return result(Verdict.ERROR, None, f"{expectation.target} has no submission accounts")
    users = tuple(u.name for u in server.server.users)
    # the counters around the whole ladder: a ban rule that cut the guesser off counted
    ladder = evidence_round(lab, expectation.source, GuessRequest(address, probe.port, users),
                            family, None, GUESS_TIMEOUT,
                            patience=LIMIT * GUESS_TIMEOUT * 4 + 10)
    guesses, elapsed = ladder.answer.guesses, ladder.asked_ms
    evidence = Evidence(evidence.addressed, rule_hits=ladder.rule_hits, guesses=guesses)
    if ladder.answer.error is not None:
        return result(Verdict.ERROR, None, ladder.answer.error, elapsed)
    refusals = [g for g in guesses if 500 <= g.code < 600]
    where = f"{expectation.target}:{probe.port}"
    tried = f"{len(guesses)} guesses for {len(users)} accounts"
    accepted = [g for g in guesses if g.code == 235]
    if accepted:
        g = accepted[0]
        return result(Verdict.ALLOWED, None,
                      f"{where} accepted a guess after {len(refusals)} refusals: account "
                      f"{g.user} has a trivial password (no. {g.index + 1} of "
                      f"{len(TRIVIAL_PASSWORDS)} in the built-in list)", elapsed, g.user)
    bans = [h for h in ladder.rule_hits if h.rule.is_ban]
    if guesses and guesses[-1].code == 0:
        failure = guesses[-1].error
        if bans:
            # the guesser saw the ban first: give the watcher its next look
            ban = watcher.wait_banned(source, 1.0) if watcher else None
            if ban is not None and watcher is not None:
                evidence = replace(evidence, ban=ban)
                retry = maxretry(lab, ban)
                if retry and len(refusals) >= retry:
                    watcher.explain(source, refusals[retry - 1].at, "refused guess", retry)
            return result(Verdict.BANNED, bans[0].rule.cite(),
                          f"{where} refused {len(refusals)} guesses, then the guesser was cut "
                          f"off ({failure})", elapsed)
        return result(Verdict.ERROR, None,
                      f"{where} refused {len(refusals)} guesses, then stopped answering "
                      f"({failure}) and no ban rule explains it", elapsed)
    return result(Verdict.REFUSED, None,
                  f"{where} refused all {tried} ({refusals[-1].code if refusals else '-'}) "
                  "and never cut the guesser off", elapsed)
