"""Benchmark the lab: boot and teardown, per-probe verdict latency, trap reaction times,
CLI wall time.

Prints figures and asserts nothing. Progress goes to stderr, the figures to
stdout. Exit status: 0; 2 bad usage; 3 the lab failed (one line on stderr);
128+N after signal N (every lab torn down first).
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
CLI_SCENARIOS = ("seed-screened-block", "seed-dmz-block", "fixed-screened-block",
                 "fixed-dmz-block")
BLOCKED_TARGET_MS = 100.0
CLI_TARGET_S = 30.0
CLI_TIMEOUT_S = 900.0

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
    """Boot (Lab.__enter__, recorders and mail servers included) and tear down `rounds` times."""
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
    return [ProbeTiming(s.name, str(r.observed), str(r.expected), r.wall_ms, r.elapsed_ms)
            for r in outcome.results]


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
    cli = str(Path(sys.executable).parent / "port25lab")
    with tempfile.TemporaryDirectory(prefix="port25lab-bench-") as folder:
        report = Path(folder) / "report.json"
        every = run_cli("verify --all -q --json", [cli, "verify", "--all", "-q", "--json",
                                                   str(report)], say)
        scenarios = json.loads(report.read_text())["scenarios"]
        say(f"cli: JSON report has {len(scenarios)} scenarios, "
            f"{sum(s['passed'] for s in scenarios)} pass")
    named = run_cli(f"verify {len(CLI_SCENARIOS)} scenarios -q",
                    [cli, "verify", *CLI_SCENARIOS, "-q"], say)
    return [every, named]


# -- the report ---------------------------------------------------------------------
def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 2, 3}  # numbers line up on the right
    return "\n".join("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip() for row in rows)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(cycles: Sequence[LabCycle], probes: Sequence[ProbeTiming],
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
            note = f"sender {statistics.median(t.sender_ms for t in group):.1f} ms"
            if kind == "blocked" and not name:
                note += (f"; median < {BLOCKED_TARGET_MS:.0f} ms: "
                         f"{_yes(statistics.median(calls) < BLOCKED_TARGET_MS)}")
            label = f"probe {kind}" if not name else f"  {name}"
            rows.append((label, str(len(calls)), f"{statistics.median(calls):.1f} ms",
                         f"{p95(calls):.1f} ms", note))
    if "blocked" not in kinds:
        rows.append(("probe blocked", "0", "-", "-",
                     f"median < {BLOCKED_TARGET_MS:.0f} ms: n/a (no blocked probe)"))
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
        note = f"exit {r.status}; {r.summary}"
        if r.label.startswith("verify --all"):
            note += " (exit 1 expected: seed scenarios fail by design)"
        else:
            note += f"; < {CLI_TARGET_S:.0f} s: {_yes(r.seconds < CLI_TARGET_S)}"
        rows.append((f"cli {r.label}", "1", f"{r.seconds:.1f} s", "", note))
    machine = (f"machine: nproc {len(os.sched_getaffinity(0))}, kernel {platform.release()}, "
               f"python {platform.python_version()}")
    return "\n".join(("port25lab bench", machine, _table(rows),
                      "p95 is nearest-rank: with fewer than 20 samples it is the largest; "
                      "'sender' is the agent's own SYN wait (Observation.elapsed_ms)"))


# -- the program ----------------------------------------------------------------------
def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench.py", description="Time lab boot and teardown, per-probe verdicts and the "
        "verify command. Needs root; prints figures and asserts nothing.")
    parser.add_argument("--rounds", type=_count, default=5, metavar="N",
                        help="boot/teardown rounds per topology (default 5)")
    parser.add_argument("--repeat", type=_count, default=3, metavar="N",
                        help="runs of each fixed scenario's probe matrix and of each "
                             "trap scenario (default 3)")
    return parser


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def run() -> int:
        if os.geteuid() != 0:
            raise BadInput("needs root (the lab creates network namespaces)")
        scenarios = [scenario.load(name) for name in LAB_SCENARIOS]
        cycles = [time_lab_cycles(s, args.rounds, _say) for s in scenarios]
        probes = time_scenarios(scenarios, args.repeat, _say)
        bans = time_traps(args.repeat, _say)
        cli = time_cli(_say)
        print(report(cycles, probes, bans, cli))
        return 0
    return reported("bench", run)


if __name__ == "__main__":
    sys.exit(main())
