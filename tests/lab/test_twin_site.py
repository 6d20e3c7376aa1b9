"""The twin of a gateway built outside the lab's own sites: its own names and addressing.

The gateway (tests/lab/own_gateway.py: plain namespaces, ens18 LAN, ens19 WAN, ens20
management with a private sshd) runs correct block rules written for that network.
The auditor runs `port25lab audit --twin fixed-screened-block` in the management
namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.audit.facts import Facts, Output
from lab.audit.twin import twin_scenario
from lab.engine.verify import verify
from lab.model import scenario, site_file
from lab.runtime import lifecycle
from tests.audit_support import RULES
from tests.lab import own_gateway
from tests.lab.own_gateway import GW, MANAGEMENT, Gateway
from tests.support import CLI, leftovers, prefixes

pytestmark = pytest.mark.lab



@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with own_gateway.gateway(lambda gw: gw.inside("gw", "sh", "-e", stdin=RULES)) as found:
        yield found


@dataclass(frozen=True)
class Audited:
    status: int
    out: str
    err: str
    report: dict[str, Any]
    site: Path


@pytest.fixture(scope="module")
def correct(gateway: Gateway) -> Audited:
    """The audit with --twin and --write-site of the gateway running her correct rules."""
    report, site = gateway.run.folder / "twin.json", gateway.run.folder / "twin-site.yaml"
    status, out, err = gateway.audit("--twin", "fixed-screened-block", "--json", str(report),
                                     "--write-site", str(site))
    for prefix in prefixes(err + out) - {gateway.run.prefix}:
        assert leftovers(prefix) == []  # the twin's lab is gone
    return Audited(status, out, err, json.loads(report.read_text()), site)


def _twin(report: dict[str, Any]) -> dict[str, Any]:
    twin: dict[str, Any] = report["scenarios"][0]
    assert twin["lab_error"] is None and twin["load_errors"] == []
    return twin


def _rows(twin: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(r["source"], r["target"], r["probe"], r["variant"], r["family"]): r
            for r in twin["results"]}


def test_the_twin_of_correct_rules_passes_on_the_gateways_own_network(
        correct: Audited) -> None:
    status, out, err, data = correct.status, correct.out, correct.err, correct.report
    findings = {(f["check"], f["family"]): f["status"] for f in data["audit"]["findings"]}
    # only fail2ban is missing on this gateway (no --mx: its settings are not checked)
    assert status == 1, out + err
    assert {k for k, v in findings.items() if v != "PASS"} == {
        ("fail2ban-jails", None), ("submission-auth-tls", None)}
    # the checks' defaults came from the gateway, and said so
    assert "note: clients assumed: 192.0.2.0/24, 2001:db8:cafe::/64, the prefixes of the " \
           "gateway's ens18" in out
    assert "note: mail server assumed: 192.0.2.25, 2001:db8:cafe::25" in out
    assert "--map-interface" not in err  # the twin has the gateway's own interface names
    twin = _twin(data)
    assert twin["name"] == f"fixed-screened-block twin of ssh://root@{GW}"
    assert twin["topology"] == "twin-203-0-113-1"
    assert twin["passed"], [r for r in twin["results"] if not r["passed"]]
    assert len(twin["results"]) == 66
    blocked = [r for r in twin["results"] if r["source"].startswith("client")
               and r["probe"] in ("smtp", "smtps") and r["target"] == "remote-mx"]
    assert len(blocked) == 8
    for row in blocked:  # the gateway's own ens18 rules decided
        assert row["observed"] == "blocked" and "-i ens18" in row["rule"], row
    # the site it ran on, saved: the loader reads it back
    derived = site_file.load(correct.site)
    assert derived.name == "twin-203-0-113-1"
    assert [(i.name, i.addresses) for i in derived.role("gw").interfaces] == [
        ("ens18", ("192.0.2.1/24", "2001:db8:cafe::1/64")),
        ("ens19", ("198.51.100.1/24", "2001:db8:ffff:1::1/64")),
        ("ens20", MANAGEMENT)]
    assert derived.role("upstream").addresses()[:2] == ("198.51.100.254", "2001:db8:ffff:1::fe")
    assert derived.role("mx").addresses() == ("192.0.2.25", "2001:db8:cafe::25")


def test_the_saved_site_reproduces_the_twin_without_ssh(correct: Audited) -> None:
    """The site file and the rules the audit read, booted by the twin's own code path."""
    data = correct.report
    commands = data["audit"]["facts"]["commands"]
    facts = Facts(data["audit"]["gateway"], {
        c["command"]: Output(c["command"], c["status"], c["stdout"], c["stderr"])
        for c in commands})
    twin, notes = twin_scenario(facts, scenario.load("fixed-screened-block"), {},
                                site_file.load(correct.site))
    assert notes == ()
    run = lifecycle.new_run()
    try:
        again = verify(twin, run, lambda _: None)
        assert again.lab_error is None and not again.load_errors
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []
    assert {k: r["observed"] for k, r in _rows(_twin(data)).items()} == {
        (r.source, r.target, r.probe, r.variant or None, r.family): str(r.observed)
        for r in again.results}


def test_verify_on_the_saved_site_gives_the_twins_verdicts(correct: Audited,
                                                          tmp_path: Path) -> None:
    """`--write-site`, then `verify --site FILE --rules-v4 … --rules-v6 …`: no SSH, same rows."""
    outputs = {c["command"]: c["stdout"] for c in correct.report["audit"]["facts"]["commands"]}
    v4, v6, report = tmp_path / "gw.v4", tmp_path / "gw.v6", tmp_path / "verify.json"
    v4.write_text(outputs["iptables-save"])
    v6.write_text(outputs["ip6tables-save"])
    done = subprocess.run([CLI, "verify", "fixed-screened-block", "--site", str(correct.site),
                           "--rules-v4", str(v4), "--rules-v6", str(v6), "--json", str(report),
                           "-q"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (verified,) = json.loads(report.read_text())["scenarios"]
    assert verified["lab_error"] is None and verified["load_errors"] == []
    twin = _rows(_twin(correct.report))
    assert {k: r["observed"] for k, r in _rows(verified).items()} == {
        k: r["observed"] for k, r in twin.items()}
    assert len(twin) == 66


def test_the_twin_shows_a_forgotten_ipv6_block(gateway: Gateway) -> None:
    gateway.inside("gw", "ip6tables", "-F", "FORWARD")
    report = gateway.run.folder / "twin6.json"
    try:
        status, out, err = gateway.audit("--twin", "fixed-screened-block", "--json",
                                         str(report))
    finally:  # her rules again, for whatever runs next
        gateway.inside("gw", "iptables", "-F", "FORWARD")
        gateway.inside("gw", "sh", "-e", stdin=RULES)
    assert status == 1, out + err
    data = json.loads(report.read_text())
    findings = {(f["check"], f["family"]): f["status"] for f in data["audit"]["findings"]}
    assert findings[("smtp-blocked", 6)] == "FAIL" and findings[("smtp-blocked", 4)] == "PASS"
    twin = _twin(data)
    assert not twin["passed"]
    rows = _rows(twin)
    for client in ("client1", "client2"):
        for probe in ("smtp", "smtps"):
            leak = rows[(client, "remote-mx", probe, None, 6)]
            assert (leak["expected"], leak["observed"]) == ("blocked", "allowed"), leak
            held = rows[(client, "remote-mx", probe, None, 4)]
            assert held["observed"] == "blocked" and "-i ens18" in held["rule"], held
    failed = {(r["source"], r["probe"], r["family"]) for r in twin["results"] if not r["passed"]}
    assert failed and {family for _, _, family in failed} == {6}  # IPv4 still holds
    assert "the twin's mx takes 2001:db8:cafe::" in err  # no rule names its IPv6 address now


def test_the_pytest_form_takes_the_same_defaults_from_the_gateway(gateway: Gateway) -> None:
    xml = gateway.run.folder / "pytest.xml"
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{gateway.run.netns('admin')}", "env", "-C",
         str(gateway.run.folder), sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         "--pyargs", "lab.compliance", f"--hosts=paramiko://root@{GW}",
         f"--ssh-identity-file={gateway.ssh.client_key}",
         f"--port25lab-known-hosts={gateway.ssh.known_hosts}",
         "--port25lab-management=ens20", f"--junitxml={xml}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr  # fail2ban-jails
    assert "port25lab: note: clients assumed: 192.0.2.0/24, 2001:db8:cafe::/64" in done.stdout
    failed = {c.get("name") for c in ET.parse(xml).getroot().iter("testcase")
              if c.find("failure") is not None}
    assert failed == {"test_fail2ban_jails[paramiko://203.0.113.1]"}  # testinfra drops the user


def test_a_gateway_without_an_ipv6_default_route_has_a_twin_without_ipv6(
        gateway: Gateway) -> None:
    """No IPv6 leaves the gateway: the twin's IPv6 rows are not applicable, the rest runs."""
    gateway.inside("gw", "ip", "-6", "route", "del", "default")
    site, report = gateway.run.folder / "twin4.yaml", gateway.run.folder / "twin4.json"
    try:
        status, out, err = gateway.audit("--twin", "fixed-screened-block", "--write-site",
                                         str(site), "--json", str(report))
    finally:
        gateway.inside("gw", "ip", "-6", "route", "add", "default", "via",
                       "2001:db8:ffff:1::fe")
    assert status == 1, out + err  # the static fail2ban check, as with both families
    derived = site_file.load(site)
    assert {n.version for s in derived.segments for n in s.networks()} == {4}
    twin = _twin(json.loads(report.read_text()))
    by_family: dict[int, set[str]] = {}
    for row in twin["results"]:
        by_family.setdefault(row["family"], set()).add(row["status"])
    assert by_family[6] == {"not applicable"}, by_family
    assert twin["passed"], [r for r in twin["results"] if r["passed"] is False]
    for prefix in prefixes(err + out) - {gateway.run.prefix}:
        assert leftovers(prefix) == []
