"""A fake lab for the engine's unit tests: scripted agent answers, counters and far side.

It stands in for the running lab wherever the engine takes a
`lab.engine.labview.LabView`. Each scripted `Reply` says what the network did
while the agent answered: which rules counted a packet (the counters the next
`rules()` shows) and what the far side's recorders wrote. Answers travel
through the same JSON lines as the real agent's, so a reply of the wrong type
for its request fails as it would in a lab.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import topologies
from lab.engine.labview import PacketWatch
from lab.errors import LabFailure
from lab.model.evidence import Sighting
from lab.model.site import Site
from lab.netfilter.rules import Rule
from lab.runtime.lifecycle import Run
from lab.services import mail, trap
from probes.requests import Request, parse_answer

A = TypeVar("A")


@dataclass(frozen=True)
class Reply:
    """One scripted answer of an agent, and what the network did meanwhile."""

    answer: Any  # what the agent answers (PacketAnswer, Transcript, GuessAnswer)
    counted: tuple[Rule, ...] = ()  # rules that each counted one packet
    seen: tuple[Sighting, ...] = ()  # what the recorders wrote about the request's packet
    recorded_as: str = "tcp"  # how the recorders keyed it: "tcp", "udp" or "6in4"


def rule(router: str, chain: str, position: int, text: str, family: int = 4,
         table: str = "filter") -> Rule:
    """A rule as `iptables-save -c` shows it (its target read from its text)."""
    words = text.split()
    target = words[words.index("-j") + 1] if "-j" in words else ""
    return Rule(router, family, table, chain, position, text, target, 0)


class FakeAgent:
    def __init__(self, lab: FakeLab, role: str) -> None:
        self.lab, self.role = lab, role

    def ask(self, request: Request[A], timeout: float,
            stop_when: Callable[[], bool] | None = None) -> A:
        self.lab.asked.append((self.role, request))
        script = self.lab.script.get(self.role)
        if not script:
            raise LabFailure(f"probe agent on {self.role} did not answer")
        reply = script.popleft()
        for counted in reply.counted:
            self.lab.counts[counted.key] = self.lab.counts.get(counted.key, 0) + 1
        sport = getattr(request, "sport", None)
        if sport is not None:
            self.lab.far.records.setdefault((reply.recorded_as, sport), []).extend(reply.seen)
        return parse_answer(request, request.answer_line(reply.answer))


@dataclass
class FakeFarSide:
    records: dict[tuple[str, int], list[Sighting]] = field(default_factory=dict)
    looks: list[tuple[int, bool, str]] = field(default_factory=list)  # (sport, expect, kind)

    def sightings(self, sport: int, expect: bool, wait: float = 1.0,
                  kind: str = "tcp") -> list[Sighting]:
        self.looks.append((sport, expect, kind))
        return list(self.records.get((kind, sport), []))


class FakeLab:
    """A lab of one topology's plan, with nothing running: every answer is scripted."""

    def __init__(self, folder: Path, topology: str = "screened-host",
                 rules: tuple[Rule, ...] = ()) -> None:
        self.site: Site = topologies.load(topology)
        self.run = Run("p25-fa4e00", folder)
        self.far = FakeFarSide()
        self.ruleset = rules
        self.counts: dict[tuple[str, int, str, str, int, str], int] = {}
        self.script: dict[str, deque[Reply]] = {}
        self.asked: list[tuple[str, Request[Any]]] = []
        self.executed: list[tuple[str, list[str]]] = []
        self.mail: dict[str, mail.Instance] = {}
        self.traps: dict[str, trap.Instance] = {}
        self.firewall_logs: dict[str, Path] = {}
        self.started: list[str] = []

    def __enter__(self) -> FakeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # -- scripting ---------------------------------------------------------------------
    def answers(self, role: str, *replies: Reply) -> None:
        self.script.setdefault(role, deque()).extend(replies)

    def count(self, counted: Rule) -> None:
        """A packet the next counters show (e.g. the relay's own, during a delivery)."""
        self.counts[counted.key] = self.counts.get(counted.key, 0) + 1

    def serve_mail(self, server: mail.MailServer) -> mail.Instance:
        """A mail server's folders (mailbox, log) under the run folder; nothing runs."""
        self.mail[server.role] = mail.Instance(server, self.run.folder / server.role)
        return self.mail[server.role]

    # -- what the engine sees ------------------------------------------------------------
    @property
    def far_side(self) -> FakeFarSide:
        return self.far

    @property
    def mail_servers(self) -> dict[str, mail.MailServer]:
        return {role: inst.server for role, inst in self.mail.items()}

    def agent(self, role: str) -> FakeAgent:
        return FakeAgent(self, role)

    def start_agents(self, roles: list[str]) -> None:
        self.started += roles

    def rules(self, family: int) -> list[Rule]:
        return [replace(r, packets=self.counts.get(r.key, 0)) for r in self.ruleset
                if r.family == family]

    def packet_evidence(self, tag: int) -> PacketWatch | None:
        return None  # the fake's rules count (its script says which): counter deltas tell

    def exec(self, role: str, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]:
        self.executed.append((role, argv))
        return 0, "", ""

    def submission_server(self) -> str:
        for role, inst in self.mail.items():
            if inst.server.submission:
                return role
        raise LabFailure("no submission server")

    def start_traps(self, jails: dict[str, tuple[Path, ...]]) -> dict[str, list[str]]:
        return {}

    def requests(self, role: str) -> list[Request[Any]]:
        """What the engine asked `role`'s agent, in order."""
        return [r for who, r in self.asked if who == role]


def wire(request: Request[Any]) -> dict[str, Any]:
    """A request as the agent reads it (its JSON line)."""
    data: dict[str, Any] = json.loads(request.line())
    return data
