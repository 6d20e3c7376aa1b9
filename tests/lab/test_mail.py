"""The real mail path against the real daemons: Postfix and Dovecot SASL on mx,
Postfix on remote-mx. Delivery is proved by reading remote-mx's mailbox."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import topologies
from lab.engine.verify import load_policies
from lab.errors import LabFailure
from lab.model import scenario
from lab.runtime import lifecycle
from lab.runtime.handle import NodeHandle
from lab.runtime.lab import Lab
from lab.services import mail
from probes.dialogue import Dialogue, Transcript
from probes.requests import SmtpRequest
from tests.support import leftovers

pytestmark = pytest.mark.lab

ALICE = mail.LAB_USERS[0]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    run = lifecycle.new_run()
    try:
        with Lab(topologies.load("screened-host"), run) as booted:
            assert load_policies(booted, scenario.load("fixed-screened-block")) == []
            yield booted
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []


def talk(lab: Lab, source: str, target: str, port: int, family: int = 4,
         **dialogue: Any) -> Transcript:
    address = lab.site.role(target).address(family)
    return lab.agent(source).ask(SmtpRequest(address, port, Dialogue(**dialogue), 5.0),
                                 timeout=30)


def steps(transcript: Transcript) -> dict[str, tuple[int, str]]:
    return {command: (code, text) for command, code, text in transcript.steps}


def wait_for_mail(lab: Lab, token: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in mail.delivered(lab.mail["remote-mx"]):
            text = message.read_text()
            if token in text:
                return text
        time.sleep(0.05)
    raise AssertionError(f"{token} never reached remote-mx's mailbox")


def test_submission_requires_starttls_before_auth(lab: Lab) -> None:
    said = talk(lab, "client1", "mx", 587, mail_before_auth="alice@example.org")
    assert said.banner == "220 mx.example.org ESMTP port25lab mx"
    assert said.ehlo_name == "mx.example.org"
    assert said.starttls_offered is True
    assert said.auth_before_tls is False  # RFC 6409: no AUTH in the clear
    code, text = steps(said)["MAIL before AUTH"]
    assert code == 530 and "STARTTLS" in text


def test_mail_before_auth_is_refused_after_tls(lab: Lab) -> None:
    said = talk(lab, "client2", "mx", 587, tls="starttls", mail_from="alice@example.org",
                rcpts=("postmaster@example.net",))
    assert said.tls_subject == "CN=mx.example.org"
    code, text = steps(said)["MAIL"]
    assert code == 554 and "Access denied" in text


def test_wrong_password_is_refused(lab: Lab) -> None:
    said = talk(lab, "client1", "mx", 587, tls="starttls", user=ALICE.name,
                password="not-" + ALICE.password, mail_from="alice@example.org")
    code, _ = steps(said)["AUTH"]
    assert code == 535
    assert "MAIL" not in steps(said)


@pytest.mark.parametrize("port, tls, family, domain", [
    (587, "starttls", 4, "example.net"),
    (465, "implicit", 6, "v6.example.net"),
])
def test_authenticated_mail_is_delivered_through_the_router(
        lab: Lab, port: int, tls: str, family: int, domain: str) -> None:
    token = f"delivery-{port}-{os.getpid()}-{time.monotonic_ns()}"
    said = talk(lab, "client1", "mx", port, family=family, tls=tls, user=ALICE.name,
                password=ALICE.password, mail_from="alice@example.org",
                rcpts=(f"someone@{domain}",),
                message=f"From: alice@example.org\r\nSubject: {token}\r\n\r\n{token}\r\n")
    assert steps(said)["AUTH"][0] == 235
    assert said.queue_id, said
    text = wait_for_mail(lab, token)
    assert "from mx.example.org" in text  # remote-mx's Received: header names the relay
    status = mail.queue_status(lab.mail["mx"], said.queue_id)
    assert status is not None and "status=sent" in status
    relay = lab.site.role("remote-mx").address(family)
    assert f"relay={relay}[{relay}]:25" in status  # over the family the domain asks for


def test_rfc2142_recipients_in_any_case_and_unknown_users_refused(lab: Lab) -> None:
    said = talk(lab, "remote-mx", "mx", 25, mail_from="check@example.net",
                rcpts=("ABUSE@example.org", "PostMaster@Example.ORG", "nobody-here@example.org"))
    replies = steps(said)
    assert replies["RCPT ABUSE@example.org"][0] == 250
    assert replies["RCPT PostMaster@Example.ORG"][0] == 250
    assert replies["RCPT nobody-here@example.org"][0] == 550  # not a catch-all


def test_remote_mx_takes_mail_for_its_domain_only(lab: Lab) -> None:
    said = talk(lab, "mx", "remote-mx", 25, mail_from="alice@example.org",
                rcpts=("anyone@example.net", "someone@example.com"))
    replies = steps(said)
    assert replies["RCPT anyone@example.net"][0] == 250
    assert replies["RCPT someone@example.com"][0] == 454  # no open relay


def test_daemons_run_from_the_run_folder_and_stop_with_the_lab() -> None:
    run = lifecycle.new_run()
    try:
        with Lab(topologies.load("dmz"), run) as booted:
            pids = [pid for inst in booted.mail.values() for pid in mail.pids(inst)]
            assert len(pids) == 3  # two Postfix masters, one Dovecot
            for pid in pids:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text()
                assert str(run.folder) in cmdline
    finally:
        lifecycle.destroy(run)
    assert not [pid for pid in pids if lifecycle.is_running(pid)]
    assert leftovers(run.prefix) == []


def own_sessions(lab: Lab, role: str) -> list[str]:
    """The server's log lines about clients at its own address (what the boot's greeting
    left), without their dates and process ids."""
    address = lab.site.role(role).address(4)
    return [line.split(" postfix/", 1)[1].replace(f"unknown[{address}]", "OWN")
            for line in lab.mail[role].log.read_text().splitlines()
            if f"[{address}]" in line]


def test_each_port_greeted_its_own_server_once_at_boot_and_nothing_was_refused(
        lab: Lab) -> None:
    # one session per port: the commands a probe's client uses, none refused
    def sessions(role: str) -> dict[str, str]:
        # smtpd logs a disconnect after its 221 (the greeting's end): wait for the last one
        ports = len(mail.servers_for(lab.site)[role].ports)
        deadline = time.monotonic() + 5
        while True:
            lines = own_sessions(lab, role)
            said = {ln.split("/", 1)[0]: ln.split("disconnect from OWN ", 1)[1]
                    for ln in lines if "disconnect from OWN" in ln}
            if len(said) == ports or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(lines) == 2 * len(said), lines  # a connect and a disconnect line each
        return said

    assert sessions("mx") == {
        "smtp": "ehlo=2 starttls=1 mail=1 rset=1 quit=1 commands=6",
        "smtps": "ehlo=1 quit=1 commands=2",  # AUTH first there: no MAIL to refuse
        "submission": "ehlo=2 starttls=1 quit=1 commands=4"}
    assert sessions("remote-mx") == {
        "smtp": "ehlo=2 starttls=1 mail=1 rset=1 quit=1 commands=6",
        "smtps": "ehlo=1 mail=1 rset=1 quit=1 commands=4"}


def closed(node: NodeHandle, ports: set[int], seconds: float = 5.0) -> bool:
    """The ports stop listening: smtpd processes end on their own once master has gone."""
    deadline = time.monotonic() + seconds
    while ports & node.listening():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class _MissingKey(mail.Mail):
    """A Postfix whose key file is not there: it listens, but its smtpd has no TLS."""

    def prepare(self) -> None:
        super().prepare()
        main_cf = self.instance.config / "main.cf"
        dated = main_cf.stat().st_mtime  # back, as prepare left it (Postfix rereads a young file)
        main_cf.write_text(main_cf.read_text().replace(
            "smtpd_tls_key_file = ", "smtpd_tls_key_file = /nonexistent"))
        os.utime(main_cf, (dated, dated))


def test_a_server_that_listens_but_cannot_greet_is_one_line_not_ready(lab: Lab) -> None:
    node = lab.nodes["client1"]  # a node without a mail server of its own
    server = mail.MailServer("client1", "client1.example.org", ("example.org",),
                             submission=False, address=lab.site.role("client1").address(4))
    broken = _MissingKey(node, server)
    try:
        with pytest.raises(LabFailure) as failed:
            lab.start_services([broken])
        assert str(failed.value) == ("client1: Postfix port 25 does not greet: 454 4.7.0 TLS "
                                     "not available due to local problem")
        assert {25, 465} <= node.listening()  # listening alone would have been "ready"
    finally:
        lab.stop_services([broken])
    assert closed(node, {25, 465})


class _UnknownDovecotSetting(mail.Mail):
    """A submission server whose Dovecot configuration names a setting Dovecot lacks."""

    def prepare(self) -> None:
        super().prepare()
        with self.instance.dovecot_conf.open("a") as conf:
            conf.write("no_such_setting = 1\n")


def test_a_dovecot_that_refuses_its_configuration_is_one_line_with_its_words(
        lab: Lab) -> None:
    node = lab.nodes["client2"]
    server = mail.MailServer("client2", "client2.example.org", ("example.org",),
                             submission=True, users=mail.LAB_USERS,
                             address=lab.site.role("client2").address(4))
    broken = _UnknownDovecotSetting(node, server)
    try:
        with pytest.raises(LabFailure) as failed:
            lab.start_services([broken])
        said = str(failed.value)
        assert said.startswith("client2: dovecot failed: doveconf: Fatal: Error in "
                               "configuration file "), said
        assert said.endswith("Unknown setting: no_such_setting") and "\n" not in said
    finally:
        lab.stop_services([broken])
    assert closed(node, {25, 465, 587})
