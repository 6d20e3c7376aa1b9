"""A fleet audit of 20 in-lab gateways, each with its own rules and sshd (tests/fleet_support.py).

Fourteen run correct rules, four leak (two forgot IPv6, two lost the IPv4 drop), one
offers a host key known_hosts does not have, one refuses the login, and one more
address answers nothing: the reports name exactly the leaking ones and the three
that could not be read, in one run, from the command line (ssh:// targets, or an
Ansible inventory) and from the pytest form under pytest-xdist.
"""

from __future__ import annotations

import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fleet_support import UNREACHABLE, Fleet, fleet
from tests.html_dom import parse

pytestmark = pytest.mark.lab

KINDS = ["correct"] * 20
for _n, _kind in ((4, "no-ipv6"), (9, "no-ipv4-drop"), (13, "no-ipv6"), (17, "no-ipv4-drop"),
                  (19, "refused-login"), (20, "unknown-key")):
    KINDS[_n - 1] = _kind
GONE = f"ssh://root@{UNREACHABLE}"
# what each leak fails, and nothing else (submission-auth-tls: no mail server given)
FAILS = {"no-ipv6": {"smtp-blocked[v6]", "log-before-drop[v6]"},
         "no-ipv4-drop": {"smtp-blocked[v4]", "log-before-drop[v4]"}}


@pytest.fixture(scope="module")
def gateways() -> Iterator[Fleet]:
    with fleet(KINDS) as made:
        yield made


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in report["gateways"]}


def _failed(entry: dict[str, Any]) -> set[str]:
    return {f"{f['check']}[v{f['family']}]" if f["family"] else f["check"]
            for f in entry["audit"]["findings"] if f["passed"] is False}


def _accepted(gateways: Fleet) -> dict[str, int]:
    """How many logins each gateway's sshd has let in so far."""
    return {m.name: m.ssh.log.read_text().count("Accepted publickey") for m in gateways.members}


def test_the_fleet_report_names_exactly_the_leaking_and_the_unread_gateways(
        gateways: Fleet) -> None:
    folder = gateways.run.folder
    out_json, out_xml, out_html = folder / "fleet.json", folder / "fleet.xml", folder / "f.html"
    targets = [m.target for m in gateways.members] + [GONE]
    started = time.monotonic()
    status, out, err = gateways.audit(*targets, "-i", str(gateways.key), "-q", "--json",
                                      str(out_json), "--junit", str(out_xml), "--html",
                                      str(out_html))
    elapsed = time.monotonic() - started
    assert (status, err) == (1, ""), out + err
    assert out.startswith("== fleet audit FAIL: 21 gateways, 14 pass, 4 fail, 3 not read")
    report = json.loads(out_json.read_text())
    found = _by_name(report)
    assert list(found) == targets
    by_target = {m.target: m for m in gateways.members}
    for target, entry in found.items():
        kind = by_target[target].kind if target in by_target else "unreachable"
        if kind == "correct":
            assert entry["status"] == "PASS" and _failed(entry) == set(), entry
        elif kind in FAILS:
            assert entry["status"] == "FAIL" and _failed(entry) == FAILS[kind], entry
        elif kind == "unknown-key":
            assert entry["status"] == "NOT READ"
            assert entry["error"].startswith("REFUSED: unknown host key ssh-ed25519 SHA256:")
        elif kind == "refused-login":
            assert entry["status"] == "NOT READ"
            assert entry["error"] == f"authentication refused for user root (tried: key " \
                                     f"{gateways.key})"
        else:
            assert entry == {"name": GONE, "status": "NOT READ", "passed": False,
                             "elapsed_ms": entry["elapsed_ms"],
                             "error": "cannot connect: No route to host"}
    # the terminal: a row per gateway per check; under it, exactly what failed
    rows = [line.split() for line in out.splitlines() if line.startswith("   ssh://")]
    assert len(rows) == 18 * 9 + 3
    said = {line.split(": ")[0].strip() for line in out.split("   what failed:\n")[1]
            .splitlines()}
    assert said == {m.target for m in gateways.members if m.kind != "correct"} | {GONE}
    # JUnit: a testsuite per gateway, failures only in the leaking ones' suites
    suites = {s.get("name", "").removeprefix("audit "): s for s in ET.parse(out_xml).getroot()}
    assert list(suites) == targets
    assert {t for t, s in suites.items() if s.get("failures") != "0"} == {
        m.target for m in gateways.members if m.kind in FAILS}
    assert {t for t, s in suites.items() if s.get("errors") == "1"} == {
        GONE, *(m.target for m in gateways.members if m.kind in ("unknown-key", "refused-login"))}
    # HTML: the fleet's summary row per gateway
    page = parse(out_html.read_text())
    summary = {tr.all("td")[0].text(): tr.all("td")[1].text()
               for tr in page.by_id("fleet").all("tbody")[0].all("tr")}
    assert summary == {t: e["status"] for t, e in found.items()}
    print(f"\nfleet audit of 20 gateways and one unreachable address, "
          f"{report['fleet']['jobs']} at a time: {elapsed:.2f} s with the CLI's start, "
          f"{report['fleet']['elapsed_ms'] / 1000:.2f} s reading")


def test_the_fleet_from_an_ansible_inventory(gateways: Fleet) -> None:
    """Each host with its own address, user and key from the inventory; no -i given."""
    out_json = gateways.run.folder / "inventory.json"
    status, out, err = gateways.audit("ansible://gw0*", "ansible://unreachable", "--inventory",
                                      str(gateways.inventory), "-q", "--json", str(out_json))
    assert status == 1, out + err
    found = _by_name(json.loads(out_json.read_text()))
    chosen = [m for m in gateways.members if m.name.startswith("gw0")]
    assert list(found) == [*(f"{m.name} (ssh://root@{m.address})" for m in chosen),
                           f"unreachable ({GONE})"]
    statuses = {name.split()[0]: e["status"] for name, e in found.items()}
    assert {n for n, s in statuses.items() if s == "FAIL"} == {
        m.name for m in chosen if m.kind in FAILS} == {"gw04", "gw09"}
    assert {n for n, s in statuses.items() if s == "NOT READ"} == {"unreachable"}
    assert found[f"unreachable ({GONE})"]["error"] == "cannot connect: No route to host"


def test_the_pytest_form_over_the_fleet_with_xdist(gateways: Fleet) -> None:
    """`pytest --pyargs lab.compliance` with `-n 4 --dist loadgroup`: each gateway read once."""
    xml = gateways.run.folder / "pytest-fleet.xml"
    before = _accepted(gateways)
    hosts = ",".join(f"paramiko://root@{m.address}" for m in gateways.members)
    status, out, err = gateways.in_admin(
        "env", "-C", str(gateways.run.folder), sys.executable, "-m", "pytest", "-p",
        "no:cacheprovider", "--pyargs", "lab.compliance", f"--hosts={hosts}",
        f"--ssh-identity-file={gateways.key}",
        f"--port25lab-known-hosts={gateways.known_hosts}", "--port25lab-management=ens20",
        "-n", "4", "--dist", "loadgroup", f"--junitxml={xml}", "-q", timeout=900)
    assert status == 1, out + err
    failed: dict[str, set[str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            test, _, params = str(case.get("name")).partition("[")
            host = re.match(r"paramiko://([0-9.]+)", params)
            assert host is not None, params
            failed.setdefault(host.group(1), set()).add(test)
    by_address = {m.address: m for m in gateways.members}
    assert {by_address[a].name for a in failed} == gateways.named(*FAILS, "unknown-key",
                                                                  "refused-login")
    for address, tests in failed.items():
        member = by_address[address]
        if member.kind == "no-ipv6":
            assert tests == {"test_smtp_blocked", "test_log_before_drop"}, tests
    after = _accepted(gateways)
    assert {n: after[n] - before[n] for n in after} == {
        m.name: 0 if m.kind in ("unknown-key", "refused-login") else 1
        for m in gateways.members}
