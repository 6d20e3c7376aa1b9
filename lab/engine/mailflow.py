"""The mail side of a probe: what it says once connected, how the answer reads,
and whether the message reached the target's mailbox."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lab.model.verdict import Decision, Verdict
from lab.netfilter.counters import hits
from lab.netfilter.rules import Rule
from lab.runtime.lab import Lab
from lab.services import mail
from probes.dialogue import Dialogue
from probes.tcp import Probe

DELIVERY_WAIT = 5.0  # s: longer than the relay's connect timeout (1 s), so it can say why


@dataclass(frozen=True)
class Reached:
    """Where the probe's connection went: the role and address it reached, and how."""

    role: str
    decision: Decision


def dialogue_for(probe: Probe, lab: Lab, target: str, family: int, token: str) -> Dialogue:
    """What the probe says once connected, addressed to the target's mail domain."""
    servers = lab.mail_servers
    target_domain = mail.domain_for(servers[target], family) if target in servers else \
        mail.FOREIGN
    user = mail.LAB_USERS[0]
    own = f"{user.name}@{mail.ORGANISATION}"
    message = (f"From: {own}\r\nTo: postmaster@{target_domain}\r\n"
               f"Subject: {token}\r\nMessage-ID: <{token}@port25lab.test>\r\n\r\n"
               f"Probe {token} from port25lab.\r\n")
    if probe.kind == "connect":
        return Dialogue(tls="implicit" if probe.port == 465 else "none",
                        mail_before_auth=f"probe@{mail.FOREIGN}")
    if probe.kind == "rfc2142":
        domain = target_domain
        return Dialogue(mail_from=f"check@{mail.FOREIGN}", rcpts=(
            f"abuse@{domain}", f"Abuse@{domain.upper()}", f"postmaster@{domain}",
            f"POSTMASTER@{domain.title()}"))
    if probe.kind == "spam":
        return Dialogue(tls="implicit" if probe.port == 465 else "none",
                        mail_from="bot@infected.example.com",
                        rcpts=(f"postmaster@{target_domain}",),
                        message=message.replace(own, "bot@infected.example.com"))
    # "mail" and "mail-25": a mail program with an account on the organisation's server
    return Dialogue(tls="starttls", user=user.name, password=user.password, mail_from=own,
                    rcpts=(f"postmaster@{target_domain}",), message=message)


def describe(transcript: dict[str, Any]) -> str:
    parts = []
    if transcript.get("banner"):
        parts.append(f"banner {transcript['banner']!r}")
    if transcript.get("ehlo_name"):
        parts.append(f"EHLO {transcript['ehlo_name']}")
    if transcript.get("tls_subject"):
        parts.append(f"TLS {transcript['tls_subject']}")
    if transcript.get("tls_subject") is None and transcript.get("auth_before_tls") is not None:
        parts.append(f"AUTH before TLS: {'offered' if transcript['auth_before_tls'] else 'no'}")
    for command, code, text in transcript.get("steps", []):
        if command != "EHLO" and command != "RSET":
            parts.append(f"{command}: {code} {text.splitlines()[0] if text else ''}".strip())
    if transcript.get("error"):
        parts.append(f"error {transcript['error']}")
    return "; ".join(parts)


def refused(transcript: dict[str, Any]) -> str | None:
    """The first refusal of the dialogue (an SMTP 4xx/5xx reply, AUTH failing included)."""
    for command, code, text in transcript.get("steps", []):
        if command in ("EHLO", "RSET", "MAIL before AUTH") or code == 0:
            continue
        if code >= 400:
            return f"{command}: {code} {text.splitlines()[0] if text else ''}".strip()
    return None  # a transport error is not a refusal: see probe_once


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    verdict: Verdict
    rule: str | None
    detail: str


def await_delivery(lab: Lab, net: Reached, target: str, family: int, token: str,
                   queue_id: str, before: list[Rule]) -> Delivery:
    """Wait for the message in the target's mailbox; if it does not come, say why.

    `before` are the routers' counters from before the message was sent.
    """
    deadline = time.monotonic() + DELIVERY_WAIT
    relay = net.decision.verdict == Verdict.DIVERTED or net.role != target
    relay_role = lab.submission_server() if net.role == target else net.role
    target_inst = lab.mail.get(target)
    while time.monotonic() < deadline:
        if target_inst is not None:
            for message in mail.delivered(target_inst):
                if token in message.read_text(errors="replace"):
                    how = f" via {relay_role}" if relay else ""
                    return Delivery(True, Verdict.ALLOWED, None,
                                    f"delivered{how} into {target}'s mailbox ({message.name})")
        status = mail.queue_status(lab.mail[relay_role], queue_id) \
            if relay and relay_role in lab.mail else None
        if status is not None and "status=sent" not in status:
            break
        time.sleep(0.05)
    rule_hits = hits(before, lab.rules(family))
    # what stopped the relay's own connection: a drop, or a rewrite sending it elsewhere
    stops = [h for h in rule_hits if h.rule.drops] + [
        h for h in rule_hits if h.rule.target in ("DNAT", "REDIRECT")]
    status = mail.queue_status(lab.mail[relay_role], queue_id) if relay_role in lab.mail else None
    why = f"{relay_role} says: {status}" if status else f"queued as {queue_id}, not delivered"
    if stops:
        return Delivery(False, Verdict.BLOCKED, stops[0].rule.cite(),
                        f"not delivered: {why}")
    return Delivery(False, Verdict.ERROR, None, f"not delivered in {DELIVERY_WAIT:.0f} s: {why}")


