"""Scenarios side by side: `verify -j N` (a process pool) and `pytest --pyargs lab.scenarios -n 2`
(pytest-xdist): reports in the scenarios' order, labs really overlapping, every lab torn down
on a signal, nothing of the pool left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support import CLI, PROJECT, leftovers, prefixes

pytestmark = pytest.mark.lab

# quick ones; seed-proxy fails (its published rules), so the run's status is 1
NAMES = ("spambot", "seed-proxy", "fixed-proxy")


def _span(record: dict[str, object]) -> tuple[datetime, datetime]:
    started = datetime.fromisoformat(str(record["started"]).replace("Z", "+00:00"))
    return started, started + timedelta(seconds=float(str(record["duration_s"])))


def test_verify_side_by_side_reports_in_the_scenarios_order(tmp_path: Path) -> None:
    report, junit = tmp_path / "run.json", tmp_path / "run.xml"
    done = subprocess.run([CLI, "verify", *NAMES, "-j", "3", "--json", str(report),
                           "--junit", str(junit)], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT, check=False)
    assert done.returncode == 1, done.stderr  # seed-proxy's expectations do not hold
    shown = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert shown == list(NAMES)
    data = json.loads(report.read_text())
    assert [s["name"] for s in data["scenarios"]] == list(NAMES)
    assert [s["passed"] for s in data["scenarios"]] == [True, False, True]
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == list(NAMES)
    # side by side: every lab was up while another was (one pool of three)
    spans = [_span(s) for s in data["scenarios"]]
    for n, (start, end) in enumerate(spans):
        assert any(start < other_end and other_start < end
                   for m, (other_start, other_end) in enumerate(spans) if m != n), spans


def _session(sid: int) -> list[str]:
    """The processes of a session (the CLI's own and its pool's), as `ps` shows them."""
    ps = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True,
                        check=True)
    return [line.strip() for line in ps.stdout.splitlines()
            if line.split() and line.split()[0] == str(sid)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_tears_every_lab_down(signum: int) -> None:
    # Ctrl-C reaches the whole foreground group (the pool's workers too); SIGTERM the CLI.
    proc = subprocess.Popen([CLI, "verify", "--all", "-j", "3", "-v"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT,
                            start_new_session=True)
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 180
    while len(prefixes(seen)) < 3 or "[2/" not in seen:  # three labs up, probes under way
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, seen
        seen += line
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, rest
    last = rest.splitlines()[-1]
    assert last.startswith(f"port25lab: interrupted by signal {signum}; lab torn down ("), rest
    found = prefixes(seen)
    assert found <= prefixes(last) and len(found) >= 3, (found, last)
    for prefix in found:
        assert leftovers(prefix) == []
    deadline = time.monotonic() + 10  # the pool's workers and server end with the CLI
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session(proc.pid) == []


def test_jobs_must_be_a_positive_number() -> None:
    done = subprocess.run([CLI, "verify", "spambot", "--jobs", "0"], capture_output=True,
                          text=True, timeout=60, cwd=PROJECT, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--jobs" in done.stderr and "'0'" in done.stderr


def test_scenarios_as_pytest_items_on_two_workers(tmp_path: Path) -> None:
    junit = tmp_path / "scenarios.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "lab.scenarios",
         "-n", "2", "-v", *(f"--port25lab-scenario={n}" for n in NAMES),
         f"--junitxml={junit}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 1, done.stdout  # seed-proxy fails, the others pass
    assert "[gw0]" in done.stdout and "[gw1]" in done.stdout  # two workers ran them
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {f"test_scenario[{n}]" for n in NAMES}
    failed = {n for n, c in cases.items() if c.find("failure") is not None}
    assert failed == {"test_scenario[seed-proxy]"}
    message = cases["test_scenario[seed-proxy]"].find("failure")
    assert message is not None and "FAIL —" in (message.text or "")  # its report
