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

from lab.engine.verify import verify
from lab.errors import LabFailure
from lab.model import scenario
from lab.model.site import Site
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from lab.runtime.lifecycle import Run

Say = Callable[[str], None]

SITE_SCENARIO = "spambot-epidemic"  # issue 15: 50 of 1000 clients infected
FLEET_MODULE = "lab.audit.fleet"
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


def site_1000(say: Say) -> SiteFigures | None:
    """verify the large site's scenario, its lab timed and weighed; None: not in this build."""
    if SITE_SCENARIO not in scenario.builtin_names():
        return None
    s = scenario.load(SITE_SCENARIO)
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
    passed = sum(r.passed for r in outcome.results)
    return SiteFigures(SITE_SCENARIO, len(s.site.clients), marks["up"], ended - marks["stop"],
                       weights["pss"], weights["before"] - weights["low"],
                       f"{passed} of {len(outcome.results)} rows as expected")


def fleet_available() -> bool:
    return importlib.util.find_spec(FLEET_MODULE) is not None


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# -- the fleet audit -------------------------------------------------------------------
def fleet_20(say: Say) -> float | str | None:
    """The fleet audit's wall time over 20 in-lab gateways; None: not in this build; a str:
    why there is no figure."""
    if not fleet_available():
        say(f"fleet audit: {FLEET_MODULE} is not in this build")
        return None
    return (f"{FLEET_MODULE} is in this build, but the bench does not drive it yet: "
            "no figure")


def fleet_details(fleet: float | str | None) -> str:
    if isinstance(fleet, float):
        return f"20 gateways audited in {fleet:.1f} s"
    return fleet or "not available in this build"
