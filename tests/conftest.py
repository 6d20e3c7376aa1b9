"""Lab tests need root: say so plainly instead of failing somewhere inside Mininet."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _lab_tests_need_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab") and os.geteuid() != 0:
        pytest.fail("lab tests boot network namespaces: run them as root (make test)")
