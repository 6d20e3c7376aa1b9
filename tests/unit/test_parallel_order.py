"""Which scenario a pool starts first: the one that waits longest (guessing, bantimes), so
that the run does not end waiting for one slow scenario started last."""

from __future__ import annotations

from lab.engine.parallel import _cost
from lab.model import scenario


def test_the_longest_waits_start_first() -> None:
    order = sorted(scenario.builtin_names(), key=lambda n: -_cost(scenario.load(n)))
    assert order[:2] == ["guessing", "weak-password"]
    assert set(order[2:5]) == {"fixed-trap", "false-alarm", "seed-trap"}  # a bantime each
    assert order[-1] == "spambot"
