"""The guessing ladder over a fake lab: a weak account, a ban, an unexplained cut-off,
and a server that refuses every guess."""

from __future__ import annotations

from pathlib import Path

from lab.engine.guessing import GUESS_TIMEOUT, guess_probe
from lab.model.evidence import Endpoint
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from lab.services import mail
from probes.requests import Guess, GuessAnswer
from tests.unit.fake_lab import FakeLab, Reply, rule, wire

MX = "203.0.113.25"
BAN = rule("mx", "f2b-postfix-sasl", 1, "-s 198.51.100.25/32 -j REJECT --reject-with "
           "icmp-port-unreachable")
JUMP = rule("mx", "INPUT", 1, "-p tcp -m multiport --dports 587,465 -j f2b-postfix-sasl")
GUESSING = Expectation("remote-mx", "mx", "guessing", 4, Verdict.BANNED)
CUT_OFF = "ConnectionRefusedError: [Errno 111] Connection refused"


def _lab(tmp_path: Path, *replies: Reply) -> FakeLab:
    lab = FakeLab(tmp_path, rules=(JUMP, BAN))
    lab.serve_mail(mail.MailServer("mx", "mx.example.org", ("example.org",), submission=True,
                                   users=mail.LAB_USERS))
    lab.answers("remote-mx", *replies)
    return lab


def _refused(count: int) -> tuple[Guess, ...]:
    users = [u.name for u in mail.LAB_USERS]
    return tuple(Guess(users[n % 3], n // 3, 535, 100.0 + n) for n in range(count))


def test_an_accepted_guess_names_the_weak_account(tmp_path: Path) -> None:
    carol = Guess("carol", 4, 235, 120.0)
    lab = _lab(tmp_path, Reply(GuessAnswer((*_refused(14), carol))))
    r = guess_probe(lab, GUESSING, None)
    assert r.observed == Verdict.ALLOWED and r.weak_account == "carol"
    assert r.detail == ("mx:587 accepted a guess after 14 refusals: account carol has a "
                        "trivial password (no. 5 of 10 in the built-in list)")
    assert wire(lab.requests("remote-mx")[0]) == {
        "op": "guess", "dst": MX, "port": 587, "users": ["alice", "bob", "carol"],
        "timeout": GUESS_TIMEOUT}
    assert r.evidence.addressed == Endpoint("mx", MX, 587)
    assert r.evidence.guesses[-1] == carol and len(r.evidence.guesses) == 15


def test_refusals_then_a_cut_off_by_a_ban_rule_is_banned(tmp_path: Path) -> None:
    cut = Guess("carol", 1, 0, 110.0, CUT_OFF)
    # the ban rule counted the guesser's packets while the ladder ran
    lab = _lab(tmp_path, Reply(GuessAnswer((*_refused(5), cut)), counted=(JUMP, BAN)))
    r = guess_probe(lab, GUESSING, None)
    assert r.observed == Verdict.BANNED and r.passed
    assert r.rule == BAN.cite()
    assert r.detail == f"mx:587 refused 5 guesses, then the guesser was cut off ({CUT_OFF})"
    assert [h.rule.key for h in r.evidence.rule_hits] == [JUMP.key, BAN.key]
    assert r.weak_account == ""


def test_a_cut_off_no_ban_rule_explains_is_an_error(tmp_path: Path) -> None:
    cut = Guess("alice", 1, 0, 110.0, CUT_OFF)
    lab = _lab(tmp_path, Reply(GuessAnswer((*_refused(4), cut)), counted=(JUMP,)))
    r = guess_probe(lab, GUESSING, None)
    assert r.observed == Verdict.ERROR and r.rule is None and not r.passed
    assert r.detail == (f"mx:587 refused 4 guesses, then stopped answering ({CUT_OFF}) and "
                        "no ban rule explains it")


def test_every_guess_refused_is_refused(tmp_path: Path) -> None:
    lab = _lab(tmp_path, Reply(GuessAnswer(_refused(30))))
    r = guess_probe(lab, GUESSING, None)
    assert r.observed == Verdict.REFUSED
    assert r.detail == ("mx:587 refused all 30 guesses for 3 accounts (535) and never cut "
                        "the guesser off")


def test_a_target_the_guesser_refuses_is_an_error(tmp_path: Path) -> None:
    lab = _lab(tmp_path, Reply(GuessAnswer(error="refusing to guess passwords on 8.8.8.8")))
    r = guess_probe(lab, GUESSING, None)
    assert (r.observed, r.detail) == (Verdict.ERROR, "refusing to guess passwords on 8.8.8.8")


def test_a_target_without_accounts_is_an_error_and_nothing_is_sent(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path)
    r = guess_probe(lab, GUESSING, None)
    assert (r.observed, r.detail) == (Verdict.ERROR, "mx has no submission accounts")
    assert lab.asked == []
