"""Bans as evidence: the fail2ban rules in the trap nodes' rulesets, watched as they come.

A ban is what fail2ban's stock iptables actions put in the node's ruleset: a
DROP or REJECT for the address in a chain named `f2b-<jail>`. The lab watches
the rulesets of the trap nodes (`BanWatcher`), so that a ban's reaction time
is measured from the outside: from the event that fired it to the moment the
rule is in the kernel. (The fail2ban daemons themselves: lab.services.trap.)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from lab.model.evidence import Ban
from lab.netfilter.counters import parse_save
from lab.netfilter.family import FAMILIES
from lab.netfilter.rules import BAN_CHAIN, Rule

POLL = 0.02  # s between two looks at a trap node's rulesets


def _source(words: tuple[str, ...]) -> str | None:
    for flag, value in itertools.pairwise(words):
        if flag in ("-s", "--source"):
            return value.split("/")[0]
    return None


def bans_in(rules: list[Rule]) -> dict[str, tuple[Rule, tuple[str, ...]]]:
    """Banned addresses in one node's rules: the ban rule and the rules that jump to it."""
    jumps: dict[str, list[str]] = {}
    for rule in rules:
        if rule.target.startswith(BAN_CHAIN):
            jumps.setdefault(rule.target, []).append(rule.cite())
    found: dict[str, tuple[Rule, tuple[str, ...]]] = {}
    for rule in rules:
        if rule.is_ban:
            address = _source(rule.words)
            if address is not None:
                found[address] = (rule, tuple(jumps.get(rule.chain, ())))
    return found


class BanWatcher:
    """Watches the trap nodes' rulesets in the background and records every ban."""

    def __init__(self, nodes: list[str], run: Callable[[str, list[str]], tuple[int, str, str]]):
        self.nodes = nodes
        self._run = run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bans: list[Ban] = []
        self._thread = threading.Thread(target=self._watch, name="port25lab-bans", daemon=True)
        self.error: str | None = None
        self.gave_up: set[str] = set()  # addresses whose ban never came

    def __enter__(self) -> BanWatcher:
        self._look()  # bans that exist before the first probe count from here
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self._look()
            except Exception as exc:  # a node that went away: stop watching, say why
                self.error = f"ban watcher: {exc}"
                return

    def _look(self) -> None:
        now = time.time()
        current: dict[tuple[str, int, str], tuple[Rule, tuple[str, ...]]] = {}
        for node in self.nodes:
            for family in FAMILIES:
                status, out, _ = self._run(node, [family.save, "-c"])  # with counters
                if status != 0:
                    continue
                for address, found in bans_in(parse_save(node, family.version, out)).items():
                    current[(node, family.version, address)] = found
        with self._lock:
            active = {(b.node, b.family, b.address): i for i, b in enumerate(self._bans)
                      if b.lifted_at is None}
            for key, index in active.items():
                if key not in current:
                    self._bans[index] = replace(self._bans[index], lifted_at=now)
            for key, (rule, hooked) in current.items():
                if key not in active:
                    self._bans.append(Ban(key[0], key[1], key[2], rule.chain, rule.cite(),
                                          hooked, now))

    def bans(self) -> list[Ban]:
        with self._lock:
            return list(self._bans)

    def active(self, address: str) -> Ban | None:
        with self._lock:
            return next((b for b in self._bans if b.address == address
                         and b.lifted_at is None), None)

    def lifted(self, address: str) -> float:
        """When the address's latest lifted ban ended (0: never banned before)."""
        with self._lock:
            ends = [b.lifted_at for b in self._bans if b.address == address and b.lifted_at]
        return max(ends, default=0.0)

    def wait_banned(self, address: str, timeout: float) -> Ban | None:
        """The active ban of `address`, waiting up to `timeout` seconds for one."""
        deadline = time.monotonic() + timeout
        while (ban := self.active(address)) is None and time.monotonic() < deadline:
            time.sleep(POLL / 2)
        return ban

    def wait_lifted(self, address: str, timeout: float) -> Ban | None:
        """The ban of `address` once lifted (None: still banned after `timeout` s, or never)."""
        deadline = time.monotonic() + timeout
        while self.active(address) is not None and time.monotonic() < deadline:
            time.sleep(POLL / 2)
        if self.active(address) is not None:
            return None
        lifted = [b for b in self.bans() if b.address == address]
        return lifted[-1] if lifted else None

    def explain(self, address: str, fired_at: float | None, event: str,
                number: int | None = None) -> None:
        """Record what fired the address's latest ban (for its reaction time).

        `number`: which one of such events it was (a jail bans at its maxretry-th).
        """
        fired_by = event + (f" no. {number}" if number is not None else "")
        with self._lock:
            for i in range(len(self._bans) - 1, -1, -1):
                if self._bans[i].address == address:
                    if self._bans[i].fired_at is None and not self._bans[i].fired_by:
                        self._bans[i] = replace(self._bans[i], fired_at=fired_at,
                                                fired_by=fired_by, fired_event=event,
                                                fired_no=number)
                    return
