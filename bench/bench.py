"""Benchmark the lab: boot and teardown, per-probe verdict latency, trap reaction times,
CLI wall time, the side by side with nmap and swaks, the 1000-client site and the fleet
audit; each headline figure beside its target (issue 15).

Prints figures and asserts nothing. Progress goes to stderr, the figures to
stdout. Exit status: 0; 2 bad usage; 3 the lab failed (one line on stderr);
128+N after signal N (every lab torn down first). Run as `python -m bench`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import peers, scale
from bench.table import table, yes
from lab.cli import reported
from lab.engine.verify import verify
from lab.errors import BadInput, LabFailure
from lab.model import scenario
from lab.model.scenario import Scenario
from lab.runtime import lifecycle
from lab.runtime.lab import Lab

# One fixed scenario per built-in topology (its probes are what the latency figures time).
LAB_SCENARIOS = ("fixed-screened-block", "fixed-dmz-block")
# The traps whose bans are timed: fail2ban on the firewall log, and on Postfix's log.
TRAP_SCENARIOS = ("fixed-trap", "guessing")
# The rows nmap and swaks run beside the lab (issue 15's side by side)
PEER_SCENARIO = "fixed-screened-block"
CLI_TIMEOUT_S = 900.0
# issue 15's targets
BLOCKED_TARGET_MS = 10.0
ALLOWED_TARGET_MS = 15.0
ALL_TARGET_S = 45.0
BOOT_TARGET_S = 0.5
TEARDOWN_TARGET_S = 0.3
SITE_UP_TARGET_S = 30.0
SITE_DOWN_TARGET_S = 15.0
SITE_MEMORY_TARGET = 4 * 2**30
NMAP_T5_TARGET = 30.0  # times faster than `nmap -sS -T5` on the same rows
NOT_IN_BUILD = "not available in this build"
QUICK = "skipped (--quick)"

Say = Callable[[str], None]


@dataclass(frozen=True)
class LabCycle:
    """Boot and teardown times (ms) of one topology over several rounds."""

    topology: str
    boot_ms: tuple[float, ...]
    teardown_ms: tuple[float, ...]


@dataclass(frozen=True)
class ProbeTiming:
    """One probe_once call, timed by its caller."""

    scenario: str
    probe: str
    observed: str
    expected: str
    call_ms: float
    sender_ms: float  # Observation.elapsed_ms: the agent's own SYN/answer wait


@dataclass(frozen=True)
class BanTiming:
    """One ban a trap made: from the event that fired it to the rule in the kernel."""

    scenario: str
    fired_by: str
    reaction_ms: float
    lifted_after_s: float | None


@dataclass(frozen=True)
class CliRun:
    label: str
    seconds: float
    status: int
    summary: str  # the CLI's last stdout line ("N of M scenarios pass")


# -- statistics -----------------------------------------------------------------
def p95(samples: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (with fewer than 20 samples: the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(seconds: float) -> float:
    return seconds * 1000.0


# -- 1. boot and teardown -----------------------------------------------------------
def time_lab_cycles(s: Scenario, rounds: int, say: Say) -> LabCycle:
    """Boot (Lab.__enter__, recorders and mail servers included) and tear down `rounds` times.

    Teardown runs from the lab's stop to the run's end: every process and namespace gone.
    """
    boots: list[float] = []
    downs: list[float] = []
    for number in range(1, rounds + 1):
        with lifecycle.opened() as run:
            lab = Lab(s.site, run)
            started = time.perf_counter()
            with lab:
                up = time.perf_counter()
        down = time.perf_counter()
        boots.append(_ms(up - started))
        downs.append(_ms(down - up))
        say(f"{s.topology}: round {number}/{rounds}: boot {boots[-1]:.0f} ms, "
            f"teardown {downs[-1]:.0f} ms")
    return LabCycle(s.topology, tuple(boots), tuple(downs))


# -- 2. per-probe verdict latency -------------------------------------------------------
def time_probes(s: Scenario, say: Say) -> list[ProbeTiming]:
    """One verify() of a scenario; each result carries its probe's call time."""
    with lifecycle.opened() as run:
        outcome = verify(s, run, say)
    if outcome.lab_error:
        raise LabFailure(outcome.lab_error)
    return [ProbeTiming(s.name, r.probe, str(r.observed), str(r.expected), r.wall_ms,
                        r.elapsed_ms)
            for r in outcome.results if r.applicable]


def time_scenarios(scenarios: Sequence[Scenario], repeat: int, say: Say) -> list[ProbeTiming]:
    timings: list[ProbeTiming] = []
    for number in range(1, repeat + 1):
        for s in scenarios:
            say(f"{s.name}: probing, repeat {number}/{repeat}")
            found = time_probes(s, say)
            wrong = sum(t.observed != t.expected for t in found)
            say(f"{s.name}: {len(found)} probes, median "
                f"{statistics.median(t.call_ms for t in found):.1f} ms"
                + (f", {wrong} verdicts differ from the expectation" if wrong else ""))
            timings.extend(found)
    return timings


# -- 3. trap reaction ----------------------------------------------------------------------
def time_traps(repeat: int, say: Say) -> list[BanTiming]:
    """Every ban of the trap scenarios, `repeat` runs each."""
    bans: list[BanTiming] = []
    for number in range(1, repeat + 1):
        for name in TRAP_SCENARIOS:
            say(f"{name}: trap, repeat {number}/{repeat}")
            with lifecycle.opened() as run:
                outcome = verify(scenario.load(name), run, say)
            if outcome.lab_error:
                raise LabFailure(outcome.lab_error)
            found = [BanTiming(name, b.fired_event, b.reaction_ms, b.lifted_after_s)
                     for b in outcome.bans if b.reaction_ms is not None]
            say(f"{name}: {len(found)} bans, reactions "
                + ", ".join(f"{b.reaction_ms:.0f} ms" for b in found))
            bans.extend(found)
    return bans


# -- 4. the command line ---------------------------------------------------------------
def run_cli(label: str, argv: list[str], say: Say) -> CliRun:
    """Run the CLI once and time it; exit 0 or 1 are results, anything else a lab failure."""
    say(f"cli: {' '.join(argv[1:])}")
    started = time.perf_counter()
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        try:
            out, err = child.communicate(timeout=CLI_TIMEOUT_S)
        except BaseException:
            # SIGTERM lets the CLI tear its lab down; SIGKILL would leave it behind.
            child.send_signal(signal.SIGTERM)
            try:
                child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise
    seconds = time.perf_counter() - started
    if child.returncode not in (0, 1):
        last = (err.strip().splitlines() or ["(no message)"])[-1]
        raise LabFailure(f"`port25lab {' '.join(argv[1:])}` exited {child.returncode}: {last}")
    summary = (out.strip().splitlines() or [""])[-1]
    say(f"cli: {seconds:.1f} s, exit {child.returncode}: {summary}")
    return CliRun(label, seconds, child.returncode, summary)


def time_cli(say: Say) -> list[CliRun]:
    """`port25lab verify --all` as a user runs it, timed from outside."""
    cli = str(Path(sys.executable).parent / "port25lab")
    with tempfile.TemporaryDirectory(prefix="port25lab-bench-") as folder:
        report = Path(folder) / "report.json"
        every = run_cli("verify --all -q --json", [cli, "verify", "--all", "-q", "--json",
                                                   str(report)], say)
        scenarios = json.loads(report.read_text())["scenarios"]
        say(f"cli: JSON report has {len(scenarios)} scenarios, "
            f"{sum(s['passed'] for s in scenarios)} pass")
    return [every]


# -- the report ---------------------------------------------------------------------
def details(cycles: Sequence[LabCycle], probes: Sequence[ProbeTiming],
            bans: Sequence[BanTiming], cli: Sequence[CliRun]) -> str:
    rows: list[tuple[str, ...]] = [("figure", "n", "median", "p95", "note")]
    for c in cycles:
        for what, samples in (("boot", c.boot_ms), ("teardown", c.teardown_ms)):
            rows.append((f"{what} {c.topology}", str(len(samples)),
                         f"{statistics.median(samples):.0f} ms", f"{p95(samples):.0f} ms", ""))
    first = ("blocked", "allowed")
    kinds = sorted({t.observed for t in probes},
                   key=lambda k: (first.index(k) if k in first else len(first), k))
    names = list(dict.fromkeys(t.scenario for t in probes))
    for kind in kinds:
        for name in ("", *names):
            group = [t for t in probes if t.observed == kind and name in ("", t.scenario)]
            if not group:
                continue
            calls = [t.call_ms for t in group]
            label = f"probe {kind}" if not name else f"  {name}"
            rows.append((label, str(len(calls)), f"{statistics.median(calls):.1f} ms",
                         f"{p95(calls):.1f} ms",
                         f"sender {statistics.median(t.sender_ms for t in group):.1f} ms"))
    wrong = sum(t.observed != t.expected for t in probes)
    rows.append(("probe verdict != expected", str(wrong), "", "", f"of {len(probes)} probes"))
    for name in dict.fromkeys(b.scenario for b in bans):
        made = [b for b in bans if b.scenario == name]
        reactions = [b.reaction_ms for b in made]
        rows.append((f"ban reaction {name}", str(len(made)),
                     f"{statistics.median(reactions):.0f} ms", f"{p95(reactions):.0f} ms",
                     f"from {made[0].fired_by} to the ban rule in the kernel"))
        lifted = [b.lifted_after_s for b in made if b.lifted_after_s is not None]
        if lifted:
            rows.append((f"ban lifted {name}", str(len(lifted)),
                         f"{statistics.median(lifted):.1f} s", f"{p95(lifted):.1f} s",
                         "after the ban rule was seen (jail bantime 8 s, counted by fail2ban "
                         "from the log line)"))
    for r in cli:
        rows.append((f"cli {r.label}", "1", f"{r.seconds:.1f} s", "",
                     f"exit {r.status}; {r.summary} (exit 1 expected: seed scenarios fail "
                     "by design)"))
    return "\n".join((table(rows),
                      "p95 is nearest-rank: with fewer than 20 samples it is the largest; "
                      "'sender' is the agent's own SYN wait (Observation.elapsed_ms)"))


@dataclass(frozen=True)
class Figure:
    """A headline figure: what was measured (or why nothing was), its target, met or not."""

    name: str
    measured: str
    target: str
    met: bool | None  # None: no figure, or no target to meet

    def row(self) -> tuple[str, str, str, str]:
        return (self.name, self.measured, self.target, "-" if self.met is None else yes(self.met))


def _median_figure(name: str, samples: Sequence[float], target_ms: float) -> Figure:
    if not samples:
        return Figure(name, "no such row", f"<= {target_ms:.0f} ms", None)
    median = statistics.median(samples)
    return Figure(f"{name} (n {len(samples)})", f"{median:.1f} ms", f"<= {target_ms:.0f} ms",
                  median <= target_ms)


def _seconds_figure(name: str, seconds: float | None, target_s: float, why_none: str) -> Figure:
    if seconds is None:
        return Figure(name, why_none, f"<= {target_s:g} s", None)
    return Figure(name, f"{seconds:.2f} s", f"<= {target_s:g} s", seconds <= target_s)


def _worst_median(cycles: Sequence[LabCycle], boot: bool) -> tuple[str, float] | None:
    medians = [(c.topology, statistics.median(c.boot_ms if boot else c.teardown_ms) / 1000)
               for c in cycles]
    return max(medians, key=lambda m: m[1]) if medians else None


def headline(cycles: Sequence[LabCycle], probes: Sequence[ProbeTiming],
             cli: Sequence[CliRun] | None, ratios: Sequence[peers.Ratio],
             site: scale.SiteFigures | str | None,
             fleet: list[scale.FleetRun] | str | None) -> list[Figure]:
    """Issue 15's figures, each with its target. A str for site/fleet: why there is none."""
    syn = [t for t in probes if peers.is_syn_probe(t.probe)]
    figures = [
        _median_figure("blocked SYN row, median", [t.call_ms for t in syn
                                                   if t.observed == "blocked"],
                       BLOCKED_TARGET_MS),
        _median_figure("allowed SYN row, median", [t.call_ms for t in syn
                                                   if t.observed == "allowed"],
                       ALLOWED_TARGET_MS),
        _median_figure("any blocked verdict, median",
                       [t.call_ms for t in probes if t.observed == "blocked"],
                       BLOCKED_TARGET_MS),
    ]
    every = next((r for r in cli or () if r.label.startswith("verify --all")), None)
    figures.append(_seconds_figure("verify --all wall time", every.seconds if every else None,
                                   ALL_TARGET_S, QUICK))
    for boot, target in ((True, BOOT_TARGET_S), (False, TEARDOWN_TARGET_S)):
        worst = _worst_median(cycles, boot)
        what = "boot, daemons up" if boot else "teardown, run gone"
        figures.append(_seconds_figure(
            f"{what} (median, slowest topology{': ' + worst[0] if worst else ''})",
            worst[1] if worst else None, target, "no cycle"))
    if isinstance(site, scale.SiteFigures):
        gib = site.memory_bytes / 2**30
        figures += [
            _seconds_figure(f"{site.clients}-client site up ({site.scenario})", site.up_s,
                            SITE_UP_TARGET_S, ""),
            _seconds_figure(f"{site.clients}-client site down", site.down_s,
                            SITE_DOWN_TARGET_S, ""),
            Figure(f"{site.clients}-client site memory", f"{gib:.2f} GiB",
                   f"< {SITE_MEMORY_TARGET / 2**30:.0f} GiB", site.memory_bytes <
                   SITE_MEMORY_TARGET)]
    else:
        why = site or NOT_IN_BUILD
        figures += [Figure("1000-client site up", why, f"<= {SITE_UP_TARGET_S:g} s", None),
                    Figure("1000-client site down", why, f"<= {SITE_DOWN_TARGET_S:g} s", None),
                    Figure("1000-client site memory", why,
                           f"< {SITE_MEMORY_TARGET / 2**30:.0f} GiB", None)]
    parallel = fleet[-1] if isinstance(fleet, list) and fleet else None
    figures.append(Figure(
        f"fleet audit, {scale.FLEET_SIZE} gateways in parallel",
        f"{parallel.seconds:.1f} s (jobs {parallel.jobs}, exit {parallel.status})" if parallel else
        fleet if isinstance(fleet, str) else NOT_IN_BUILD,
        "(none: in parallel, one report)", None))
    for r in ratios:
        if r.peer.startswith("nmap"):
            t5 = r.peer.endswith("-T5")
            figures.append(Figure(f"vs {r.peer}, {r.rows} SYN rows (times faster)",
                                  f"{r.faster:.1f}x", f">= {NMAP_T5_TARGET:.0f}x" if t5 else
                                  "(none)", r.faster >= NMAP_T5_TARGET if t5 else None))
    return figures


def _machine() -> str:
    return (f"machine: nproc {len(os.sched_getaffinity(0))}, kernel {platform.release()}, "
            f"python {platform.python_version()}, "
            f"memory {scale.machine_memory() / 2**30:.1f} GiB")


def site_details(site: scale.SiteFigures | str | None) -> str:
    if not isinstance(site, scale.SiteFigures):
        return f"{scale.SITE_SCENARIO}: {site or NOT_IN_BUILD}"
    return (f"{site.scenario}: {site.clients} clients, up {site.up_s:.2f} s, down "
            f"{site.down_s:.2f} s, memory {site.memory_bytes / 2**30:.2f} GiB (the run's "
            f"processes {site.pss_bytes / 2**20:.0f} MiB PSS; MemAvailable fell "
            f"{site.drop_bytes / 2**20:.0f} MiB); {site.summary}")


# -- the program ----------------------------------------------------------------------
def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Time lab boot and teardown, per-probe verdicts, "
        "the verify command, nmap and swaks on the same rows, the large site and the fleet "
        "audit. Needs root; prints figures and asserts nothing.")
    parser.add_argument("--rounds", type=_count, default=5, metavar="N",
                        help="boot/teardown rounds per topology (default 5)")
    parser.add_argument("--repeat", type=_count, default=3, metavar="N",
                        help="runs of each fixed scenario's probe matrix and of each "
                             "trap scenario (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast subset: 2 rounds, 1 repeat, the side by side; no trap "
                             "timings, no verify --all, no large site, no fleet")
    return parser


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rounds, repeat = (min(args.rounds, 2), 1) if args.quick else (args.rounds, args.repeat)

    def run() -> int:
        if os.geteuid() != 0:
            raise BadInput("needs root (the lab creates network namespaces)")
        scenarios = [scenario.load(name) for name in LAB_SCENARIOS]
        cycles = [time_lab_cycles(s, rounds, _say) for s in scenarios]
        probes = time_scenarios(scenarios, repeat, _say)
        with lifecycle.opened() as side_run:
            outcome, runs = peers.side_by_side(scenario.load(PEER_SCENARIO), side_run, _say)
        bans = [] if args.quick else time_traps(repeat, _say)
        cli = None if args.quick else time_cli(_say)
        site: scale.SiteFigures | str | None = QUICK if args.quick else scale.site_1000(_say)
        fleet: list[scale.FleetRun] | str | None = QUICK if args.quick else scale.fleet_20(_say)
        ratios = peers.ratios(outcome, runs)
        figures = headline(cycles, probes, cli, ratios, site, fleet)
        print("\n".join((
            "port25lab bench" + (" (--quick)" if args.quick else ""), _machine(), "",
            "targets (issue 15)", table([("figure", "measured", "target", "met"),
                                         *(f.row() for f in figures)], frozenset({1})), "",
            details(cycles, probes, bans, cli or []), "",
            peers.comparison(outcome, runs), "", site_details(site),
            f"fleet audit: {scale.fleet_details(fleet)}")))
        return 0
    return reported("bench", run)


if __name__ == "__main__":
    sys.exit(main())
