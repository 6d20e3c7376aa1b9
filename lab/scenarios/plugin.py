"""The pytest plugin behind `pytest --pyargs lab.scenarios` (registered by entry point).

Every pytest run in the environment loads it, so it only adds its option.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("port25lab-scenarios", "port25lab scenarios as tests "
                            "(pytest --pyargs lab.scenarios [-n N])")
    group.addoption("--port25lab-scenario", action="append", default=[], metavar="SCENARIO",
                    help="a built-in scenario's name or a scenario folder (repeatable; "
                         "default: every built-in scenario)")
