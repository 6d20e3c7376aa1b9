"""The pytest plugin every pytest run in the environment loads: inert unless asked for.

Run in-process with pytester: the plugin comes in by its entry point, as it does
for any pytest run in the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast

import pytest

from tests.support import PROJECT

pytest_plugins = ["pytester"]


def test_an_ordinary_run_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    loaded = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    loaded.assert_outcomes(passed=1)
    # the plugin is loaded (its options are there, beside testinfra's own) ...
    helped = pytester.runpytest_inprocess("--help").stdout.str()
    assert "--port25lab-clients" in helped and "--hosts=HOSTS" in helped
    # ... and the project's own suite collects exactly what it collects without it
    unit = str(PROJECT / "tests" / "unit")
    with_plugin = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider",
                                               f"--rootdir={PROJECT}", unit)
    without = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider",
                                           "-p", "no:port25lab", f"--rootdir={PROJECT}", unit)
    collected = [ln for ln in with_plugin.outlines if "::" in ln]
    assert collected == [ln for ln in without.outlines if "::" in ln]
    assert len(collected) > 100
    assert not any("test_gateway" in ln for ln in collected)


def test_asking_for_the_checks_collects_them(pytester: pytest.Pytester) -> None:
    done = pytester.runpytest_inprocess("--pyargs", "lab.compliance", "--collect-only", "-q",
                                        "-p", "no:cacheprovider")
    assert done.ret == 0, done.stdout.str()
    names = [ln.split("::")[1] for ln in done.outlines if "::" in ln]
    assert len(names) == 14
    assert "test_smtp_blocked[local-v4]" in names and "test_fail2ban_jails[local]" in names


@pytest.mark.parametrize("nodeid, gateway", [
    ("test_gateway.py::test_smtp_blocked[paramiko://203.0.113.4-v6]", "paramiko://203.0.113.4"),
    ("lab/compliance/test_gateway.py::test_fail2ban_jails[ssh://gw-v4.example.org]",
     "ssh://gw-v4.example.org"),
    ("test_gateway.py::test_teredo_rule[ansible://gw01]", "ansible://gw01"),
    ("tests/unit/test_fleet.py::test_a_fleet_is_one_report", None),
    ("test_gateway.py::test_inside_interface", None),
], ids=["per-family", "path-and-name", "ansible", "another-test", "no-host"])
def test_xdist_groups_the_compliance_tests_by_gateway(nodeid: str, gateway: str | None) -> None:
    from lab.compliance.plugin import gateway_of

    assert gateway_of(nodeid) == gateway



class _Options:
    """What `_reader` asks of pytest's config: the `--port25lab-*` options."""

    def __init__(self, known_hosts: str) -> None:
        self.values: dict[str, object] = {
            "port25lab_password_env": None, "port25lab_known_hosts": known_hosts,
            "port25lab_accept_host_key": [], "port25lab_timeout": 7.0}

    def getoption(self, name: str) -> object:
        return self.values[name]


def test_an_ansible_host_over_paramiko_is_read_with_the_audits_own_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """testinfra would open its paramiko backend, which accepts any host key: not here."""
    import testinfra

    from lab.audit import remote
    from lab.compliance.plugin import _reader

    inventory = tmp_path / "hosts.ini"
    inventory.write_text("gw1 ansible_host=203.0.113.1 ansible_connection=paramiko_ssh "
                         f"ansible_user=admin ansible_ssh_private_key_file={tmp_path}/k\n")
    opened: list[tuple[remote.Target, remote.Login, remote.Trust, float]] = []

    def connect(target: remote.Target, login: remote.Login, trust: remote.Trust,
                timeout: float) -> str:
        opened.append((target, login, trust, timeout))
        return "the audit's backend"

    monkeypatch.setattr(remote, "connect", connect)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    host = testinfra.get_host(f"ansible://gw1?ansible_inventory={inventory}")
    assert _reader(host, cast(pytest.Config, _Options(str(tmp_path / "known")))) \
        == "the audit's backend"
    ((target, login, trust, timeout),) = opened
    assert target == remote.Target("admin", "203.0.113.1", 22)
    assert login.identities == (tmp_path / "k",) and login.password is None
    assert (trust.known_hosts, timeout) == (tmp_path / "known", 7.0)
