"""The traps' side of a run: waiting for a ban (or its end) before a probe, and the
jail's maxretry that says which event fired it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lab.engine.labview import LabView
from lab.evidence.bans import BanWatcher
from lab.evidence.firewall_log import logged_at
from lab.model.evidence import Ban
from lab.model.scenario import Expectation

BAN_WAIT = 10.0  # s: a trap that has not fired by then has failed
UNBAN_WAIT = 90.0  # s: the lab's bantimes are seconds; a ban still there by then stays

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Waited:
    """What the wait before an `after: ban|unban` probe found, in words and as the ban."""

    said: str
    ban: Ban | None = None


def maxretry(lab: LabView, ban: Ban) -> int | None:
    """The maxretry of the jail whose chain holds `ban` (fail2ban's chain: f2b-<jail>)."""
    inst = lab.traps.get(ban.node)
    if inst is None:
        return None
    status, out, _ = lab.exec(ban.node, inst.client_argv("get", ban.jail, "maxretry"),
                              timeout=10)
    return int(out.strip()) if status == 0 and out.strip().isdigit() else None


def wait_for_ban(lab: LabView, name: str, watcher: BanWatcher | None,
                 expectation: Expectation, progress: Progress) -> Waited | None:
    """Before an `after: ban|unban` expectation: wait for the source's ban (or its end).

    None when there is nothing to wait for (the expectation has no `after`).
    """
    if not expectation.after:
        return None
    address = lab.site.role(expectation.source).address(expectation.family)
    if watcher is None:
        return Waited("no trap runs: nothing to wait for")
    if expectation.after == "ban":
        # once a trap failed to fire for an address, waiting again proves nothing new
        ban = watcher.wait_banned(address, 0.0 if address in watcher.gave_up else BAN_WAIT)
        if ban is None:
            watcher.gave_up.add(address)
            return Waited(f"no ban of {address} within {BAN_WAIT:.0f} s")
        if ban.fired_at is None and not ban.fired_by:
            nth = maxretry(lab, ban) or 1
            fired = logged_at(lab.firewall_logs.values(), address, since=watcher.lifted(address),
                              until=ban.seen_at, nth=nth)
            if fired is None:
                watcher.explain(address, None, "unknown")
            else:
                watcher.explain(address, fired, "its firewall log line",
                                nth if nth > 1 else None)
            ban = watcher.active(address) or ban
            reaction = (f" {ban.reaction_ms:.0f} ms after {ban.fired_by}"
                        if ban.reaction_ms is not None else "")
            progress(f"{name}: {expectation.source} ({address}) banned{reaction}")
        return Waited(f"banned by {ban.describe()}", ban)
    if watcher.active(address) is not None:
        progress(f"{name}: waiting for the ban of {expectation.source} ({address}) to end")
    lifted = watcher.wait_lifted(address, UNBAN_WAIT)
    if lifted is None:
        still = watcher.active(address)
        return Waited(f"still banned after {UNBAN_WAIT:.0f} s" if still
                      else f"{address} was never banned", still)
    return Waited(f"ban lifted {lifted.lifted_after_s} s after it was seen", lifted)
