"""`ip -batch`: the lab's many `ip` commands run as one process, and a failure names the
command that failed (not the batch). Read-only commands of the host's own `ip`."""

from __future__ import annotations

from lab.runtime.lifecycle import ip_batch

MISSING = "p25-nosuchdev"  # a name no interface has (the lab's prefix, never the host's)


def test_a_batch_that_holds_says_nothing() -> None:
    assert ip_batch(["link show dev lo", "addr show dev lo"]) == ""
    assert ip_batch([]) == ""


def test_a_failure_names_its_command_and_what_ip_said() -> None:
    said = ip_batch(["link show dev lo", f"link show dev {MISSING}", "addr show dev lo"])
    assert said.startswith(f"ip link show dev {MISSING}: "), said
    assert "does not exist" in said


def test_forced_it_goes_on_past_a_failure_and_names_the_first() -> None:
    said = ip_batch([f"link show dev {MISSING}", "link show dev lo",
                     f"addr show dev {MISSING}"], force=True)
    assert said.startswith(f"ip link show dev {MISSING}: "), said
