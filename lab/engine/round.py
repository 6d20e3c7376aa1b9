"""One evidence round: the rules the probe's packets met around the sender's request, and
the far side.

    trace (or counters) → ask the agent → trace read to now (or counters) → (silence no
    rule explains: ask again, waiting longer) → the far side's record of the packet

A probe whose packets carry its tag (a SYN, a DNS query, a crafted tunnel packet)
is followed by the kernel's trace of exactly those packets on every router
(lab.runtime.tracer): the rules they met, in nft's order, with the kernel's
verdicts; a silent drop ends the sender's wait at once, since no answer can come.
A connection the kernel makes (over a real Teredo tunnel) and a guessing ladder
carry no tag: the routers' counters before and after tell.

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
from lab.netfilter.rules import Rule
from probes.registry import FarSideKind
from probes.requests import Answer, Request

S = TypeVar("S", bound=Answer)
# far-side kinds whose packets carry the probe's tag where the routers' traces see it: a
# port of the lab's probe range (lab.netfilter.trace.PROBE_PORTS), or the IPv4 id (6in4);
# a connection over a real Teredo tunnel, by the UDP port its client's miredo is bound to
# (lab.services.teredo: the probe's port)
TAGGED: frozenset[FarSideKind] = frozenset({"tcp", "udp", "6in4", "connect"})


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
    tagged = far_side is not None and far_side.kind in TAGGED
    watch = lab.packet_evidence(far_side.sport) if far_side is not None and tagged else None
    before: list[Rule] = []
    if watch is not None:
        watch.begin()
    else:
        before = lab.rules(counters)

    def read() -> list[Hit]:
        return watch.hits() if watch is not None else hits(before, lab.rules(counters))

    stop_when = watch.dropped_silently if watch is not None else None
    started = time.monotonic()
    answer = agent.ask(request.waiting(first_wait), timeout=patience, stop_when=stop_when)
    asked = time.monotonic() - started
    rule_hits = read()
    if second_wait is not None and answer.silent and not _dropped(rule_hits):
        started = time.monotonic()
        answer = agent.ask(request.waiting(second_wait), timeout=patience, stop_when=stop_when)
        asked += time.monotonic() - started
        rule_hits = read()
    sightings: list[Sighting] = []
    if far_side is not None:
        if lab.far_side is None:
            raise LabFailure("the far side's recorders are not running")
        sightings = lab.far_side.sightings(far_side.sport, expect=not _dropped(rule_hits),
                                           kind=far_side.kind)
    return Round(answer, tuple(sightings), tuple(rule_hits), round(asked * 1000, 2))


def _dropped(rule_hits: Iterable[Hit]) -> bool:
    return any(h.rule.drops for h in rule_hits)
