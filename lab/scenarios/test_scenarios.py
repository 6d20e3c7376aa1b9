"""Each scenario one test: it passes when every observed verdict is its expectation.

Run as root: `pytest --pyargs lab.scenarios` (`-k NAME` picks, `-n 2` runs two labs side
by side with pytest-xdist; `--junitxml` writes one test case per scenario). A failing
scenario's message is its report, as `port25lab verify` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import report
from lab.engine.parallel import timed
from lab.errors import BadInput
from lab.model import scenario


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "port25lab_scenario" in metafunc.fixturenames:
        names = (metafunc.config.getoption("port25lab_scenario", default=None)
                 or scenario.builtin_names())
        metafunc.parametrize("port25lab_scenario", names, ids=[Path(n).name for n in names])


def test_scenario(port25lab_scenario: str, record_property: Callable[[str, object], None]) -> None:
    if os.geteuid() != 0:
        pytest.fail("a scenario boots network namespaces: run pytest as root", pytrace=False)
    try:
        loaded = scenario.load(port25lab_scenario)
    except BadInput as exc:
        pytest.fail(str(exc), pytrace=False)
    result, record = timed(loaded, lambda _: None)
    record_property("site", report.site_label(result))
    record_property("seconds", record.seconds)
    if result.lab_error or not result.passed:
        pytest.fail(report.styled(result, loaded).plain, pytrace=False)
