"""The shell's own commands (lab.shell.Teaching) over a fake lab: what each prints, and the
one line a mistake gets."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from lab.services.mail import LAB_USERS, MailServer
from lab.shell import Teaching
from probes.requests import PacketAnswer
from tests.unit.fake_lab import FakeLab, Reply, rule
from tests.unit.test_verify import _scenario

SOURCED = "drop-25/rules.sh:1"
DROP = replace(rule("gw", "FORWARD", 1, "-s 203.0.113.0/24 -i eth0 -p tcp -m tcp --dport 25 "
                    "-j DROP"), source=SOURCED)
POLICY = replace(rule("gw", "FORWARD", 0, "", family=6), target="DROP", packets=0)


def _shell(tmp_path: Path, lab: FakeLab | None = None) -> tuple[Teaching, FakeLab, io.StringIO]:
    lab = lab or FakeLab(tmp_path / "run", rules=(DROP, POLICY))
    out = io.StringIO()
    return Teaching(lab, _scenario(tmp_path), out), lab, out


def _said(shell: Teaching, out: io.StringIO, command: str, line: str) -> list[str]:
    out.seek(0)
    out.truncate()
    shell.run(command, line)
    return out.getvalue().splitlines()


def test_probe_sends_it_as_verify_does_and_shows_verdict_evidence_and_expectation(
        tmp_path: Path) -> None:
    shell, lab, out = _shell(tmp_path)
    lab.answers("client1", Reply(PacketAnswer("none", 20000, 25.1), counted=(DROP,)))
    said = _said(shell, out, "probe", "client1 remote-mx smtp")
    assert lab.started == ["client1"]
    assert said == [
        "client1 → remote-mx smtp/v4: blocked",
        "  evidence: dropped before remote-mx:25; sender: no answer",
        f"  decided by {SOURCED}: {DROP.cite()}",
        f"  rule hit (1 packet): {SOURCED}: {DROP.cite()}",
        "  the scenario expects blocked: as expected"]
    # a probe the scenario says nothing of: sent all the same, over IPv6 here
    lab.answers("client2", Reply(PacketAnswer("none", 20001, 25.1)))
    lab.answers("client2", Reply(PacketAnswer("none", 20001, 1500)))  # asked again: silence
    said = _said(shell, out, "probe", "client2 remote-mx smtps -6")
    assert said[0].startswith("client2 → remote-mx smtps/v6: ")
    assert said[-1] == "  the scenario expects nothing of this probe"


@pytest.mark.parametrize(("line", "message"), [
    ("", "usage: probe SRC DST PROBE [-4|-6] [VARIANT]"),
    ("client1 remote-mx", "usage: probe SRC DST PROBE [-4|-6] [VARIANT]"),
    ("client1 remote-mx smtp -7", "no option '-7': -4 (IPv4, the default) or -6 (IPv6)"),
    ("client9 remote-mx smtp", "no role 'client9' in this lab (roles: gw, client1, client2, "
                               "mx, remote-mx, sink, relay)"),
    ("client1 remote-mx smtq", "no probe 'smtq' (probes: smtp, smtps, submission, "),
    ("client1 remote-mx teredo", "teredo needs a VARIANT (variants: plain, plain-465, "),
    ("client1 remote-mx teredo plane", "no variant 'plane' of teredo (variants: plain, "),
    ("client1 remote-mx smtp plain", "smtp has no variants: usage: probe SRC DST PROBE"),
    ("client1 remote-mx teredo plain -6", "teredo carries IPv6 inside IPv4: it is sent over "
                                          "IPv4 (-4)"),
])
def test_a_probe_that_cannot_be_sent_is_one_line(tmp_path: Path, line: str,
                                                 message: str) -> None:
    shell, lab, out = _shell(tmp_path)
    said = _said(shell, out, "probe", line)
    assert len(said) == 1 and said[0].startswith(f"probe: {message}"), said
    assert lab.asked == [] and lab.started == []


def test_rules_are_shown_with_their_counters_and_policy_file_lines(tmp_path: Path) -> None:
    shell, lab, out = _shell(tmp_path)
    lab.count(DROP)
    lab.count(DROP)
    assert _said(shell, out, "rules", "gw") == [
        "gw, IPv4 (iptables), packets counted since the lab booted:",
        "  -t filter FORWARD",
        f"    #1        2  {SOURCED}  -A FORWARD {DROP.text}",
        "gw, IPv6 (ip6tables), packets counted since the lab booted:",
        "  -t filter FORWARD (policy DROP, 0 packets)"]
    (tmp_path / "bare").mkdir()
    bare, _, said = _shell(tmp_path / "bare", FakeLab(tmp_path / "run", rules=(DROP,)))
    assert _said(bare, said, "rules", "gw")[-2:] == [
        "gw, IPv6 (ip6tables), packets counted since the lab booted:",
        "  no rules: every chain is empty and lets all through"]
    assert _said(shell, out, "rules", "mx") == [
        "rules: no router 'mx' in this lab (routers: gw)"]
    assert _said(shell, out, "rules", "") == ["rules: usage: rules ROUTER (routers: gw)"]


def test_logs_show_the_firewall_log_of_a_router(tmp_path: Path) -> None:
    shell, lab, out = _shell(tmp_path)
    assert _said(shell, out, "logs", "gw") == ["logs: gw keeps no firewall log"]
    log = tmp_path / "firewall.jsonl"
    log.write_text("")
    lab.firewall_logs["gw"] = log
    assert _said(shell, out, "logs", "gw") == [
        f"{log}: nothing logged yet (a rule with -j LOG writes here)"]
    records = [{"timestamp": "2026-01-01T00:00:00.1", "ip.protocol": 6, "src_ip": "203.0.113.10",
                "src_port": 20000, "dest_ip": "198.51.100.25", "dest_port": 25,
                "oob.in": "eth0", "oob.out": "eth1", "oob.prefix": ""},
               {"timestamp": "2026-01-01T00:00:01.2", "ip6.nexthdr": 6,
                "src_ip": "2001:db8:b01a:70da::11", "src_port": 20001,
                "dest_ip": "2001:db8:ffff:1::25", "dest_port": 465, "oob.in": "eth0",
                "oob.out": "eth1", "oob.prefix": "smtp-out"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"half a line')
    assert _said(shell, out, "logs", "gw") == [
        f"{log}: 2 records:",
        "  2026-01-01T00:00:00.1  eth0→eth1  tcp 203.0.113.10:20000 → 198.51.100.25:25  "
        "(client1 → remote-mx)",
        "  2026-01-01T00:00:01.2  eth0→eth1  tcp [2001:db8:b01a:70da::11]:20001 → "
        "[2001:db8:ffff:1::25]:465  (client2 → remote-mx) smtp-out"]


def test_accounts_are_the_mail_servers_users_and_passwords(tmp_path: Path) -> None:
    shell, lab, out = _shell(tmp_path)
    assert _said(shell, out, "accounts", "") == [
        "this lab's mail servers have no accounts",
        "(lab passwords, not secrets; one is trivial on purpose, for the password-guessing "
        "scenarios)"]
    lab.serve_mail(MailServer("mx", "mx.example.org", ("example.org",), True, users=LAB_USERS))
    lab.serve_mail(MailServer("remote-mx", "mx.example.net", ("example.net",), False))
    said = _said(shell, out, "accounts", "")
    assert said[0] == ("mx (mx.example.org; ports 25, 465, 587): log in on 587 after "
                       "STARTTLS or on 465 (TLS) as")
    assert said[1:4] == [f"  {u.name:<5}  {u.password}" for u in LAB_USERS]
    assert _said(shell, out, "accounts", "mx") == ["accounts: takes no arguments"]


def test_pingall_pings_every_node_from_every_other_over_both_families(tmp_path: Path) -> None:
    class Unanswered(FakeLab):
        """relay does not answer over IPv6."""

        def exec(self, role: str, argv: list[str], stdin: str | None = None,
                 timeout: float = 30) -> tuple[int, str, str]:
            super().exec(role, argv, stdin, timeout)
            return (1, "", "") if argv[-1] == "2001:db8:ffff:1::35" else (0, "", "")

    shell, lab, out = _shell(tmp_path, Unanswered(tmp_path / "run"))
    said = _said(shell, out, "pingall", "")
    assert len(lab.executed) == 2 * 7 * 6
    assert ("client1", ["ping", "-6", "-c1", "-W1", "-n", "2001:db8:ffff:1::35"]) in lab.executed
    assert ("gw", ["ping", "-4", "-c1", "-W1", "-n", "203.0.113.10"]) in lab.executed
    assert said[0] == "*** IPv4: X where no answer came"
    assert "client1 -> gw client2 mx remote-mx sink relay" in said[1:8]
    assert said[8] == "*** IPv6: X where no answer came"
    assert "client1 -> gw client2 mx remote-mx sink X" in said[9:16]
    assert said[-1] == "*** Results: 7% dropped (78/84 received)"


def test_the_banner_names_roles_addresses_and_logs(tmp_path: Path) -> None:
    shell, lab, _ = _shell(tmp_path)
    lab.firewall_logs["gw"] = tmp_path / "run/gw/firewall.jsonl"
    lab.serve_mail(MailServer("mx", "mx.example.org", ("example.org",), True))
    banner = shell.banner().splitlines()
    assert banner[0] == "nodes (* carries the policy):"
    assert ("  gw        * router     eth0 203.0.113.1/24 2001:db8:b01a:70da::1/64; "
            "eth1 198.51.100.1/24 2001:db8:ffff:1::1/64") in banner
    assert "  client1     client     eth0 203.0.113.10/24 2001:db8:b01a:70da::10/64" in banner
    assert f"logs: under {tmp_path / 'run'}" in banner
    assert f"  gw's firewall log: {tmp_path / 'run/gw/firewall.jsonl'} (`logs gw`)" in banner
    assert f"  mx's mail log: {tmp_path / 'run/mx/postfix.log'}" in banner

