"""The agent's standard input while a probe waits: the lab's STOP line ends the wait."""

from __future__ import annotations

import os

from probes.agent import Lines
from probes.requests import STOP


def test_stop_is_taken_and_the_next_request_kept() -> None:
    read, write = os.pipe()
    lines = Lines(read)
    os.write(write, f"{STOP}\n{{\"op\": \"syn\"}}\n".encode())
    assert lines.stopped()
    assert lines.next() == '{"op": "syn"}'
    os.close(write)
    assert lines.next() is None


def test_a_request_that_came_early_is_no_stop_and_is_not_lost() -> None:
    read, write = os.pipe()
    lines = Lines(read)
    os.write(write, b'{"op": "syn"}\n')
    assert not lines.stopped()
    assert lines.next() == '{"op": "syn"}'
    os.close(write)
    assert not lines.stopped() and lines.closed
