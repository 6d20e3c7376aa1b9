"""The fail2ban trap and password guessing, against real fail2ban, Postfix and Dovecot."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.engine.verify import verify
from lab.model import scenario
from lab.model.results import ScenarioResult
from lab.model.verdict import Verdict
from lab.runtime import lifecycle
from tests.support import CLI, PROJECT, leftovers

pytestmark = pytest.mark.lab

CLIENT2 = {4: "203.0.113.11", 6: "2001:db8:b01a:70da::11"}


def _verify(name: str) -> ScenarioResult:
    s = scenario.load(name)
    run = lifecycle.new_run()
    try:
        result = verify(s, run, lambda _: None)
    finally:
        lifecycle.destroy(run)
    # fail2ban, its socket and its rules went with the lab
    assert leftovers(run.prefix) == []
    return result


def _observed(result: ScenarioResult) -> dict[tuple[str, str, str, int, str], Verdict]:
    return {(r.source, r.target, r.probe, r.family, r.after): r.observed
            for r in result.results}


def test_fixed_trap_bans_the_host_in_forward_on_both_families_then_lets_it_back() -> None:
    etc = {p: p.stat().st_mtime for p in Path("/etc/fail2ban").rglob("*")}
    result = _verify("fixed-trap")
    assert result.passed, [r.detail for r in result.results if not r.passed]
    seen = _observed(result)
    for family in (4, 6):
        assert seen["client2", "sink", "web", family, ""] == Verdict.ALLOWED
        assert seen["client2", "remote-mx", "smtp", family, ""] == Verdict.BLOCKED
        for probe, target in (("web", "sink"), ("dns", "sink"), ("submission", "remote-mx")):
            assert seen["client2", target, probe, family, "ban"] == Verdict.BANNED
        assert seen["client1", "sink", "web", family, ""] == Verdict.ALLOWED
        assert seen["client1", "remote-mx", "mail", family, ""] == Verdict.ALLOWED
        assert seen["client2", "sink", "web", family, "unban"] == Verdict.ALLOWED
    banned = [r for r in result.results if r.observed == Verdict.BANNED]
    assert all(r.rule and "f2b-port25-trap" in r.rule and "REJECT" in r.rule for r in banned)
    # one ban per address, in FORWARD, with a measured reaction, lifted after its bantime
    assert {b.address: b.family for b in result.bans} == {a: f for f, a in CLIENT2.items()}
    for ban in result.bans:
        assert ban.node == "gw" and ban.chain == "f2b-port25-trap"
        assert [h.split(": ", 2)[1] for h in ban.hooked] == [
            f"{'iptables' if ban.family == 4 else 'ip6tables'} -t filter FORWARD#1"]
        assert ban.fired_by == "its firewall log line"
        assert ban.reaction_ms is not None and 0 < ban.reaction_ms < 5000
        assert ban.lifted_after_s is not None and 3 < ban.lifted_after_s < 30
    assert result.owners == {a: "client2" for a in CLIENT2.values()}
    assert {s.role for s in result.suspects} == {"client2"}
    # the private instance read the stock configuration and wrote nothing under /etc
    assert {p: p.stat().st_mtime for p in Path("/etc/fail2ban").rglob("*")} == etc


def test_seed_trap_bans_in_input_where_forwarded_traffic_never_passes() -> None:
    result = _verify("seed-trap")
    assert not result.passed
    wrong = {(r.probe, r.family) for r in result.results if not r.passed}
    assert wrong == {(p, f) for p in ("web", "dns", "submission") for f in (4, 6)}
    for r in result.results:
        if not r.passed:
            # fail2ban did ban: the evidence names the ban and where it is hooked
            assert r.observed == Verdict.ALLOWED and r.detail.startswith("banned by fail2ban")
            assert "INPUT#1: -A INPUT -p tcp -m multiport --dports 25,465 -j f2b-port25-trap" \
                in r.detail
    assert {b.address for b in result.bans} == set(CLIENT2.values())
    assert all("INPUT#1" in b.hooked[0] for b in result.bans)


def test_false_alarm_cuts_off_a_legitimate_client_but_not_its_lan_mail_server() -> None:
    result = _verify("false-alarm")
    assert result.passed, [r.detail for r in result.results if not r.passed]
    seen = _observed(result)
    for family in (4, 6):
        assert seen["client1", "remote-mx", "mail-25", family, ""] == Verdict.BLOCKED
        assert seen["client1", "sink", "web", family, "ban"] == Verdict.BANNED
        assert seen["client1", "remote-mx", "mail", family, "ban"] == Verdict.ALLOWED
    assert {s.role for s in result.suspects} == {"client1"}
    assert set(result.owners.values()) == {"client1"}


def test_guessing_is_banned_on_587_and_465_and_users_keep_sending() -> None:
    result = _verify("guessing")
    assert result.passed, [r.detail for r in result.results if not r.passed]
    guesses = [r for r in result.results if r.probe.startswith("guessing")]
    assert {(r.source, r.probe, r.family) for r in guesses} == {
        (s, p, f) for s, p in (("remote-mx", "guessing"), ("client2", "guessing-465"))
        for f in (4, 6)}
    for r in guesses:
        assert r.observed == Verdict.BANNED and r.rule and "f2b-postfix-sasl" in r.rule
        refused = int(r.detail.split(" refused ")[1].split()[0])
        assert refused >= 3  # the jail's maxretry: the stock filter saw every failure
    assert not result.weak_accounts
    # the ban is on mx itself, from the stock action's INPUT hook, on both families
    assert {b.node for b in result.bans} == {"mx"}
    assert {b.family for b in result.bans} == {4, 6}
    for ban in result.bans:
        assert "INPUT#1" in ban.hooked[0] and "587" in ban.hooked[0]
        assert ban.fired_by == "refused guess no. 3"
        assert ban.reaction_ms is not None and 0 < ban.reaction_ms < 5000


def test_without_a_jail_the_guesser_finds_the_weak_account(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run([CLI, "verify", "weak-password", "--json", str(report), "-q"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "weak accounts (a trivial password was accepted): carol" in done.stdout
    (out,) = json.loads(report.read_text())["scenarios"]
    assert out["weak_accounts"] == ["carol"]
    assert {(r["probe"], r["family"]) for r in out["results"]} == {
        ("guessing", 4), ("guessing-465", 6)}
    for r in out["results"]:
        assert r["observed"] == "allowed"
        assert "account carol has a trivial password" in r["detail"]
    # the password itself is not in the report
    assert "letmein" not in report.read_text() and "letmein" not in done.stdout


def test_a_jail_fail2ban_refuses_is_a_load_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken-trap"
    folder.mkdir()
    (folder / "jail.local").write_text(
        "[port25-trap]\nenabled = true\nfilter = no-such-filter\nlogpath = %(firewall_log)s\n")
    (folder / "scenario.yaml").write_text(
        "topology: screened-host\n"
        "policy:\n  gw: [../rules.sh]\n"
        "trap:\n  gw: [jail.local]\n"
        "expect:\n"
        "  - {from: client1, to: sink, probes: [web], families: [4], verdict: allowed}\n")
    (tmp_path / "rules.sh").write_text("iptables -A FORWARD -i eth0 -p tcp --dport 25 -j DROP\n")
    result = _verify(str(folder))
    assert not result.passed
    (error,) = result.load_errors
    assert error.file.endswith("broken-trap/jail.local")
    assert "fail2ban in gw:" in error.message and "no-such-filter" in error.message
