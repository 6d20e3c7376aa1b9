"""Run a scenario: boot its lab, load its policy, probe its matrix, decide verdicts."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import partial

from lab.engine.bans import Progress, wait_for_ban
from lab.engine.labview import LabView
from lab.engine.probing import not_applicable, probe_once
from lab.errors import LabFailure
from lab.evidence.bans import BanWatcher
from lab.evidence.firewall_log import suspects
from lab.model.evidence import Ban, Suspect
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Expectation, Scenario
from lab.model.site import Site
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError, apply_policy
from lab.runtime.lab import Lab
from lab.runtime.lifecycle import Run
from lab.userfiles import shown

# How a run gets its lab: the real one, booted in namespaces (a test may pass a fake)
Boot = Callable[[Site, Run], AbstractContextManager[LabView]]
# Said where IPv6 rows do not apply: a network without IPv6 is not safe from it
IPV6_STILL_MATTERS = (
    "IPv6 rows of nodes without IPv6 are not applicable (not passed, not failed), but "
    "consider IPv6 even if your network has none (considerar IPv6 mesmo que sua rede não "
    "tenha IPv6): Teredo and 6in4 carry it through IPv4 (their rows still apply), and a "
    "host that gains IPv6 (a router advertisement, a new uplink) reaches port 25 of the "
    "world natively unless ip6tables blocks it")


def source_ports() -> Iterator[int]:
    """Probe source ports: unique within a run, below Linux's ephemeral range."""
    return itertools.cycle(range(20000, 32000))


def load_policies(lab: LabView, scenario: Scenario) -> list[LoadError]:
    errors: list[LoadError] = []
    for router, files in scenario.policies.items():
        def run(argv: list[str], stdin: str | None, router: str = router) -> tuple[int, str]:
            status, _, err = lab.exec(router, argv, stdin=stdin)
            return status, err
        for policy in files:
            errors.extend(apply_policy(policy, run, tag_sources=True))
            if policy.nft_tables:
                lab.nft_made(router, policy.nft_tables)
    return errors


def verify(scenario: Scenario, run: Run, progress: Progress, boot: Boot = Lab) -> ScenarioResult:
    """Boot, load, probe, read the firewall logs, tear down. Lab failures are reported."""
    started = time.monotonic()
    ports = source_ports()
    results: list[Result] = []
    load_errors: list[LoadError] = []
    found: list[Suspect] = []
    bans: tuple[Ban, ...] = ()
    boot_ms = 0.0
    scenario, notes = scenario.with_nflog()
    if any(e.family == 6 and not_applicable(scenario.site, e) for e in scenario.expectations):
        notes.append(IPV6_STILL_MATTERS)
    outcome = partial(ScenarioResult, scenario.name, scenario.topology, notes=tuple(notes),
                      expected_suspects=scenario.suspects,
                      site_file=shown(scenario.site_file) if scenario.site_file else "",
                      rules={router: tuple(p.name for p in files)
                             for router, files in scenario.policies.items()})
    try:
        progress(f"{scenario.name}: booting {scenario.topology} as {run.prefix}")
        with boot(scenario.site, run) as lab:
            boot_ms = (time.monotonic() - started) * 1000
            load_errors = load_policies(lab, scenario) + start_traps(lab, scenario, progress)
            for error in load_errors:
                progress(f"{scenario.name}: load error {error}")
            with ThreadPoolExecutor(max_workers=1) as pool:
                # the routers' tracers start (once the policies are in) while the agents
                # import scapy: else the first probe waits for them (60 ms)
                tracing = pool.submit(lab.packet_evidence, 0)
                lab.start_agents(sorted({e.source for e in scenario.expectations}))
                tracing.result()
            total = len(scenario.expectations)
            watching = BanWatcher(list(lab.traps), lab.exec) if lab.traps else None
            with watching or contextlib.nullcontext():
                for number, expectation in enumerate(scenario.expectations, 1):
                    result = probed(lab, scenario.name, expectation, next(ports), watching,
                                    progress)
                    results.append(result)
                    mark = ("n/a" if not result.applicable else "ok" if result.passed
                            else f"expected {result.expected}")
                    label = (f"{result.probe}:{result.variant}" if result.variant
                             else result.probe)
                    progress(f"{scenario.name}: [{number}/{total}] {result.source} → "
                             f"{result.target} {label}/v{result.family}"
                             f"{' after ' + result.after if result.after else ''}: "
                             f"{result.observed} ({mark})")
            if watching is not None:
                bans = tuple(watching.bans())
                if watching.error:
                    raise LabFailure(watching.error)
            found = suspects_of(lab)
    except LabFailure as exc:
        return outcome(tuple(load_errors), tuple(results), lab_error=str(exc), boot_ms=boot_ms,
                       suspects=tuple(found), bans=bans, owners=owners_of(scenario, bans))
    return outcome(tuple(load_errors), tuple(results), boot_ms=boot_ms, suspects=tuple(found),
                   bans=bans, owners=owners_of(scenario, bans))


def probed(lab: LabView, name: str, expectation: Expectation, sport: int,
           watching: BanWatcher | None, progress: Progress) -> Result:
    """One row's result: not applicable where the site gives it no path, else probed."""
    reason = not_applicable(lab.site, expectation)
    if reason is not None:
        return Result(expectation.source, expectation.target, expectation.probe,
                      expectation.family, expectation.verdict, Verdict.NOT_APPLICABLE, None,
                      reason, 0.0, variant=expectation.variant, after=expectation.after)
    waited = wait_for_ban(lab, name, watching, expectation, progress)
    started = time.perf_counter()
    result = probe_once(lab, expectation, sport, watching)
    result = replace(result, after=expectation.after,
                     wall_ms=round((time.perf_counter() - started) * 1000, 2))
    if waited is not None:
        result = replace(result, detail=f"{waited.said}; {result.detail}",
                         evidence=replace(result.evidence, ban=waited.ban or result.evidence.ban))
    return result


def start_traps(lab: LabView, scenario: Scenario, progress: Progress) -> list[LoadError]:
    """Start the scenario's fail2ban instances; what fail2ban refused is a load error."""
    if not scenario.traps:
        return []
    progress(f"{scenario.name}: starting fail2ban in {', '.join(scenario.traps)}")
    errors = []
    for role, problems in lab.start_traps(scenario.traps).items():
        files = ", ".join(shown(p) for p in scenario.traps[role])
        errors += [LoadError(files, 0, f"fail2ban in {role}: {p}") for p in problems]
    return errors


def owners_of(scenario: Scenario, bans: tuple[Ban, ...]) -> dict[str, str]:
    return {b.address: scenario.site.owner_of(b.address) or "?" for b in bans}


def suspects_of(lab: LabView) -> list[Suspect]:
    """The internal hosts the routers' firewall logs caught on 25/465."""
    inside = [n.name for n in lab.site.nodes if n.kind in ("client", "server")]
    return suspects(lab.firewall_logs.values(), lab.site.owner_of, inside)
