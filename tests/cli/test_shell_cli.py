"""`port25lab shell` as a student uses it: the lab's commands typed on its standard input."""

from __future__ import annotations

import subprocess

import pytest

from lab.services.mail import LAB_USERS
from tests.support import CLI, PROJECT, leftovers, prefixes

pytestmark = pytest.mark.lab

RULES = "scenarios/seed-screened-block/rules.sh"
MATCH = "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465"
DROP = f"gw: iptables -t filter FORWARD#3: -A FORWARD {MATCH} -j DROP"
LOGGED = f"gw: iptables -t filter FORWARD#2: -A FORWARD {MATCH} -j NFLOG --nflog-group 25"


def _typed(scenario: str, *lines: str) -> tuple[str, str]:
    done = subprocess.run([CLI, "shell", scenario], text=True, capture_output=True,
                          timeout=300, cwd=PROJECT, check=False,
                          input="".join(f"{line}\n" for line in (*lines, "exit")))
    assert done.returncode == 0, done.stderr
    found = prefixes(done.stderr)
    assert len(found) == 1
    assert leftovers(found.pop()) == []
    return done.stdout, done.stderr


def test_the_shells_commands_probe_show_rules_logs_and_accounts() -> None:
    out, err = _typed("seed-screened-block",
                      "rules gw", "probe client1 remote-mx smtp",
                      "probe client1 remote-mx teredo plain", "probe client2 sink smtps -6",
                      "probe client1 remote-mx smtp -7", "rules gw", "logs gw", "accounts")
    # the banner: every node with its role and addresses, and where the logs are
    assert "seed-screened-block is up" in err
    assert "  client1     client     eth0 203.0.113.10/24 2001:db8:b01a:70da::10/64" in err
    assert "gw's firewall log: /run/port25lab/p25-" in err
    answers = out.split("port25lab> ")[1:]
    before, smtp, teredo, smtps6, bad, after, logs, accounts = answers[:8]
    assert smtp.splitlines() == [
        "client1 → remote-mx smtp/v4: blocked",
        "  evidence: dropped before remote-mx:25; sender: no answer; logged by "
        f"{LOGGED} (from {RULES}:7)",
        f"  decided by {RULES}:8: {DROP}",
        f"  rule hit (1 packet): {RULES}:7: {LOGGED}",
        f"  rule hit (1 packet): {RULES}:8: {DROP}",
        "  the scenario expects blocked: as expected"]
    # the published Teredo line did not load: the tunnelled SYN reaches the relay
    assert teredo.splitlines()[0] == "client1 → remote-mx teredo:plain/v4: allowed"
    assert teredo.splitlines()[-1] == "  the scenario expects blocked: NOT as expected"
    assert smtps6.splitlines()[0].startswith("client2 → sink smtps/v6: ")
    assert smtps6.splitlines()[-1] == "  the scenario expects nothing of this probe"
    assert bad.splitlines() == ["probe: no option '-7': -4 (IPv4, the default) or -6 (IPv6)"]
    # the counters moved by the probes, each rule with the line it came from
    drop = f"{RULES}:8  -A FORWARD {MATCH} -j DROP"
    assert f"    #3        0  {drop}" in before.splitlines()
    assert f"    #3        1  {drop}" in after.splitlines()
    assert "gw, IPv6 (ip6tables), packets counted since the lab booted:" in after.splitlines()
    # the firewall log: the smtp probe's SYN, logged by line 7's rule
    assert any("tcp 203.0.113.10:" in ln and "→ 198.51.100.25:25  (client1 → remote-mx)" in ln
               for ln in logs.splitlines()), logs
    for user in LAB_USERS:
        assert f"  {user.name:<5}  {user.password}" in accounts.splitlines()


def test_pingall_reaches_every_node_over_both_families() -> None:
    # Mininet's own pingall pinged `None` (the nodes' addresses are the site's, not Mininet's)
    out, err = _typed("fixed-screened-block", "pingall", "help")
    assert "Temporary failure in name resolution" not in out + err
    lines = out.splitlines()
    assert any(ln.endswith("*** Results: 0% dropped (84/84 received)") for ln in lines), out
    assert "client1 -> gw client2 mx remote-mx sink relay" in lines
    # help explains the lab's commands before Mininet's own
    assert "  probe SRC DST PROBE [-4|-6] [VARIANT]" in lines
    assert any(ln.startswith("  accounts ") for ln in lines)
