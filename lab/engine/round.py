"""One evidence round: the routers' counters around the sender's request, and the far side.

    counters → ask the agent → counters → (silence no rule explains: ask again,
    waiting longer) → the far side's record of the packet

Every probe kind gathers its evidence this way (a SYN, a DNS query, a crafted
tunnel packet, a connection over a real Teredo tunnel, a whole guessing ladder);
what the evidence means is decided elsewhere (lab.model.verdict.decide).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lab.engine.labview import LabView
from lab.errors import LabFailure
from lab.model.evidence import Sighting
from lab.netfilter.counters import Hit, hits
from probes.registry import FarSideKind
from probes.requests import Answer, Request

S = TypeVar("S", bound=Answer)


@dataclass(frozen=True)
class FarSideKey:
    """How the recorders find the probe's first packet: its kind and source port."""

    kind: FarSideKind
    sport: int


@dataclass(frozen=True)
class Round(Generic[S]):
    """What one round gathered: the sender's answer, the far side's record, the rule hits."""

    answer: S
    sightings: tuple[Sighting, ...]
    rule_hits: tuple[Hit, ...]
    asked_ms: float  # the lab's wall time around the request(s) to the agent

    @property
    def dropped(self) -> bool:
        """A router rule dropped or rejected the packet: that explains any silence."""
        return _dropped(self.rule_hits)


def evidence_round(lab: LabView, source: str, request: Request[S], counters: int,
                   far_side: FarSideKey | None, first_wait: float,
                   second_wait: float | None = None, patience: float = 10.0) -> Round[S]:
    """Ask `source`'s agent `request`, with the counters of family `counters` around it.

    The request waits `first_wait` for its answer. Silence that no rule explains
    is asked again with `second_wait` (None: never), as TCP would retransmit.
    Unless a rule already decided it, the packet should be on record somewhere:
    the recorders get time to write (a REJECT's RST is no reason to wait).
    `patience` is how long the agent may take to answer at all.
    """
    agent = lab.agent(source)
    before = lab.rules(counters)
    started = time.monotonic()
    answer = agent.ask(request.waiting(first_wait), timeout=patience)
    asked = time.monotonic() - started
    rule_hits = hits(before, lab.rules(counters))
    if second_wait is not None and answer.silent and not _dropped(rule_hits):
        started = time.monotonic()
        answer = agent.ask(request.waiting(second_wait), timeout=patience)
        asked += time.monotonic() - started
        rule_hits = hits(before, lab.rules(counters))
    sightings: list[Sighting] = []
    if far_side is not None:
        if lab.far_side is None:
            raise LabFailure("the far side's recorders are not running")
        sightings = lab.far_side.sightings(far_side.sport, expect=not _dropped(rule_hits),
                                           kind=far_side.kind)
    return Round(answer, tuple(sightings), tuple(rule_hits), round(asked * 1000, 2))


def _dropped(rule_hits: Iterable[Hit]) -> bool:
    return any(h.rule.drops for h in rule_hits)
