"""Evidence, as values: what the sender saw, what the far side recorded, which rules
counted the packets, what the mail server said, where the mail went, who was banned.

A verdict rests on these (lab.model.verdict); the report renders them to
words. Nothing here reads a lab: the engine gathers the values, a fake lab
can script them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.netfilter.counters import Hit
from lab.netfilter.rules import BAN_CHAIN, Rule

if TYPE_CHECKING:  # the agent's wire types: only read here, never imported at run time
    from probes.dialogue import Transcript
    from probes.requests import Guess, PacketAnswer

Step = tuple[str, int, str]  # an SMTP command, the reply's code and text


@dataclass(frozen=True)
class Observation:
    """What the sender saw after its SYN: the first answer to its source port, if any."""

    sport: int
    reply: str  # "synack", "rst", "icmp", "udp" (a datagram back) or "none"
    source: str | None = None  # address the answer came from
    source_port: int | None = None
    ttl: int | None = None
    icmp: str | None = None
    banner: str | None = None
    elapsed_ms: float = 0.0

    @classmethod
    def from_agent(cls, answer: PacketAnswer) -> Observation:
        return cls(sport=answer.sport, reply=answer.reply, source=answer.source,
                   source_port=answer.source_port, ttl=answer.ttl, icmp=answer.icmp,
                   banner=answer.banner, elapsed_ms=answer.elapsed_ms)

    def describe(self) -> str:
        if self.reply == "none":
            return "no answer"
        where = f"{self.source}" + (f" port {self.source_port}" if self.source_port else "")
        what = {"synack": "SYN-ACK", "rst": "RST", "icmp": f"ICMP {self.icmp}",
                "udp": "an answer"}[self.reply]
        return f"{what} from {where}" + (f" ttl {self.ttl}" if self.ttl is not None else "")


@dataclass(frozen=True)
class Sighting:
    """The far side's record: the probe's SYN arrived at `role` on address `dst`, `dport`."""

    role: str
    dst: str
    dport: int
    inner: str = ""  # for a tunnel: what it carried, e.g. "TCP to 2001:db8:ffff:1::25 port 25"


@dataclass(frozen=True)
class Endpoint:
    """Where a probe was sent: a role, its address and port (0: none, as for 6in4)."""

    role: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.role}:{self.port}" if self.port else self.role


@dataclass(frozen=True)
class SmtpTranscript:
    """What the mail server said, step by step, and who it said it was."""

    banner: str | None = None
    ehlo_name: str | None = None
    auth_before_tls: bool | None = None
    starttls_offered: bool | None = None
    tls_subject: str | None = None  # the certificate's subject, once TLS is up
    steps: tuple[Step, ...] = ()
    queue_id: str | None = None
    error: str | None = None  # the dialogue broke off (a transport error, not a refusal)

    @classmethod
    def from_agent(cls, said: Transcript) -> SmtpTranscript:
        return cls(said.banner, said.ehlo_name, said.auth_before_tls, said.starttls_offered,
                   said.tls_subject, tuple((c, code, text) for c, code, text in said.steps),
                   said.queue_id, said.error)

    @property
    def refusal(self) -> str | None:
        """The first refusal of the mail (an SMTP 4xx/5xx reply, AUTH failing included).

        EHLO, RSET and the deliberate MAIL before AUTH are no refusal of the mail;
        nor is a transport error (see `error`).
        """
        for command, code, text in self.steps:
            if command in ("EHLO", "RSET", "MAIL before AUTH") or code == 0:
                continue
            if code >= 400:
                return _said(command, code, text)
        return None

    def describe(self) -> str:
        parts = []
        if self.banner:
            parts.append(f"banner {self.banner!r}")
        if self.ehlo_name:
            parts.append(f"EHLO {self.ehlo_name}")
        if self.tls_subject:
            parts.append(f"TLS {self.tls_subject}")
        if self.tls_subject is None and self.auth_before_tls is not None:
            parts.append(f"AUTH before TLS: {'offered' if self.auth_before_tls else 'no'}")
        parts += [_said(command, code, text) for command, code, text in self.steps
                  if command not in ("EHLO", "RSET")]
        if self.error:
            parts.append(f"error {self.error}")
        return "; ".join(parts)


def _said(command: str, code: int, text: str) -> str:
    """One reply as the report quotes it: the command, the code, the first line."""
    return f"{command}: {code} {text.splitlines()[0] if text else ''}".strip()


@dataclass(frozen=True)
class Delivery:
    """What became of a queued message: in the target's mailbox, or why not."""

    queue_id: str
    target: str
    relay: str  # the mail server whose log tells the message's fate
    via_relay: bool  # the message went through `relay`, not straight to the target
    mailbox: str | None = None  # the message's file in the target's mailbox
    status: str | None = None  # the relay's last delivery status, as Postfix logged it
    stopped_by: Rule | None = None  # a router rule that dropped or rewrote the relay's way
    waited_s: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.mailbox is not None

    def describe(self) -> str:
        if self.mailbox is not None:
            how = f" via {self.relay}" if self.via_relay else ""
            return f"delivered{how} into {self.target}'s mailbox ({self.mailbox})"
        why = (f"{self.relay} says: {self.status}" if self.status
               else f"queued as {self.queue_id}, not delivered")
        if self.stopped_by is not None:
            return f"not delivered: {why}"
        return f"not delivered in {self.waited_s:.0f} s: {why}"


@dataclass(frozen=True)
class Ban:
    """A fail2ban rule for one address, as seen in a node's ruleset."""

    node: str
    family: int
    address: str
    chain: str  # fail2ban's chain, f2b-<jail>
    rule: str  # the rule, cited like every other rule
    hooked: tuple[str, ...]  # the rules that jump to the ban chain (where it applies)
    seen_at: float  # wall clock: when the lab first saw the rule in the kernel
    lifted_at: float | None = None
    fired_at: float | None = None  # wall clock: the event that fired it, when known
    fired_by: str = ""  # that event in words: "refused guess no. 3", "its firewall log line"
    fired_event: str = ""  # the kind of event alone: "refused guess", "its firewall log line"
    fired_no: int | None = None  # which one of them (the jail's maxretry-th), when counted
    # fail2ban's nftables actions: the set holding the address (addr-set-<jail>,
    # addr6-set-<jail>); '' for the iptables actions, whose chain names the jail
    nft_set: str = ""

    @property
    def jail(self) -> str:
        if self.nft_set:
            return self.nft_set.split("-set-", 1)[-1]
        return self.chain.removeprefix(BAN_CHAIN)

    @property
    def reaction_ms(self) -> float | None:
        if self.fired_at is None:
            return None
        return round((self.seen_at - self.fired_at) * 1000, 1)

    @property
    def lifted_after_s(self) -> float | None:
        return None if self.lifted_at is None else round(self.lifted_at - self.seen_at, 1)

    def describe(self) -> str:
        where = "; ".join(self.hooked) if self.hooked else "no built-in chain jumps to it"
        return f"fail2ban's rule {self.rule} (reached from: {where})"


@dataclass(frozen=True)
class Suspect:
    """An internal host the firewall logged trying mail ports of the world."""

    role: str
    address: str
    count: int
    ports: tuple[int, ...]
    destinations: tuple[str, ...]
    first: str
    last: str


@dataclass(frozen=True)
class Evidence:
    """Everything one probe gathered, from the sender, the far side and the routers."""

    addressed: Endpoint | None = None  # where the probe was sent
    sender: Observation | None = None
    far_side: tuple[Sighting, ...] = ()
    rule_hits: tuple[Hit, ...] = ()
    smtp: SmtpTranscript | None = None
    delivery: Delivery | None = None
    guesses: tuple[Guess, ...] = ()
    ban: Ban | None = None  # for a probe `after: ban|unban`: the ban it waited for

    @property
    def arrived(self) -> bool:
        """The far side saw the probe where it was sent."""
        return self.addressed is not None and any(
            (s.role, s.dport) == (self.addressed.role, self.addressed.port)
            for s in self.far_side)

    @property
    def elsewhere(self) -> tuple[Sighting, ...]:
        """Where the far side saw it instead (another host, or another port)."""
        if self.addressed is None:
            return ()
        return tuple(s for s in self.far_side
                     if (s.role, s.dport) != (self.addressed.role, self.addressed.port))
