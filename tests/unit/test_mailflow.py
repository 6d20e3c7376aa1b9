"""The mail side of a probe over a fake lab: the dialogue it holds, and the wait for
delivery (delivered, deferred by a router rule, or not delivered at all)."""

from __future__ import annotations

import time
from pathlib import Path

from lab.engine.mailflow import Reached, await_delivery, dialogue_for
from lab.engine.probing import probe_once
from lab.model.evidence import Sighting
from lab.model.scenario import Expectation
from lab.model.verdict import Decision, Verdict
from lab.netfilter.rules import Rule
from lab.services import mail
from probes.dialogue import Transcript
from probes.registry import PROBES
from probes.requests import PacketAnswer, SmtpRequest
from tests.unit.fake_lab import FakeLab, Reply, rule

MX, REMOTE_MX = "203.0.113.25", "198.51.100.25"
DROP_RELAY = rule("gw", "FORWARD", 4, "-s 203.0.113.25/32 -o eth1 -p tcp -m tcp --dport 25 "
                  "-j DROP")
DNAT = rule("gw", "PREROUTING", 1, "-p tcp -m tcp --dport 25 -j DNAT --to-destination "
            "198.51.100.80:25", table="nat")
TOKEN = "port25lab-p25-fa4e00-20001"  # what probe_once puts in the message (prefix, sport)
QUEUED = "4Q1ABC"
DEFERRED = (f"Nov 28 05:34:51 mx postfix/smtp[103]: {QUEUED}: to=<postmaster@example.net>, "
            "relay=none, delay=1.1, status=deferred (connect to 198.51.100.25"
            "[198.51.100.25]:25: Connection timed out)\n")
ALLOWED = Decision(Verdict.ALLOWED, None, "mx:587 saw the SYN")


def _lab(tmp_path: Path) -> FakeLab:
    lab = FakeLab(tmp_path, rules=(DNAT, DROP_RELAY))
    lab.serve_mail(mail.MailServer("mx", "mx.example.org", ("example.org",), submission=True,
                                   users=mail.LAB_USERS))
    lab.serve_mail(mail.MailServer("remote-mx", "mx.example.net",
                                   ("example.net", "v6.example.net"), submission=False))
    return lab


def _mailbox(lab: FakeLab, role: str, name: str, text: str) -> None:
    new = lab.mail[role].mail / "postmaster" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / name).write_text(text)


def test_delivered_into_the_targets_mailbox(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    _mailbox(lab, "remote-mx", "1700000001.M1.remote-mx", "Subject: someone else's\r\n")
    _mailbox(lab, "remote-mx", "1700000002.M2.remote-mx", f"Subject: {TOKEN}\r\n")
    delivery = await_delivery(lab, Reached("mx", ALLOWED), "remote-mx", 4, TOKEN, QUEUED,
                              lab.rules(4))
    assert delivery.delivered and delivery.mailbox == "1700000002.M2.remote-mx"
    assert delivery.describe() == ("delivered via mx into remote-mx's mailbox "
                                   "(1700000002.M2.remote-mx)")
    # straight to the target (mail-25): no relay in the sentence
    direct = await_delivery(lab, Reached("remote-mx", ALLOWED), "remote-mx", 4, TOKEN, QUEUED,
                            lab.rules(4))
    assert direct.describe() == "delivered into remote-mx's mailbox (1700000002.M2.remote-mx)"


def test_deferred_by_a_drop_cites_the_rule_and_does_not_wait(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    before = lab.rules(4)
    lab.mail["mx"].log.parent.mkdir(parents=True, exist_ok=True)
    lab.mail["mx"].log.write_text(DEFERRED)
    lab.count(DROP_RELAY)  # the relay's own SYN, dropped on its way out
    started = time.monotonic()
    delivery = await_delivery(lab, Reached("mx", ALLOWED), "remote-mx", 4, TOKEN, QUEUED,
                              before)
    assert time.monotonic() - started < 1.0  # the relay said why: no need to wait 5 s
    assert not delivery.delivered
    assert delivery.stopped_by is not None and delivery.stopped_by.key == DROP_RELAY.key
    assert delivery.describe() == (
        "not delivered: mx says: to=<postmaster@example.net>, relay=none, delay=1.1, "
        "status=deferred (connect to 198.51.100.25[198.51.100.25]:25: Connection timed out)")


def test_a_rewrite_of_the_relays_way_is_what_stopped_it(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    before = lab.rules(4)
    lab.count(DNAT)
    delivery = await_delivery(lab, Reached("mx", ALLOWED), "remote-mx", 4, TOKEN, QUEUED,
                              before, wait=0.2)
    assert delivery.stopped_by is not None and delivery.stopped_by.target == "DNAT"
    assert delivery.describe() == f"not delivered: queued as {QUEUED}, not delivered"


def test_not_delivered_and_nothing_explains_it(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    started = time.monotonic()
    delivery = await_delivery(lab, Reached("mx", ALLOWED), "remote-mx", 4, TOKEN, QUEUED,
                              lab.rules(4), wait=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert (delivery.delivered, delivery.stopped_by) == (False, None)
    assert delivery.describe() == f"not delivered in 0 s: queued as {QUEUED}, not delivered"


def _mail_probe(lab: FakeLab, relayed: tuple[Rule, ...] = ()) -> None:
    """client1 submits to mx:587, which queues the message (and relays it: `relayed`
    are the rules that count mx's own connection)."""
    lab.answers("client1", Reply(PacketAnswer("synack", 20001, 0.4, MX, 587, 64),
                                 seen=(Sighting("mx", MX, 587),)),
                Reply(Transcript(banner="220 mx.example.org ESMTP port25lab mx",
                                 ehlo_name="mx.example.org", tls_subject="CN=mx.example.org",
                                 steps=[("AUTH", 235, "authenticated"),
                                        ("MAIL", 250, "2.1.0 Ok"),
                                        ("RCPT postmaster@example.net", 250, "2.1.5 Ok"),
                                        ("DATA", 250, f"2.0.0 Ok: queued as {QUEUED}")],
                                 queue_id=QUEUED), counted=relayed))


def test_a_mail_probe_submits_then_finds_the_message(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    _mail_probe(lab)
    _mailbox(lab, "remote-mx", "1700000002.M2.remote-mx", f"Subject: {TOKEN}\r\n")
    r = probe_once(lab, Expectation("client1", "remote-mx", "mail", 4, Verdict.ALLOWED), 20001)
    assert r.observed == Verdict.ALLOWED and r.passed
    smtp = lab.requests("client1")[1]
    assert isinstance(smtp, SmtpRequest) and (smtp.dst, smtp.dport) == (MX, 587)
    assert smtp.dialogue == dialogue_for(PROBES["mail"], lab, "remote-mx", 4, TOKEN)
    assert smtp.dialogue.user == "alice" and TOKEN in (smtp.dialogue.message or "")
    assert r.detail == (
        "mx:587 saw the SYN; SYN-ACK from 203.0.113.25 port 587 ttl 64; "
        "banner '220 mx.example.org ESMTP port25lab mx'; EHLO mx.example.org; "
        "TLS CN=mx.example.org; AUTH: 235 authenticated; MAIL: 250 2.1.0 Ok; "
        "RCPT postmaster@example.net: 250 2.1.5 Ok; DATA: 250 2.0.0 Ok: queued as 4Q1ABC; "
        "delivered via mx into remote-mx's mailbox (1700000002.M2.remote-mx)")
    assert r.evidence.smtp is not None and r.evidence.smtp.queue_id == QUEUED
    assert r.evidence.delivery is not None and r.evidence.delivery.delivered


def test_a_mail_probe_deferred_by_a_drop_is_blocked_by_it(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    _mail_probe(lab, relayed=(DROP_RELAY,))
    lab.mail["mx"].log.parent.mkdir(parents=True, exist_ok=True)
    lab.mail["mx"].log.write_text(DEFERRED)
    r = probe_once(lab, Expectation("client1", "remote-mx", "mail", 4, Verdict.BLOCKED), 20001)
    assert r.observed == Verdict.BLOCKED and r.rule == DROP_RELAY.cite()
    assert r.detail.endswith("; not delivered: mx says: to=<postmaster@example.net>, "
                             "relay=none, delay=1.1, status=deferred (connect to "
                             "198.51.100.25[198.51.100.25]:25: Connection timed out)")
