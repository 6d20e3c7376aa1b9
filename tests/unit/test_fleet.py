"""`port25lab audit` over a fleet, without a lab: the reports, the threads, the inventory.

The gateways are read by a stand-in for `gather` (the facts of tests/unit/test_derive.py,
one gateway's IPv6 rules missing, one that cannot be reached); everything after that is
the real command line. The inventory is read by the real ansible-inventory.
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from lab import cli
from lab.audit import fleet, remote
from lab.audit import gateway as audit
from lab.audit.facts import Facts
from lab.errors import BadInput
from tests.html_dom import parse
from tests.unit.test_derive import gateway_facts

GOOD, LEAK, GONE = "ssh://root@203.0.113.1", "ssh://root@203.0.113.2", "ssh://root@203.0.113.3"


def _read(access: audit.Access) -> Facts:
    name = str(access.gateway)
    if name == GONE:
        raise BadInput(f"{name}: cannot connect: no answer (timed out)")
    facts = gateway_facts(v6="") if name == LEAK else gateway_facts()  # LEAK: no IPv6 rule
    return replace(facts, gateway=name)


@pytest.fixture(autouse=True)
def _no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a packet to any gateway: a test that reaches `connect` fails."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("connected to a gateway")

    monkeypatch.setattr(remote, "connect", refuse)


@pytest.fixture()
def read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "gather", _read)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["audit", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _statuses(report: dict[str, object]) -> dict[str, dict[str, str]]:
    found = {}
    for g in report["gateways"]:  # type: ignore[attr-defined]
        audit_ = g.get("audit")
        found[g["name"]] = {"status": g["status"]} | (
            {f"{f['check']}[v{f['family']}]" if f["family"] else f["check"]: f["status"]
             for f in audit_["findings"]} if audit_ else {"error": g["error"]})
    return found


def test_a_fleet_is_one_report_with_a_row_per_gateway_per_check(
        read: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_json, out_xml, out_html = tmp_path / "f.json", tmp_path / "f.xml", tmp_path / "f.html"
    status, out, err = _run(capsys, GOOD, LEAK, GONE, "--management", "ens20", "-q",
                            "--json", str(out_json), "--junit", str(out_xml),
                            "--html", str(out_html))
    assert (status, err) == (1, "")
    assert out.startswith("== fleet audit FAIL: 3 gateways, 0 pass, 2 fail, 1 not read")
    rows = [line.split() for line in out.splitlines()[2:] if line.startswith("   ssh://")]
    checks = {r[1] for r in rows if r[0] == GOOD}
    assert len(checks) == 9 and {r[1] for r in rows if r[0] == LEAK} == checks
    assert ["smtp-blocked", "PASS", "PASS"] in [r[1:] for r in rows if r[0] == GOOD]
    assert ["smtp-blocked", "PASS", "FAIL"] in [r[1:] for r in rows if r[0] == LEAK]
    assert [r[1:] for r in rows if r[0] == GONE] == [["read", "ERROR"]]
    assert f"     {GONE}: not read: cannot connect: no answer (timed out)" in out
    assert f"     {LEAK}: smtp-blocked[v6]: " in out
    assert f"     {GOOD}: smtp-blocked[v6]: " not in out
    report = json.loads(out_json.read_text())
    assert report["fleet"] | {"elapsed_ms": 0} == {
        "passed": False, "gateways": 3, "pass": 0, "fail": 2, "not_read": 1, "jobs": 3,
        "elapsed_ms": 0}
    found = _statuses(report)
    assert list(found) == [GOOD, LEAK, GONE]  # the order given, whatever ended first
    assert found[GOOD]["smtp-blocked[v6]"] == "PASS" and found[LEAK]["smtp-blocked[v6]"] == "FAIL"
    assert found[GONE] == {"status": "NOT READ",
                           "error": "cannot connect: no answer (timed out)"}
    # JUnit: a testsuite per gateway; the one not read is an error, not a pass
    suites = ET.parse(out_xml).getroot()
    assert [s.get("name") for s in suites] == [f"audit {g}" for g in (GOOD, LEAK, GONE)]
    failed = {s.get("name"): {c.get("name") for c in s if c.find("failure") is not None}
              for s in suites}
    assert "smtp-blocked[v6]" in failed[f"audit {LEAK}"]
    assert "smtp-blocked[v6]" not in failed[f"audit {GOOD}"]
    (gone,) = suites[2]
    assert gone.find("error") is not None and suites[2].get("errors") == "1"
    # HTML: a summary row per gateway, then each one's findings
    page = parse(out_html.read_text())
    assert page.all("title")[0].text() == "port25lab report: 0 of 3 gateways pass"
    assert page.all("p", "summary")[0].text() == "0 of 3 gateways pass the audit"
    summary = [[td.text() for td in tr.all("td")]
               for tr in page.by_id("fleet").all("tbody")[0].all("tr")]
    assert [row[:2] for row in summary] == [[GOOD, "FAIL"], [LEAK, "FAIL"], [GONE, "NOT READ"]]
    assert "smtp-blocked[v6]" in summary[1][2] and "smtp-blocked[v6]" not in summary[0][2]
    assert summary[2][2] == "cannot connect: no answer (timed out)"
    leak = {tuple(td.text() for td in tr.all("td")[:3])
            for tr in page.by_id("gateway-1").all("tbody")[0].all("tr")}
    assert ("smtp-blocked", "IPv6", "FAIL") in leak


def test_at_most_jobs_are_read_at_once(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def slow(access: audit.Access) -> Facts:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return replace(gateway_facts(), gateway=str(access.gateway))

    monkeypatch.setattr(audit, "gather", slow)
    targets = [f"ssh://root@203.0.113.{n}" for n in range(1, 8)]
    status, out, err = _run(capsys, *targets, "--jobs", "3", "-q", "--management", "ens20")
    assert status == 1, out + err  # fail2ban is missing on each
    assert most[0] == 3
    assert "(read in" in out and "3 at a time)" in out
    named = [line.split()[0] for line in out.splitlines()[2:] if line.startswith("   ssh://")]
    assert list(dict.fromkeys(named)) == targets
    # without -q: a line as each gateway is read (standard error is no terminal here)
    status, out, err = _run(capsys, *targets[:2], "--management", "ens20")
    said = [line.removeprefix("  … audit ").split() for line in err.splitlines()]
    assert [s[0] for s in said] == ["1/2:", "2/2:"]  # as each ended, in whichever order
    assert sorted(s[1] for s in said) == targets[:2] and {s[2] for s in said} == {"FAIL"}


def test_a_target_named_twice_is_read_once(read: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, GOOD, LEAK, GOOD, "-q", "--management", "ens20")
    assert out.startswith("== fleet audit FAIL: 2 gateways")


INVENTORY = """\
[gateways]
gw1 ansible_host=203.0.113.1 ansible_user=admin ansible_ssh_private_key_file={key}
gw2 ansible_host=2001:db8:e20::2 ansible_port=2222
[elsewhere]
box ansible_connection=docker
"""


def test_an_ansible_inventory_gives_each_host_its_address_user_and_key(tmp_path: Path) -> None:
    key = tmp_path / "gw1_key"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(INVENTORY.format(key=key))
    login = remote.Login((tmp_path / "shared_key",))
    trust = remote.Trust(tmp_path / "known_hosts")
    members = fleet.from_inventory("gateways", inventory, login, trust, 5.0)
    assert [m.name for m in members] == ["gw1 (ssh://admin@203.0.113.1)",
                                         "gw2 (ssh://root@[2001:db8:e20::2]:2222)"]
    first, second = (m.access for m in members)
    assert first is not None and second is not None
    assert first.login.identities == (key, tmp_path / "shared_key")  # its own key first
    assert second.login.identities == (tmp_path / "shared_key",)
    assert (first.trust, first.timeout) == (trust, 5.0)
    # every host: the one not reached over SSH is a row saying so, not the end of the run
    everything = fleet.from_inventory("all", inventory, login, trust, 5.0)
    assert [(m.name, m.refused) for m in everything if m.access is None] == [
        ("box", "ansible_connection docker: the audit reads gateways over SSH only")]


@pytest.mark.parametrize("inventory, message", [
    ("[gateways]\ngw1 ansible_host=203.0.113.1 ansible_password=hunter2\n",
     "host gw1 has a password in the inventory; use --password-env VAR"),
    ("[gateways]\ngw1 ansible_host=203.0.113.1 ansible_ssh_pass=hunter2\n",
     "host gw1 has a password in the inventory; use --password-env VAR"),
    ("[gateways\ngw1\n", "ansible-inventory cannot read it: "),
    ("[gateways]\ngw1\n", "no host matches 'routers'"),
])
def test_a_bad_inventory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     inventory: str, message: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(inventory)
    status, out, err = _run(capsys, "ansible://routers" if "routers" in message
                            else "ansible://all", "--inventory", str(path))
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and message in err, err
    assert "hunter2" not in err


@pytest.mark.parametrize("args, message", [
    ((GOOD, LEAK, "--jobs", "0"), "--jobs must be a number 1-256 (given 0)"),
    ((GOOD, "--jobs", "2"), "--jobs is for a fleet"),
    ((GOOD, LEAK, "--twin", "fixed-screened-block"), "--twin is for one gateway"),
    ((GOOD, LEAK, "--mx", "ssh://root@203.0.113.25"), "--mx is for one gateway"),
    ((GOOD, "ansible://all"), "ansible://all': name the inventory (--inventory FILE)"),
    ((GOOD, "ansible://all?user=x", "--inventory", "x"), "give ansible://PATTERN"),
    ((GOOD, "root@gw"), "target 'root@gw': give ssh://user@host[:port]"),
    (("--inventory", "/nonexistent/hosts.ini"), "--inventory /nonexistent/hosts.ini: no such "
                                                "file"),
    ((), "required: ssh://USER@HOST[:PORT] (or --inventory FILE)"),
])
def test_bad_fleet_input_is_one_line(capsys: pytest.CaptureFixture[str],
                                     args: tuple[str, ...], message: str) -> None:
    status, out, err = _run(capsys, *args)
    assert (status, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and message in err, err


def test_the_single_gateway_audit_is_as_it_was(read: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, GOOD, "--management", "ens20")
    assert status == 1 and out.startswith(f"== audit {GOOD} FAIL")
    assert "fleet" not in out
