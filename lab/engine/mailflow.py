"""The mail side of a probe: what it says once connected, and whether the message
reached the target's mailbox."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lab.engine.labview import LabView
from lab.model.evidence import Delivery
from lab.model.verdict import Decision, Verdict
from lab.netfilter.counters import hits
from lab.netfilter.rules import Rule
from lab.services import mail
from probes.dialogue import Dialogue
from probes.registry import CONNECT, RFC2142, SPAM, Probe

DELIVERY_WAIT = 5.0  # s: longer than the relay's connect timeout (1 s), so it can say why
REWRITES = ("DNAT", "REDIRECT")  # targets that send the relay's connection elsewhere


@dataclass(frozen=True)
class Reached:
    """Where the probe's connection went: the role and address it reached, and how."""

    role: str
    decision: Decision


def dialogue_for(probe: Probe, lab: LabView, target: str, family: int, token: str) -> Dialogue:
    """What the probe says once connected, addressed to the target's mail domain."""
    servers = lab.mail_servers
    target_domain = mail.domain_for(servers[target], family) if target in servers else \
        mail.FOREIGN
    user = mail.LAB_USERS[0]
    own = f"{user.name}@{mail.ORGANISATION}"
    message = (f"From: {own}\r\nTo: postmaster@{target_domain}\r\n"
               f"Subject: {token}\r\nMessage-ID: <{token}@port25lab.test>\r\n\r\n"
               f"Probe {token} from port25lab.\r\n")
    if probe.kind is CONNECT:
        return Dialogue(tls="implicit" if probe.port == 465 else "none",
                        mail_before_auth=f"probe@{mail.FOREIGN}")
    if probe.kind is RFC2142:
        domain = target_domain
        return Dialogue(mail_from=f"check@{mail.FOREIGN}", rcpts=(
            f"abuse@{domain}", f"Abuse@{domain.upper()}", f"postmaster@{domain}",
            f"POSTMASTER@{domain.title()}"))
    if probe.kind is SPAM:
        return Dialogue(tls="implicit" if probe.port == 465 else "none",
                        mail_from="bot@infected.example.com",
                        rcpts=(f"postmaster@{target_domain}",),
                        message=message.replace(own, "bot@infected.example.com"))
    # "mail" and "mail-25": a mail program with an account on the organisation's server
    return Dialogue(tls="starttls", user=user.name, password=user.password, mail_from=own,
                    rcpts=(f"postmaster@{target_domain}",), message=message)


def await_delivery(lab: LabView, net: Reached, target: str, family: int, token: str,
                   queue_id: str, before: list[Rule], wait: float = DELIVERY_WAIT) -> Delivery:
    """Wait for the message in the target's mailbox; if it does not come, say why.

    `before` are the routers' counters from before the message was sent: a rule
    that dropped or rewrote the relay's own connection since then stopped it.
    """
    deadline = time.monotonic() + wait
    relay = net.decision.verdict == Verdict.DIVERTED or net.role != target
    relay_role = lab.submission_server() if net.role == target else net.role
    target_inst = lab.mail.get(target)
    while time.monotonic() < deadline:
        if target_inst is not None:
            for message in mail.delivered(target_inst):
                if token in message.read_text(errors="replace"):
                    return Delivery(queue_id, target, relay_role, relay, mailbox=message.name,
                                    waited_s=wait)
        status = mail.queue_status(lab.mail[relay_role], queue_id) \
            if relay and relay_role in lab.mail else None
        if status is not None and "status=sent" not in status:
            break
        time.sleep(0.05)
    rule_hits = hits(before, lab.rules(family))
    stops = [h for h in rule_hits if h.rule.drops] + [
        h for h in rule_hits if h.rule.target in REWRITES]
    status = mail.queue_status(lab.mail[relay_role], queue_id) if relay_role in lab.mail else None
    return Delivery(queue_id, target, relay_role, relay, status=status,
                    stopped_by=stops[0].rule if stops else None, waited_s=wait)
