"""The translated scenarios' saves are what their scripts load into a kernel."""

from __future__ import annotations

import subprocess

import pytest

from lab.model import scenario
from tests.unit.test_translated import TRANSLATED

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", sorted(TRANSLATED))
def test_the_committed_saves_are_what_the_script_loads(name: str) -> None:
    rules = scenario.BUILTIN / TRANSLATED[name] / "rules.sh"
    # the README's first command, in a throwaway namespace; the script's own
    # complaints (the published -dport line) go to stderr, as on a real box
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c",
         f"sh '{rules}' >/dev/null 2>&1; iptables-save; echo =; ip6tables-save"],
        capture_output=True, text=True, timeout=60, check=True)
    v4, v6 = done.stdout.split("=\n")
    folder = scenario.BUILTIN / name
    for save, text in (("rules.v4.save", v4), ("rules.v6.save", v6)):
        undated = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))
        assert (folder / save).read_text() == undated, save
