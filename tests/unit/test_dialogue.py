"""SMTP dialogues as the lab reads them: describe() and the refusal of a transcript, the
transcript's round trip through the agent, and the probe catalogue."""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict
from typing import Any

import pytest

from lab.model.evidence import SmtpTranscript
from probes.dialogue import Dialogue, Transcript
from probes.registry import PROBES
from probes.requests import SmtpRequest

BANNER = "220 mx.example.org ESMTP port25lab mx"
EHLO = ("EHLO", 250, "mx.example.org\nPIPELINING\nSIZE 10240000\nSTARTTLS\n8BITMIME")
MAIL_BEFORE_AUTH = ("MAIL before AUTH", 530, "5.7.0 Must issue a STARTTLS command first")
RSET = ("RSET", 250, "2.0.0 Ok")


# what the lab asked: it reads the agent's answer line as this request's answer
ASKED = SmtpRequest("192.0.2.25", 25, Dialogue(), 5.0)


def _read(wired: dict[str, Any]) -> SmtpTranscript:
    """The transcript's evidence, as the lab reads the agent's answer line."""
    return SmtpTranscript.from_agent(ASKED.read_answer(json.loads(json.dumps(wired))))


def _transcript(*steps: tuple[str, int, str], **fields: Any) -> SmtpTranscript:
    """A transcript as the agent returns it (through JSON: steps are lists)."""
    base: dict[str, Any] = {"banner": BANNER, "ehlo_name": "mx.example.org",
                            "auth_before_tls": False, "starttls_offered": True,
                            "tls_subject": None, "steps": [list(s) for s in steps],
                            "queue_id": None, "error": None}
    return _read({**base, **fields})


# --- refused(): the first refusal of the mail, if any


def test_refused_at_mail() -> None:
    t = _transcript(EHLO, ("MAIL", 530, "5.7.0 Must issue a STARTTLS command first"))
    assert t.refusal == "MAIL: 530 5.7.0 Must issue a STARTTLS command first"


def test_refused_at_rcpt() -> None:
    t = _transcript(EHLO, ("MAIL", 250, "2.1.0 Ok"),
                    ("RCPT postmaster@example.net", 554,
                     "5.7.1 <postmaster@example.net>: Relay access denied"),
                    RSET)
    assert t.refusal == ("RCPT postmaster@example.net: 554 5.7.1 <postmaster@example.net>: "
                          "Relay access denied")


def test_refused_at_auth() -> None:
    t = _transcript(EHLO, ("STARTTLS", 220, "2.0.0 Ready to start TLS"), EHLO,
                    ("AUTH", 535, "5.7.8 Error: authentication failed: "
                                  "UGFzc3dvcmQ6\nmore text"),
                    tls_subject="CN=mx.example.org")
    # only the first line of the reply
    assert t.refusal == "AUTH: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6"


def test_the_first_refusal_is_named() -> None:
    t = _transcript(EHLO, ("MAIL", 250, "2.1.0 Ok"),
                    ("RCPT abuse@example.org", 450, "4.1.1 try later"),
                    ("RCPT postmaster@example.org", 550, "5.1.1 unknown"), RSET)
    assert t.refusal == "RCPT abuse@example.org: 450 4.1.1 try later"


def test_a_refusal_without_text() -> None:
    assert _transcript(EHLO, ("MAIL", 421, "")).refusal == "MAIL: 421"


def test_a_network_error_is_not_a_refusal() -> None:
    # a broken dialogue proves nothing about the server's policy: the probe says error
    t = _transcript(EHLO, ("MAIL", 250, "2.1.0 Ok"),
                    error="SMTPServerDisconnected: Connection unexpectedly closed")
    assert t.refusal is None


def test_a_network_error_before_any_reply_is_not_a_refusal() -> None:
    t = _transcript(banner=None, ehlo_name=None, auth_before_tls=None, starttls_offered=None,
                    error="ConnectionRefusedError: [Errno 111] Connection refused")
    assert t.refusal is None


def test_an_smtp_refusal_is_named_before_the_error() -> None:
    t = _transcript(EHLO, ("MAIL", 530, "5.7.0 Authentication required"),
                    error="SMTPServerDisconnected: Connection unexpectedly closed")
    assert t.refusal == "MAIL: 530 5.7.0 Authentication required"


def test_mail_before_auth_and_rset_are_not_refusals() -> None:
    # the connect probes try MAIL before AUTH on purpose: its 530 is what a 587 should say
    t = _transcript(EHLO, MAIL_BEFORE_AUTH, ("RSET", 503, "5.5.1 odd but harmless"))
    assert t.refusal is None


def test_auth_not_offered_is_not_a_refusal() -> None:
    t = _transcript(EHLO, ("AUTH", 0, "not offered"), ("MAIL", 250, "2.1.0 Ok"),
                    ("RCPT postmaster@example.net", 250, "2.1.5 Ok"),
                    ("DATA", 250, "2.0.0 Ok: queued as 4Q1ABC"), queue_id="4Q1ABC")
    assert t.refusal is None


def test_a_delivered_dialogue_is_not_refused() -> None:
    t = _transcript(EHLO, ("STARTTLS", 220, "2.0.0 Ready to start TLS"), EHLO,
                    ("AUTH", 235, "authenticated"), ("MAIL", 250, "2.1.0 Ok"),
                    ("RCPT postmaster@example.net", 250, "2.1.5 Ok"),
                    ("DATA", 250, "2.0.0 Ok: queued as 4Q1ABC"),
                    tls_subject="CN=mx.example.org", queue_id="4Q1ABC")
    assert t.refusal is None


def test_an_empty_transcript_is_not_refused() -> None:
    assert SmtpTranscript().refusal is None


# --- describe(): one line for the report


def test_describe_a_refused_spam() -> None:
    t = _transcript(EHLO, MAIL_BEFORE_AUTH, RSET,
                    ("MAIL", 530, "5.7.0 Must issue a STARTTLS command first"))
    assert t.describe() == (f"banner {BANNER!r}; EHLO mx.example.org; AUTH before TLS: no; "
                           "MAIL before AUTH: 530 5.7.0 Must issue a STARTTLS command first; "
                           "MAIL: 530 5.7.0 Must issue a STARTTLS command first")


def test_describe_with_tls_names_the_certificate_not_auth_before_tls() -> None:
    t = _transcript(EHLO, ("AUTH", 235, "authenticated"), ("DATA", 250, "2.0.0 Ok: queued as X"),
                    tls_subject="CN=mx.example.org", auth_before_tls=False)
    assert t.describe() == (f"banner {BANNER!r}; EHLO mx.example.org; TLS CN=mx.example.org; "
                           "AUTH: 235 authenticated; DATA: 250 2.0.0 Ok: queued as X")


def test_describe_auth_offered_before_tls() -> None:
    t = _transcript(EHLO, auth_before_tls=True)
    assert t.describe().endswith("; AUTH before TLS: offered")


def test_describe_leaves_out_ehlo_and_rset_and_keeps_first_lines() -> None:
    t = _transcript(EHLO, ("RCPT a@example.net", 550, "5.1.1 first\nsecond"), RSET,
                    ("AUTH", 0, "not offered"))
    said = t.describe()
    assert "PIPELINING" not in said and "RSET" not in said and "second" not in said
    assert said.endswith("; RCPT a@example.net: 550 5.1.1 first; AUTH: 0 not offered")


def test_describe_a_network_error() -> None:
    t = _transcript(banner=None, ehlo_name=None, auth_before_tls=None,
                    error="TimeoutError: timed out")
    assert t.describe() == "error TimeoutError: timed out"


def test_describe_nothing() -> None:
    assert SmtpTranscript().describe() == ""


# --- the transcript and the dialogue travel as JSON between the lab and its agent


def test_transcript_as_dict_round_trip() -> None:
    t = Transcript(banner=BANNER, ehlo_name="mx.example.org", auth_before_tls=False,
                   starttls_offered=True, tls_subject="CN=mx.example.org",
                   steps=[EHLO, ("AUTH", 235, "authenticated")], queue_id="4Q1ABC")
    d = t.as_dict()
    assert sorted(d) == ["auth_before_tls", "banner", "ehlo_name", "error", "queue_id",
                         "starttls_offered", "steps", "tls_subject"]
    assert d["steps"] == [EHLO, ("AUTH", 235, "authenticated")]
    assert Transcript(**d) == t
    # as it comes back from the agent
    wired = json.loads(json.dumps(d))
    assert Transcript(**{**wired, "steps": [tuple(s) for s in wired["steps"]]}) == t
    assert ASKED.read_answer(wired) == t
    assert _read(wired).describe() == SmtpTranscript.from_agent(t).describe()
    assert _read(wired).refusal is None


def test_transcript_defaults_and_independent_steps() -> None:
    first, second = Transcript(), Transcript()
    first.steps.append(EHLO)
    assert second.steps == []
    assert second.as_dict() == {"banner": None, "ehlo_name": None, "auth_before_tls": None,
                                "starttls_offered": None, "tls_subject": None, "steps": [],
                                "queue_id": None, "error": None}


def test_dialogue_round_trip_as_the_agent_rebuilds_it() -> None:
    talk = Dialogue(tls="starttls", user="alice", password="pw", mail_from="alice@example.org",
                    rcpts=("postmaster@example.net", "abuse@example.net"), message="Hi\r\n")
    wired = json.loads(json.dumps(asdict(talk)))
    assert Dialogue(**{**wired, "rcpts": tuple(wired["rcpts"])}) == talk
    assert Dialogue() == Dialogue(tls="none", user=None, password=None, mail_from=None,
                                  rcpts=(), message=None, mail_before_auth=None)


# --- the probe catalogue

CATALOGUE = {"smtp": (25, "connect"), "smtps": (465, "connect"), "submission": (587, "connect"),
             "spam": (25, "spam"), "mail": (587, "mail"), "mail-25": (25, "mail-25"),
             "rfc2142": (25, "rfc2142"),
             # IPv6 in IPv4 to the relay: UDP 3544 (Teredo), protocol 41 without a port (6in4)
             "teredo": (3544, "tunnel"), "tunnel6in4": (0, "tunnel"),
             # what a banned host loses besides mail, and password guessing on submission
             "web": (80, "syn"), "dns": (53, "udp"),
             "guessing": (587, "guess"), "guessing-465": (465, "guess")}


def test_probe_catalogue() -> None:
    assert {name: (p.port, p.kind.name) for name, p in PROBES.items()} == CATALOGUE
    assert all(name == p.name and p.summary for name, p in PROBES.items())


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_probe_flags(name: str) -> None:
    probe = PROBES[name]
    assert probe.sends_mail == (name in ("spam", "mail", "mail-25"))
    # only "mail" connects to the source's own server; "mail-25" goes to the target's 25
    assert probe.via_submission_server == (name == "mail")
    # only a datagram may arrive without an answer and still count as allowed
    assert probe.expects_answer == (name != "dns")


def test_one_tls_context_per_agent_without_a_ca_store() -> None:
    # nothing is verified (self-signed lab certificates, the subject is recorded): loading
    # the system's CA store per dialogue cost 20 ms of every TLS row
    from probes.dialogue import _context

    context = _context()
    assert context is _context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.minimum_version == ssl.create_default_context().minimum_version
