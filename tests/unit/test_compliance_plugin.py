"""The pytest plugin every pytest run in the environment loads: inert unless asked for.

Run in-process with pytester: the plugin comes in by its entry point, as it does
for any pytest run in the environment.
"""

from __future__ import annotations

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

