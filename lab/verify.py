"""Run a scenario: boot its lab, load its policy, probe its matrix, decide verdicts."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from lab.counters import hits
from lab.errors import LabFailure
from lab.lifecycle import Run
from lab.network import Lab
from lab.policy import LoadError, apply_policy
from lab.scenario import Expectation, Scenario
from lab.verdict import Decision, Observation, Verdict, decide
from probes.tcp import PROBES

Progress = Callable[[str], None]

FIRST_WAIT = 0.04   # s: an answer on an open path comes back well within this
SECOND_WAIT = 1.5   # s: only when neither an answer nor a router rule explains silence


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

    @property
    def passed(self) -> bool:
        return (not self.load_errors and self.lab_error is None and bool(self.results)
                and all(r.passed for r in self.results))


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


def probe_once(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """One probe, with evidence from the sender, the far side and every router."""
    plan = lab.plan
    port = PROBES[expectation.probe].port
    family = expectation.family
    address = plan.role(expectation.target).address(family)
    agent = lab.agent(expectation.source)
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
    sightings = lab.far_side.sightings(sport, expect=seen["reply"] != "none"
                                       or not decided_by_router)
    banner = None
    if seen["reply"] == "synack" and seen.get("source") == address:
        answer = agent.ask({"op": "banner", "family": family, "dst": address, "dport": port,
                            "timeout": 2.0}, timeout=10)
        banner = answer.get("banner") or (f"(no banner: {answer['error']})"
                                          if answer.get("error") else None)
    observation = Observation(
        sport=sport, reply=seen["reply"], source=seen.get("source"),
        source_port=seen.get("source_port"), ttl=seen.get("ttl"), icmp=seen.get("icmp"),
        banner=banner, elapsed_ms=seen["elapsed_ms"])
    decision: Decision = decide(expectation.target, address, port, observation, sightings,
                                rule_hits)
    return Result(expectation.source, expectation.target, expectation.probe, family,
                  expectation.verdict, decision.verdict, decision.rule, decision.detail,
                  observation.elapsed_ms)


def verify(scenario: Scenario, run: Run, progress: Progress) -> ScenarioResult:
    """Boot, load, probe, tear down. Lab failures are reported, not raised."""
    started = time.monotonic()
    ports = source_ports()
    results: list[Result] = []
    load_errors: list[LoadError] = []
    boot_ms = 0.0
    try:
        progress(f"{scenario.name}: booting {scenario.topology} as {run.prefix}")
        with Lab(scenario.topology, run, scenario.services) as lab:
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
                progress(f"{scenario.name}: [{number}/{total}] {result.source} → "
                         f"{result.target} {result.probe}/v{result.family}: "
                         f"{result.observed} ({mark})")
    except LabFailure as exc:
        return ScenarioResult(scenario.name, scenario.topology, tuple(load_errors),
                              tuple(results), lab_error=str(exc), boot_ms=boot_ms)
    return ScenarioResult(scenario.name, scenario.topology, tuple(load_errors), tuple(results),
                          boot_ms=boot_ms)
