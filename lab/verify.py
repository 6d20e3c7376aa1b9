"""Run a scenario: boot its lab, load its policy, probe its matrix, decide verdicts."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial

from lab.counters import hits
from lab.errors import LabFailure
from lab.firewall_log import Suspect, suspects
from lab.lifecycle import Run
from lab.mailflow import Reached, await_delivery, describe, dialogue_for, refused
from lab.network import Lab
from lab.policy import LoadError, apply_policy
from lab.scenario import Expectation, Scenario
from lab.verdict import Decision, Observation, Verdict, decide
from probes.tcp import PROBES
from probes.tunnel import VARIANTS

Progress = Callable[[str], None]

FIRST_WAIT = 0.025  # s: an answer on an open path comes back well within this
SECOND_WAIT = 1.5   # s: only when neither an answer nor a router rule explains silence
DIALOGUE_TIMEOUT = 5.0  # s: per SMTP command
TUNNEL_FIRST_WAIT = 0.3  # s: over a qualified tunnel an open path answers in ms
TUNNEL_CONNECT_TIMEOUT = 2.0  # s: only when silence has no rule to explain it


@dataclass(frozen=True)
class Result:
    source: str
    target: str
    probe: str
    family: int
    expected: Verdict
    observed: Verdict
    rule: str | None
    detail: str
    elapsed_ms: float  # the sender's wait for an answer
    wall_ms: float = 0.0  # the whole probe: sender, far side and router evidence
    variant: str = ""  # for tunnel probes: which shape of the packet

    @property
    def passed(self) -> bool:
        return self.observed == self.expected and self.observed != Verdict.ERROR


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    topology: str
    load_errors: tuple[LoadError, ...] = ()
    results: tuple[Result, ...] = ()
    lab_error: str | None = None
    boot_ms: float = 0.0
    notes: tuple[str, ...] = field(default=())
    suspects: tuple[Suspect, ...] = ()
    expected_suspects: tuple[str, ...] | None = None

    @property
    def suspects_match(self) -> bool:
        """The firewall logs name exactly the expected hosts (True when not checked)."""
        return self.expected_suspects is None or tuple(
            sorted({s.role for s in self.suspects})) == self.expected_suspects

    @property
    def passed(self) -> bool:
        return (not self.load_errors and self.lab_error is None and bool(self.results)
                and all(r.passed for r in self.results) and self.suspects_match)


def source_ports() -> Iterator[int]:
    """Probe source ports: unique within a run, below Linux's ephemeral range."""
    return itertools.cycle(range(20000, 32000))


def load_policies(lab: Lab, scenario: Scenario) -> list[LoadError]:
    errors: list[LoadError] = []
    for router, files in scenario.policies.items():
        def run(argv: list[str], stdin: str | None, router: str = router) -> tuple[int, str]:
            status, _, err = lab.exec(router, argv, stdin=stdin)
            return status, err
        for policy in files:
            errors.extend(apply_policy(policy, run))
    return errors


@dataclass(frozen=True)
class Network:
    """The SYN's evidence and what it decides about the path."""

    role: str
    address: str
    port: int
    decision: Decision
    observation: Observation


def syn_probe(lab: Lab, source: str, role: str, port: int, family: int,
              sport: int) -> Network:
    """One SYN from `source` to `role`:`port`, with evidence from sender, far side and routers."""
    address = lab.plan.role(role).address(family)
    agent = lab.agent(source)
    assert lab.far_side is not None
    before = lab.rules(family)
    request = {"op": "syn", "family": family, "dst": address, "dport": port, "sport": sport}
    seen = agent.ask({**request, "wait": FIRST_WAIT}, timeout=10)
    after = lab.rules(family)
    rule_hits = hits(before, after)
    decided_by_router = any(h.rule.drops for h in rule_hits)
    if seen["reply"] == "none" and not decided_by_router:
        # Silence that no rule explains: wait as TCP would, with a retransmission.
        seen = agent.ask({**request, "wait": SECOND_WAIT}, timeout=10)
        after = lab.rules(family)
        rule_hits = hits(before, after)
    # Unless a router rule already dropped it, the packet should be on record
    # somewhere: give the recorders time to write (a REJECT's RST is no reason).
    sightings = lab.far_side.sightings(sport, expect=not decided_by_router)
    observation = Observation(
        sport=sport, reply=seen["reply"], source=seen.get("source"),
        source_port=seen.get("source_port"), ttl=seen.get("ttl"), icmp=seen.get("icmp"),
        elapsed_ms=seen["elapsed_ms"])
    return Network(role, address, port,
                   decide(role, address, port, observation, sightings, rule_hits), observation)


def real_teredo_probe(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """A kernel TCP connection to the target's port 25 over a real Teredo tunnel."""
    from lab import teredo

    variant = VARIANTS[expectation.probe][expectation.variant]
    assert lab.far_side is not None
    with teredo.tunnel(lab, expectation.source, expectation.target) as address:
        before = lab.rules(4)
        request = {"op": "connect", "family": 6, "dst": address,
                   "dport": variant.inner_port, "sport": sport}
        seen = lab.agent(expectation.source).ask(
            {**request, "timeout": TUNNEL_FIRST_WAIT}, timeout=30)
        rule_hits = hits(before, lab.rules(4))
        dropped = any(h.rule.drops for h in rule_hits)
        if seen["reply"] == "none" and not dropped:
            # no answer and no rule explains it: give the connection its full time
            seen = lab.agent(expectation.source).ask(
                {**request, "timeout": TUNNEL_CONNECT_TIMEOUT}, timeout=30)
            rule_hits = hits(before, lab.rules(4))
            dropped = any(h.rule.drops for h in rule_hits)
        sightings = lab.far_side.sightings(sport, expect=not dropped)
    observation = Observation(sport=sport, reply=seen["reply"], source=seen.get("source"),
                              source_port=seen.get("source_port"),
                              banner=seen.get("banner"), elapsed_ms=seen["elapsed_ms"])
    decision = decide(expectation.target, address, variant.inner_port, observation,
                      sightings, rule_hits)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary} {address}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name)


def tunnel_probe(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """A SYN for the target's IPv6 address, tunnelled in IPv4 to the `relay` role."""
    variant = VARIANTS[expectation.probe][expectation.variant]
    if variant.real:
        return real_teredo_probe(lab, expectation, sport)
    relay = lab.plan.role("relay").address(4)
    target6 = lab.plan.role(expectation.target).address(6)
    assert lab.far_side is not None
    before = lab.rules(4)
    seen = lab.agent(expectation.source).ask(
        {"op": "tunnel", "kind": expectation.probe, "variant": variant.name, "relay": relay,
         "target6": target6, "sport": sport, "wait": FIRST_WAIT}, timeout=10)
    rule_hits = hits(before, lab.rules(4))
    dropped = any(h.rule.drops for h in rule_hits)
    kind = "6in4" if expectation.probe == "tunnel6in4" else "udp"
    sightings = lab.far_side.sightings(sport, expect=not dropped, kind=kind)
    observation = Observation(sport=sport, reply=seen["reply"], source=seen.get("source"),
                              ttl=seen.get("ttl"), icmp=seen.get("icmp"),
                              elapsed_ms=seen["elapsed_ms"])
    port = 0 if expectation.probe == "tunnel6in4" else variant.udp_port
    decision = decide("relay", relay, port, observation, sightings, rule_hits,
                      expects_answer=False)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name)


def probe_once(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """One probe: the SYN decides the path; where it is open, the SMTP dialogue follows."""
    probe = PROBES[expectation.probe]
    if probe.kind == "tunnel":
        return tunnel_probe(lab, expectation, sport)
    family = expectation.family
    role = lab.submission_server() if probe.via_submission_server else expectation.target
    net = syn_probe(lab, expectation.source, role, probe.port, family, sport)

    def result(verdict: Verdict, rule: str | None, detail: str) -> Result:
        return Result(expectation.source, expectation.target, expectation.probe, family,
                      expectation.verdict, verdict, rule, detail, net.observation.elapsed_ms)

    if net.decision.verdict not in (Verdict.ALLOWED, Verdict.DIVERTED):
        return result(net.decision.verdict, net.decision.rule, net.decision.detail)
    if net.observation.reply != "synack":
        return result(net.decision.verdict, net.decision.rule, net.decision.detail)
    token = f"port25lab-{lab.run.prefix}-{sport}"
    talk = dialogue_for(probe, lab, expectation.target, family, token)
    # counters from before the dialogue: a relay starts as soon as DATA is accepted
    before = lab.rules(family)
    transcript = lab.agent(expectation.source).ask(
        {"op": "smtp", "dst": net.address, "dport": probe.port, "dialogue": asdict(talk),
         "timeout": DIALOGUE_TIMEOUT}, timeout=DIALOGUE_TIMEOUT * 4)
    said = describe(transcript)
    detail = f"{net.decision.detail}; {said}"
    if probe.kind == "connect":
        return result(net.decision.verdict, net.decision.rule, detail)
    refusal = refused(transcript)
    if refusal is not None:
        return result(Verdict.REFUSED, net.decision.rule, f"{detail}; refused: {refusal}")
    if transcript.get("error"):
        # the dialogue broke off: that proves nothing about the server's policy
        return result(Verdict.ERROR, net.decision.rule, f"{detail}; the dialogue broke off")
    if probe.kind == "rfc2142":
        return result(Verdict.ALLOWED, net.decision.rule, detail)
    queue_id = transcript.get("queue_id")
    if not queue_id:
        return result(Verdict.ERROR, net.decision.rule, f"{detail}; the message was not queued")
    delivery = await_delivery(lab, Reached(net.role, net.decision), expectation.target, family,
                              token, queue_id, before)
    if delivery.delivered:
        return result(net.decision.verdict, net.decision.rule, f"{detail}; {delivery.detail}")
    return result(delivery.verdict, delivery.rule, f"{detail}; {delivery.detail}")


def verify(scenario: Scenario, run: Run, progress: Progress) -> ScenarioResult:
    """Boot, load, probe, read the firewall logs, tear down. Lab failures are reported."""
    started = time.monotonic()
    ports = source_ports()
    results: list[Result] = []
    load_errors: list[LoadError] = []
    found: list[Suspect] = []
    boot_ms = 0.0
    scenario, notes = scenario.with_nflog()
    outcome = partial(ScenarioResult, scenario.name, scenario.topology, notes=tuple(notes),
                      expected_suspects=scenario.suspects)
    try:
        progress(f"{scenario.name}: booting {scenario.topology} as {run.prefix}")
        with Lab(scenario.topology, run) as lab:
            boot_ms = (time.monotonic() - started) * 1000
            load_errors = load_policies(lab, scenario)
            for error in load_errors:
                progress(f"{scenario.name}: load error {error}")
            lab.start_agents(sorted({e.source for e in scenario.expectations}))
            total = len(scenario.expectations)
            for number, expectation in enumerate(scenario.expectations, 1):
                probe_started = time.perf_counter()
                result = probe_once(lab, expectation, next(ports))
                result = replace(result, wall_ms=round(
                    (time.perf_counter() - probe_started) * 1000, 2))
                results.append(result)
                mark = "ok" if result.passed else f"expected {result.expected}"
                label = f"{result.probe}:{result.variant}" if result.variant else result.probe
                progress(f"{scenario.name}: [{number}/{total}] {result.source} → "
                         f"{result.target} {label}/v{result.family}: "
                         f"{result.observed} ({mark})")
            found = suspects_of(lab)
    except LabFailure as exc:
        return outcome(tuple(load_errors), tuple(results), lab_error=str(exc), boot_ms=boot_ms,
                       suspects=tuple(found))
    return outcome(tuple(load_errors), tuple(results), boot_ms=boot_ms, suspects=tuple(found))


def suspects_of(lab: Lab) -> list[Suspect]:
    """The internal hosts the routers' firewall logs caught on 25/465."""
    inside = [r.name for r in lab.plan.roles if r.kind in ("client", "server")]
    return suspects(lab.firewall_logs.values(), lab.plan.owner_of, inside)
