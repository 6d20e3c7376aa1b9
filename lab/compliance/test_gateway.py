"""The compliance checks of a live gateway, one test each (per family where it matters).

Run: `pytest --pyargs lab.compliance --hosts=paramiko://root@gw [--port25lab-mx=…]`.
Each test states the check's evidence when it fails; a check that needs the
mail server is skipped, saying so, when `--port25lab-mx` is not given.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lab.compliance.checks import Finding

Check = Callable[[str, int | None], Finding]
per_family = pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])


def _holds(finding: Finding) -> None:
    if finding.passed is None:
        pytest.skip(f"{finding.check}: not checked: {finding.detail}")
    if not finding.passed:
        pytest.fail(f"{finding.title}: {finding.detail}", pytrace=False)


def test_inside_interface(port25lab_check: Check) -> None:
    _holds(port25lab_check("inside-interface", None))


@per_family
def test_smtp_blocked(port25lab_check: Check, family: int) -> None:
    _holds(port25lab_check("smtp-blocked", family))


def test_teredo_rule(port25lab_check: Check) -> None:
    _holds(port25lab_check("teredo-rule", None))


@per_family
def test_submission_open(port25lab_check: Check, family: int) -> None:
    _holds(port25lab_check("submission-open", family))


@per_family
def test_mail_server_exception(port25lab_check: Check, family: int) -> None:
    _holds(port25lab_check("mail-server-exception", family))


@per_family
def test_log_before_drop(port25lab_check: Check, family: int) -> None:
    _holds(port25lab_check("log-before-drop", family))


@per_family
def test_forwarding_on(port25lab_check: Check, family: int) -> None:
    _holds(port25lab_check("forwarding-on", family))


def test_submission_auth_tls(port25lab_check: Check) -> None:
    _holds(port25lab_check("submission-auth-tls", None))


def test_fail2ban_jails(port25lab_check: Check) -> None:
    _holds(port25lab_check("fail2ban-jails", None))
