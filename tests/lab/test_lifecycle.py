"""Lifecycle: stale runs are removed (only those), the host is left as it was, no process
of a run outlives its teardown, and signals wait for the steps they must not cut short."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

import topologies
from lab.engine.verify import verify
from lab.errors import LabFailure
from lab.model import scenario
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from tests.support import leftovers

pytestmark = pytest.mark.lab

SYSCTLS = ("net.core.rmem_max", "net.core.wmem_max", "net.ipv4.tcp_rmem",
           "net.ipv4.neigh.default.gc_thresh3", "kernel.pty.max", "net.ipv4.ip_forward",
           "net.ipv6.conf.all.forwarding", "net.bridge.bridge-nf-call-iptables",
           "net.netfilter.nf_log_all_netns", "net.ipv6.conf.default.accept_dad")


def _host_state() -> dict[str, str]:
    state = {k: Path("/proc/sys", *k.split(".")).read_text() for k in SYSCTLS
             if Path("/proc/sys", *k.split(".")).exists()}
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
        state[tool] = "\n".join(ln for ln in out.splitlines() if not ln.startswith("#"))
    return state


def _fake_run(prefix: str, owner_pid: int) -> subprocess.Popen[bytes]:
    """A run as a killed port25lab would leave it: folder, named namespace, a process in it."""
    folder = lifecycle.RUN_ROOT / prefix
    folder.mkdir(parents=True)
    owner = {"pid": owner_pid, "start": lifecycle._start_time(owner_pid)}
    (folder / "owner.json").write_text(json.dumps(owner))
    subprocess.run(["ip", "netns", "add", f"{prefix}-client1"], check=True)
    inside = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-client1", "sleep", "60"])
    # `ip netns exec` enters the namespace after it has started: until then no teardown
    # could find it there (on a loaded machine that takes a while)
    namespace = os.stat(lifecycle.NETNS_ROOT / f"{prefix}-client1").st_ino
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{inside.pid}/ns/net").st_ino != namespace:
        assert time.monotonic() < deadline, "the process never entered its namespace"
        time.sleep(0.005)
    return inside


def test_stale_runs_are_removed_and_live_ones_kept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_prefix, live_prefix = (lifecycle.PREFIX_HEAD + secrets.token_hex(3) for _ in "ab")
    stale = _fake_run(dead_prefix, dead.pid)  # owner gone
    live = _fake_run(live_prefix, os.getpid())  # owner alive: this test
    try:
        time.sleep(0.1)
        removed = lifecycle.remove_stale()
        assert dead_prefix in removed and live_prefix not in removed
        assert stale.wait(timeout=5) != 0  # killed
        assert leftovers(dead_prefix) == []
        assert live.poll() is None
        assert (lifecycle.NETNS_ROOT / f"{live_prefix}-client1").exists()
    finally:
        lifecycle.destroy(lifecycle.Run(live_prefix, lifecycle.RUN_ROOT / live_prefix))
        live.wait(timeout=5)
    assert leftovers(live_prefix) == []


def test_a_run_leaves_the_host_as_it_was() -> None:
    before = _host_state()
    run = lifecycle.new_run()
    try:
        result = verify(scenario.load("fixed-dmz-block"), run, lambda _: None)
    finally:
        lifecycle.destroy(run)
    assert result.passed
    assert leftovers(run.prefix) == []
    assert _host_state() == before


def _in_namespaces(inodes: set[int]) -> list[str]:
    """Every process (PID and name) whose network namespace is one of `inodes`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, or a zombie (no namespaces)
            if entry.name.isdigit() and int(os.readlink(entry / "ns/net")[5:-1]) in inodes:
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
    return found


def test_no_process_of_a_run_outlives_verify() -> None:
    # fixed-proxy runs Postfix and Dovecot on mx and delivers mail (cleanup, anvil, log...)
    run = lifecycle.new_run()
    held: dict[int, int] = {}  # inode → an open descriptor of the namespace

    def while_up(_: str) -> None:
        # Holding each namespace open keeps its inode from being reused by another
        # run on this machine after teardown, so what is found below is this run's.
        for name in lifecycle.namespaces_of(run):
            with contextlib.suppress(OSError):
                fd = os.open(lifecycle.NETNS_ROOT / name, os.O_RDONLY)
                inode = os.fstat(fd).st_ino
                if inode in held:
                    os.close(fd)
                else:
                    held[inode] = fd

    try:
        result = verify(scenario.load("fixed-proxy"), run, while_up)
        remaining = _in_namespaces(set(held))  # at once: no grace for late exits
    finally:
        lifecycle.destroy(run)
        for fd in held.values():
            os.close(fd)
    assert result.passed, result.lab_error
    assert len(held) == 9  # screened-host: 7 roles and 2 segments (bridges)
    assert remaining == []


# On SIGTERM it starts a child and exits, as a master may leave one last child behind:
# a child that the teardown's first listing of the namespace cannot have seen.
FORKS_ON_TERM = "trap 'sleep 60 & exit 0' TERM; while :; do sleep 0.05; done"


def _fake_lab(prefix: str) -> tuple[lifecycle.Run, int, subprocess.Popen[bytes]]:
    """A run of ours (owner: this test) with one named namespace, held open, and FORKS_ON_TERM."""
    run = lifecycle.Run(prefix, lifecycle.RUN_ROOT / prefix)
    run.folder.mkdir(parents=True)
    owner = {"pid": os.getpid(), "start": lifecycle._start_time(os.getpid())}
    (run.folder / "owner.json").write_text(json.dumps(owner))
    subprocess.run(["ip", "netns", "add", run.netns("mx")], check=True)
    # held open: its inode cannot be reused by another namespace while the test looks
    held = os.open(lifecycle.NETNS_ROOT / run.netns("mx"), os.O_RDONLY)
    proc = subprocess.Popen(["ip", "netns", "exec", run.netns("mx"), "sh", "-c", FORKS_ON_TERM])
    deadline = time.monotonic() + 5
    while not _in_namespaces({os.fstat(held).st_ino}) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # past `ip netns exec`: the shell runs its loop, its trap is set
    return run, held, proc


def test_teardown_kills_what_starts_while_it_kills() -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # the host's: must live on
    run, held, proc = _fake_lab(lifecycle.PREFIX_HEAD + secrets.token_hex(3))
    try:
        lifecycle.destroy(run)
        remaining = _in_namespaces({os.fstat(held).st_ino})
        assert proc.wait(timeout=5) == 0  # the trap ran: it did start its child
        assert remaining == []
        assert leftovers(run.prefix) == []
        assert bystander.poll() is None
    finally:
        lifecycle.destroy(run)
        os.close(held)
        bystander.kill()
        bystander.wait()


def test_teardown_past_its_deadline_says_what_is_left_and_keeps_the_run() -> None:
    run, held, proc = _fake_lab(lifecycle.PREFIX_HEAD + secrets.token_hex(3))
    try:
        # deadline 0: after the first round (SIGTERM) nothing more is tried
        with pytest.raises(LabFailure, match=rf"teardown of {run.prefix}: 1 processes still "
                                             r"in its namespaces after 0 s \(\d+ sleep\)"):
            lifecycle.destroy(run, deadline=0)
        proc.wait(timeout=5)
        # kept, so that a later teardown (or `remove_stale`) can finish the work
        assert (lifecycle.NETNS_ROOT / run.netns("mx")).exists() and run.folder.is_dir()
        lifecycle.destroy(run)
        assert _in_namespaces({os.fstat(held).st_ino}) == []
        assert leftovers(run.prefix) == []
    finally:
        lifecycle.destroy(run)
        os.close(held)


def test_a_signal_waits_for_a_deferred_block_then_interrupts() -> None:
    previous = {s: signal.getsignal(s) for s in lifecycle.SIGNALS}
    lifecycle.interrupt_on_signals()
    finished = False
    try:
        with pytest.raises(lifecycle.Interrupted) as caught, lifecycle.signals_deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)  # time enough for a handler to run, if one did
            finished = True
        assert finished and caught.value.signum == signal.SIGHUP
        # the first signal started the teardown: later ones are ignored
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in lifecycle.SIGNALS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _left_waiting(lab: Lab) -> None:
    """A node command left running, as a signal leaves one: Mininet's stop asserts on it."""
    lab.node("client1").sendCmd("sleep 30")


def test_a_lab_mininet_cannot_stop_is_still_removed_and_says_so() -> None:
    run = lifecycle.new_run()
    try:
        stopped = r"Mininet could not stop screened-host: AssertionError\(\) \(its namespaces"
        site = topologies.load("screened-host")
        with pytest.raises(LabFailure, match=stopped), Lab(site, run) as lab:
            _left_waiting(lab)
        assert leftovers(run.prefix) == []
    finally:
        lifecycle.destroy(run)


def test_an_error_unwinding_through_a_lab_mininet_cannot_stop_stays_the_error() -> None:
    run = lifecycle.new_run()
    try:
        site = topologies.load("screened-host")
        with pytest.raises(ValueError, match="the story"), Lab(site, run) as lab:
            _left_waiting(lab)
            raise ValueError("the story")
        assert leftovers(run.prefix) == []
    finally:
        lifecycle.destroy(run)


def test_a_run_is_opened_once_and_closed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_prefix = lifecycle.PREFIX_HEAD + secrets.token_hex(3)
    stale = _fake_run(stale_prefix, dead.pid)
    teardowns: list[set[int]] = []
    kill_until_empty = lifecycle._kill_until_empty

    def counted(inodes: set[int], deadline: float, what: str) -> None:
        teardowns.append(set(inodes))
        kill_until_empty(inodes, deadline, what)

    monkeypatch.setattr(lifecycle, "_kill_until_empty", counted)
    with lifecycle.opened() as run:
        assert stale.wait(timeout=5) != 0 and leftovers(stale_prefix) == []  # stale: gone
        teardowns.clear()
        assert json.loads((run.folder / "owner.json").read_text())["pid"] == os.getpid()
        with Lab(topologies.load("screened-host"), run):
            pass
    assert leftovers(run.prefix) == []
    assert len(teardowns) == 1  # the lab's own; the run's end found nothing left


@pytest.mark.parametrize("lab_up", [False, True])
def test_a_signal_in_a_run_says_whether_a_lab_was_torn_down(lab_up: bool) -> None:
    with pytest.raises(lifecycle.Interrupted) as caught, lifecycle.opened() as run:
        if lab_up:
            with Lab(topologies.load("screened-host"), run):
                raise lifecycle.Interrupted(signal.SIGTERM)
        raise lifecycle.Interrupted(signal.SIGTERM)
    assert caught.value.torn_down == ([run.prefix] if lab_up else [])
    assert leftovers(run.prefix) == []
