"""One probe of a scenario's matrix, sent as its kind says (probes.registry).

A path probe's first packet (a SYN, or a DNS query) decides the path; where
it is open and its kind holds a dialogue, the SMTP dialogue follows and, for
mail, the message's delivery. Tunnel probes send one crafted packet to the
relay (or connect over a real Teredo tunnel); guessing runs its own ladder
(lab.engine.guessing). Each gathers its evidence in one round (lab.engine.round).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace

from lab.engine.guessing import guess_probe
from lab.engine.labview import LabView
from lab.engine.mailflow import Reached, await_delivery, dialogue_for
from lab.engine.round import FarSideKey, evidence_round
from lab.errors import LabFailure
from lab.evidence.bans import BanWatcher
from lab.model.evidence import Endpoint, Evidence, Observation, SmtpTranscript
from lab.model.results import Result
from lab.model.scenario import Expectation
from lab.model.site import SUBMISSION, TEREDO_SERVER, TUNNEL_END, Site
from lab.model.verdict import Decision, Verdict, decide
from lab.netfilter.counters import Hit
from lab.runtime.lab import Lab
from probes.registry import PROBES, Probe
from probes.requests import (
    ConnectRequest,
    GuessRequest,
    PacketAnswer,
    Request,
    SmtpRequest,
    SynRequest,
    TunnelRequest,
    UdpRequest,
)
from probes.tunnel import Variant

FIRST_WAIT = 0.025  # s: an answer on an open path comes back well within this
SECOND_WAIT = 1.5   # s: only when neither an answer nor a router rule explains silence
DIALOGUE_TIMEOUT = 5.0  # s: per SMTP command
TUNNEL_FIRST_WAIT = 0.3  # s: over a qualified tunnel an open path answers in ms
TUNNEL_CONNECT_TIMEOUT = 2.0  # s: only when silence has no rule to explain it
SIX_IN_FOUR = 41  # the IPv4 protocol number of 6in4


@dataclass(frozen=True)
class Network:
    """A path probe's evidence and what it decides about the path."""

    reached: Endpoint  # the role, address and port the first packet was sent to
    decision: Decision
    observation: Observation
    evidence: Evidence


def first_packet(probe: Probe, family: int, dst: str, sport: int) -> Request[PacketAnswer]:
    """A path probe's first packet, as its kind sends it: a SYN to its port, or a DNS query."""
    if probe.kind.sends is UdpRequest:
        return UdpRequest(family, dst, sport)
    return SynRequest(family, dst, probe.port, sport)


def path_probe(lab: LabView, source: str, role: str, probe: Probe, family: int,
               sport: int) -> Network:
    """The probe's first packet from `source` to `role`, with evidence from all sides."""
    address = lab.site.role(role).address(family)
    if probe.far_side is None:  # a registry entry that cannot be: a bug, not the lab's
        raise ValueError(f"{probe.name}: its kind {probe.kind.name} has no path to probe")
    got = evidence_round(lab, source, first_packet(probe, family, address, sport), family,
                         FarSideKey(probe.far_side, sport), FIRST_WAIT,
                         SECOND_WAIT if probe.kind.waits_out_silence else None)
    observation = Observation.from_agent(got.answer)
    reached = Endpoint(role, address, probe.port)
    decision = decide(role, address, probe.port, observation, got.sightings, got.rule_hits,
                      expects_answer=not probe.kind.arrival_is_enough)
    return Network(reached, decision, observation,
                Evidence(reached, observation, got.sightings, got.rule_hits))


def not_applicable(site: Site, expectation: Expectation) -> str | None:
    """Why the site gives a row no path (a node it needs lacks the family), or None.

    A tunnel probe travels in IPv4 and aims at the target's IPv6 address; a mail probe
    also passes the source's own mail server.
    """
    probe = PROBES[expectation.probe]
    family = expectation.family
    needs = [(expectation.source, family), (expectation.target, family)]
    if probe.kind.sends is TunnelRequest:
        needs = [(expectation.source, 4), (expectation.target, 6)]
    elif probe.via_submission_server and site.having(SUBMISSION):
        needs.append((site.submission_server.name, family))
    for role, wanted in needs:
        if not site.role(role).has(wanted):
            return f"{role} has no IPv{wanted} address on site {site.name}: not probed"
    return None


def probe_once(lab: LabView, expectation: Expectation, sport: int,
               watcher: BanWatcher | None = None) -> Result:
    """One probe: the first packet decides the path; where it is open, the dialogue follows."""
    probe = PROBES[expectation.probe]
    if probe.kind.sends is TunnelRequest:
        return tunnel_probe(lab, expectation, sport)
    if probe.kind.sends is GuessRequest:
        return guess_probe(lab, expectation, watcher)
    family = expectation.family
    role = lab.submission_server() if probe.via_submission_server else expectation.target
    net = path_probe(lab, expectation.source, role, probe, family, sport)
    evidence = net.evidence

    def result(verdict: Verdict, rule: str | None, detail: str) -> Result:
        # `evidence` as gathered by then
        return Result(expectation.source, expectation.target, expectation.probe, family,
                      expectation.verdict, verdict, rule, detail, net.observation.elapsed_ms,
                      evidence=evidence)

    path = net.decision
    if not probe.kind.dialogue or path.verdict not in (Verdict.ALLOWED, Verdict.DIVERTED) \
            or net.observation.reply != "synack":
        return result(path.verdict, path.rule, path.detail)
    token = f"port25lab-{lab.run.prefix}-{sport}"
    talk = dialogue_for(probe, lab, expectation.target, family, token)
    # counters from before the dialogue: a relay starts as soon as DATA is accepted (only
    # a mail probe's delivery reads them)
    before = lab.rules(family) if probe.kind.sends_mail and not probe.kind.identifies_only else []
    said = SmtpTranscript.from_agent(lab.agent(expectation.source).ask(
        SmtpRequest(net.reached.address, probe.port, talk, DIALOGUE_TIMEOUT),
        timeout=DIALOGUE_TIMEOUT * 4))
    evidence = replace(evidence, smtp=said)
    detail = f"{path.detail}; {said.describe()}"
    if probe.kind.identifies_only:
        return result(path.verdict, path.rule, detail)
    if said.refusal is not None:
        return result(Verdict.REFUSED, path.rule, f"{detail}; refused: {said.refusal}")
    if said.error:
        # the dialogue broke off: that proves nothing about the server's policy
        return result(Verdict.ERROR, path.rule, f"{detail}; the dialogue broke off")
    if not probe.kind.sends_mail:
        return result(Verdict.ALLOWED, path.rule, detail)
    if not said.queue_id:
        return result(Verdict.ERROR, path.rule, f"{detail}; the message was not queued")
    delivery = await_delivery(lab, Reached(net.reached.role, path), expectation.target, family,
                              token, said.queue_id, before)
    evidence = replace(evidence, delivery=delivery)
    detail = f"{detail}; {delivery.describe()}"
    if delivery.delivered:
        return result(path.verdict, path.rule, detail)
    if delivery.stopped_by is not None:
        return result(Verdict.BLOCKED, delivery.stopped_by.cite(), detail)
    return result(Verdict.ERROR, None, detail)


def tunnel_probe(lab: LabView, expectation: Expectation, sport: int) -> Result:
    """A SYN for the target's IPv6 address, tunnelled in IPv4 to the site's tunnel end."""
    probe = PROBES[expectation.probe]
    variant = probe.variants[expectation.variant]
    if variant.real:
        return real_teredo_probe(lab, expectation, variant, sport)
    if probe.far_side is None:  # as above
        raise ValueError(f"{probe.name}: a tunnel probe without its encapsulation")
    end = lab.site.one(TUNNEL_END if probe.far_side == "6in4" else TEREDO_SERVER)
    relay = end.address(4)
    if probe.far_side == "6in4":
        forget_flows(lab, SIX_IN_FOUR)
    target6 = lab.site.role(expectation.target).address(6)
    got = evidence_round(lab, expectation.source,
                         TunnelRequest(probe.name, variant.name, relay, target6, sport), 4,
                         FarSideKey(probe.far_side, sport), FIRST_WAIT,
                         SECOND_WAIT if probe.kind.waits_out_silence else None)
    observation = Observation.from_agent(got.answer)
    # the relay's recorder sees a Teredo datagram on its UDP port; 6in4 has no port
    port = variant.udp_port if probe.far_side == "udp" else 0
    decision = decide(end.name, relay, port, observation, got.sightings, got.rule_hits,
                      expects_answer=not probe.kind.arrival_is_enough)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name,
                  evidence=Evidence(Endpoint(end.name, relay, port), observation, got.sightings,
                                    got.rule_hits))


def forget_flows(lab: LabView, protocol: int) -> None:
    """Every router forgets its connection-tracking entries of a protocol without ports.

    NAT tells such flows apart by their addresses alone: behind one MASQUERADE
    address, another client's earlier 6in4 flow to the same relay still holds the one
    mapping, and the kernel drops the next client's packet without any rule (its
    conntrack counts it `insert_failed`). Each probe starts as a new flow, as it would
    on a gateway where that other client is not tunnelling just then.
    """
    tool = shutil.which("conntrack", path="/usr/sbin:/sbin")
    if tool is None:
        raise LabFailure("conntrack (Debian package conntrack) is not installed: run "
                         "`make setup`")
    for router in lab.site.routers:
        # 1: there was nothing to forget
        status, _, err = lab.exec(router, [tool, "-D", "-p", str(protocol)], timeout=10)
        if status not in (0, 1):
            raise LabFailure(f"{router}: conntrack -D -p {protocol} failed: {err.strip()}")


def real_teredo_probe(lab: LabView, expectation: Expectation, variant: Variant,
                      sport: int) -> Result:
    """A kernel TCP connection to the target's port 25 over a real Teredo tunnel."""
    from lab.services import teredo

    if not isinstance(lab, Lab):
        raise LabFailure("a real Teredo tunnel needs a running lab (miredo in its nodes)")
    # the client's Teredo packets leave from the probe's port: the routers' traces of
    # them name the rule that dropped the qualification (iptables or native nft alike)
    watch = lab.packet_evidence(sport)
    watch.begin()

    def drops() -> list[Hit]:
        return [h for h in watch.hits() if h.rule.drops]

    try:
        with teredo.tunnel(lab, expectation.source, expectation.target,
                           explained=lambda: bool(drops()), port=sport) as address:
            return _over_tunnel(lab, expectation, variant, address, sport)
    except teredo.QualificationFailed as failed:
        # A rule that dropped the clients' packets to the Teredo server is the policy
        # working: the tunnel never opens. Silence no rule explains is the lab's fault.
        dropped = drops()
        if not dropped:
            raise
        server = teredo.server_address(lab)
        detail = (f"{variant.name} ({variant.summary}): Teredo qualification of "
                  f"{', '.join(failed.roles)} with the server {server} "
                  f"UDP 3544 failed: {dropped[0].packets} packet(s) dropped by "
                  f"{dropped[0].rule.cite()}; the tunnel never opened")
        return Result(expectation.source, expectation.target, expectation.probe, 4,
                      expectation.verdict, Verdict.BLOCKED, dropped[0].rule.cite(), detail,
                      round(failed.waited * 1000, 2), variant=variant.name,
                      evidence=Evidence(Endpoint(lab.site.one(TEREDO_SERVER).name, server, 3544),
                                        rule_hits=tuple(dropped)))


def _over_tunnel(lab: LabView, expectation: Expectation, variant: Variant, address: str,
                 sport: int) -> Result:
    """The connection through a qualified Teredo tunnel, and its verdict."""
    # the tunnel's packets are IPv4 on the routers: their IPv4 counters tell
    got = evidence_round(lab, expectation.source,
                         ConnectRequest(6, address, variant.inner_port, sport), 4,
                         FarSideKey("connect", sport), TUNNEL_FIRST_WAIT, TUNNEL_CONNECT_TIMEOUT,
                         patience=30)
    observation = Observation.from_agent(got.answer)
    decision = decide(expectation.target, address, variant.inner_port, observation,
                      got.sightings, got.rule_hits)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary} {address}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name,
                  evidence=Evidence(Endpoint(expectation.target, address, variant.inner_port),
                                    observation, got.sightings, got.rule_hits))
