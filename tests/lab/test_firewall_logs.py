"""Firewall logs in the lab: LOG run as NFLOG into a private ulogd2, and the
infected host named from them."""

from __future__ import annotations

import subprocess

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.runtime import lifecycle
from tests.support import CLI, PROJECT, leftovers

pytestmark = pytest.mark.lab


def test_the_logs_name_exactly_the_infected_host() -> None:
    spambot = scenario.load("spambot")
    (policy,) = spambot.policies["gw"]
    before = policy.path.read_text()
    run = lifecycle.new_run()
    try:
        result = verify(spambot, run, lambda _: None)
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []
    assert result.passed, [r.detail for r in result.results if not r.passed]
    assert {s.role for s in result.suspects} == {"client2"}
    by_address = {s.address: s for s in result.suspects}
    assert set(by_address) == {"203.0.113.11", "2001:db8:b01a:70da::11"}
    for suspect in result.suspects:
        # smtp, smtps and spam to three outside servers, per family
        assert suspect.count == 9
        assert suspect.ports == (25, 465)
        assert len(suspect.destinations) == 3
        assert suspect.first <= suspect.last
    # the translation is reported, and the published file is left as it was
    assert any("fixed-screened-block/rules.sh:6: -j LOG run as -j NFLOG --nflog-group 25" in n
               for n in result.notes)
    assert policy.path.read_text() == before


def test_suspects_command_prints_only_the_infected_host() -> None:
    done = subprocess.run([CLI, "suspects", "spambot"], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "== spambot [screened-host]"
    assert lines[1] == "   suspects (firewall logs): ✓"
    hosts = [ln.split()[0] for ln in lines[2:]]
    assert hosts == ["client2", "client2"]
