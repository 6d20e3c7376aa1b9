"""Lifecycle: stale runs are removed (only those), the host is left as it was."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.runtime import lifecycle
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
    return subprocess.Popen(["ip", "netns", "exec", f"{prefix}-client1", "sleep", "60"])


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
