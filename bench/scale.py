"""The figures of scale: the 1000-client site (up, down, memory) and the fleet audit of
20 gateways. Each runs where this build has it, and says so where it does not."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.engine.verify import verify
from lab.errors import LabFailure
from lab.model import scenario
from lab.model.site import Site
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from lab.runtime.lifecycle import Run

Say = Callable[[str], None]

SITE_SCENARIO = "spambot-epidemic"  # issue 15: 50 of 1000 clients infected
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # where it may live instead
FLEET_MODULE = "lab.audit.fleet"
FLEET_SIZE = 20
FLEET_GATEWAYS = "tests.fleet_support"  # the in-lab gateways it is tested against
FLEET_TIMEOUT_S = 300.0
NETNS = Path("/run/netns")  # where `ip netns` (and the lab) name namespaces


@dataclass(frozen=True)
class SiteFigures:
    """One run of the large site's scenario: its boot, teardown and memory."""

    scenario: str
    clients: int
    up_s: float
    down_s: float  # from the lab's stop to the run's end (every process gone)
    pss_bytes: int  # the run's processes (those in its namespaces), proportional share
    drop_bytes: int  # the machine's MemAvailable, before boot minus its lowest while up
    summary: str

    @property
    def memory_bytes(self) -> int:
        """The larger of the two: kernel memory (namespaces, links) shows only in the drop,
        and other work on the machine only there too."""
        return max(self.pss_bytes, self.drop_bytes)


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise LabFailure("/proc/meminfo has no MemAvailable line")


def run_pss(run: Run) -> int:
    """Proportional set size of every process in the run's named namespaces."""
    inodes = {p.stat().st_ino for p in NETNS.glob(f"{run.prefix}-*")} if NETNS.is_dir() else set()
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "ns" / "net").stat().st_ino not in inodes:
                continue
            rollup = (proc / "smaps_rollup").read_text()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        total += sum(int(line.split()[1]) * 1024 for line in rollup.splitlines()
                     if line.startswith("Pss:"))
    return total


def site_scenario() -> str | None:
    """The large site's scenario: built in, or the project's example; None: neither."""
    if SITE_SCENARIO in scenario.builtin_names():
        return SITE_SCENARIO
    example = EXAMPLES / SITE_SCENARIO
    return str(example) if (example / "scenario.yaml").is_file() else None


def site_1000(say: Say) -> SiteFigures | None:
    """verify the large site's scenario, its lab timed and weighed; None: not in this build."""
    found = site_scenario()
    if found is None:
        return None
    s = scenario.load(found)
    marks: dict[str, float] = {}
    weights: dict[str, int] = {"pss": 0, "low": 0}

    def weigh(run: Run) -> None:
        weights["pss"] = max(weights["pss"], run_pss(run))
        weights["low"] = min(weights["low"], _available())

    @contextlib.contextmanager
    def boot(site: Site, run: Run) -> Iterator[Lab]:
        weights["before"] = weights["low"] = _available()
        started = time.perf_counter()
        with Lab(site, run) as lab:
            marks["up"] = time.perf_counter() - started
            weigh(run)
            yield lab
            weigh(run)
            marks["stop"] = time.perf_counter()

    say(f"{SITE_SCENARIO}: {len(s.site.clients)} clients")
    with lifecycle.opened() as run:
        outcome = verify(s, run, say, boot=boot)
    ended = time.perf_counter()
    if outcome.lab_error:
        raise LabFailure(outcome.lab_error)
    applicable = [r for r in outcome.results if r.applicable]
    return SiteFigures(SITE_SCENARIO, len(s.site.clients), marks["up"], ended - marks["stop"],
                       weights["pss"], weights["before"] - weights["low"],
                       f"{sum(r.passed for r in applicable)} of {len(applicable)} applicable "
                       f"rows as expected ({len(outcome.results) - len(applicable)} not "
                       "applicable)")


def fleet_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in (FLEET_MODULE, FLEET_GATEWAYS))


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# -- the fleet audit -------------------------------------------------------------------
@dataclass(frozen=True)
class FleetRun:
    """`port25lab audit` over the fleet, timed from outside, as an auditor in client1 runs it."""

    gateways: int
    jobs: str  # as given: "default" or the --jobs number
    seconds: float
    status: int
    summary: str  # the report's own first line (== fleet audit …)


def fleet_20(say: Say) -> list[FleetRun] | None:
    """The fleet audit over 20 in-lab gateways; None: not in this build.

    The gateways are tests/fleet_support.py's: each a network namespace of its own with
    the correct rules and a private sshd, reached from the auditor's namespace over a
    management bridge; `port25lab audit` runs there, once with its default `--jobs` and
    once with all 20 at a time.
    """
    if not fleet_available():
        say(f"fleet audit: {FLEET_MODULE} is not in this build")
        return None
    # imported by name: the module comes with the fleet audit, not in every build
    fleet_support: Any = importlib.import_module(FLEET_GATEWAYS)

    runs: list[FleetRun] = []
    say(f"fleet audit: starting {FLEET_SIZE} gateways")
    with fleet_support.fleet(["correct"] * FLEET_SIZE) as fleet:
        targets = [m.target for m in fleet.members]
        for jobs in ((), ("--jobs", str(FLEET_SIZE))):
            say(f"fleet audit: {FLEET_SIZE} gateways, jobs {jobs[1] if jobs else 'default'}")
            started = time.perf_counter()
            status, out, err = fleet.audit(*targets, "-i", str(fleet.key), "-q", *jobs)
            seconds = time.perf_counter() - started
            if status not in (0, 1):
                last = (err.strip().splitlines() or ["(no message)"])[-1]
                raise LabFailure(f"`port25lab audit` of the fleet exited {status}: {last}")
            summary = next((line for line in out.splitlines()
                            if line.startswith("== fleet audit")), "(no summary line)")
            # the report's own lines for a gateway it could not read, and why
            summary += "".join(f"; {line.strip()}" for line in out.splitlines()
                               if ": not read: " in line)
            runs.append(FleetRun(FLEET_SIZE, jobs[1] if jobs else "default", seconds, status,
                                 summary))
            say(f"fleet audit: {seconds:.1f} s: {summary}")
    return runs


def fleet_details(fleet: list[FleetRun] | str | None) -> str:
    if not isinstance(fleet, list):
        return fleet or "not available in this build"
    return "; ".join(f"{r.gateways} gateways, jobs {r.jobs}: {r.seconds:.1f} s, exit "
                     f"{r.status}: {r.summary}" for r in fleet)
