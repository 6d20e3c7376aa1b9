"""Bans as evidence: the fail2ban rules in the trap nodes' rulesets, watched as they come.

A ban is what fail2ban's stock actions put in the node's ruleset. The iptables
actions: a DROP or REJECT for the address in a chain named `f2b-<jail>`. The
nftables actions (nftables, nftables-multiport, nftables-allports): one rule
per family, `… ip saddr @addr-set-<jail> reject` (`ip6 saddr @addr6-set-<jail>`)
in their own base chain (`table inet f2b-table`, chain `f2b-chain` on the hook
`chain_hook` names), and each banned address an element of that set. The lab
watches the rulesets of the trap nodes (`BanWatcher`), so that a ban's reaction
time is measured from the outside: from the event that fired it to the moment
the rule (or the set's element) is in the kernel. (The fail2ban daemons
themselves: lab.services.trap.)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from lab.model.evidence import Ban
from lab.netfilter import nft_paths
from lab.netfilter.counters import parse_save
from lab.netfilter.family import FAMILIES
from lab.netfilter.rules import BAN_CHAIN, Rule

POLL = 0.02  # s between two looks at a trap node's rulesets
# fail2ban's nftables actions: `addr_set = addr-set-<name>` (addr6-set- for IPv6)
NFT_SETS = {"addr-set-": 4, "addr6-set-": 6}
NFT_LIST = ["nft", "-j", "list", "ruleset"]


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


@dataclass(frozen=True)
class NftBan:
    """A banned address in a node's native nftables ruleset: its set and the rule using it."""

    family: int
    address: str
    set: str  # addr-set-<jail> or addr6-set-<jail>
    rule: Rule  # its text is nft's JSON of it unless the chain's listing was given
    hooked: str  # the base chain's hook: where the ban applies


def _ban_set(expr: tuple[dict[str, Any], ...]) -> tuple[int, str] | None:
    """The family and fail2ban set a rule's `(ip|ip6) saddr @set` match names, if any."""
    for item in expr:
        match = item.get("match")
        if not isinstance(match, dict) or match.get("op") != "==":
            continue
        left, right = match.get("left"), match.get("right")
        payload = left.get("payload") if isinstance(left, dict) else None
        if (not isinstance(payload, dict) or payload.get("field") != "saddr"
                or not isinstance(right, str) or not right.startswith("@")):
            continue
        for prefix, family in NFT_SETS.items():
            if right[1:].startswith(prefix):
                return family, right[1:]
    return None


def _elements(items: Any) -> Iterator[str]:
    """A set's single addresses as `nft -j` prints them (bare, or with a timeout)."""
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and isinstance(item.get("elem"), dict):
            item = item["elem"].get("val")
        if isinstance(item, str):
            yield item


def nft_bans_in(node: str, listed: str, text: str = "") -> list[NftBan]:
    """Banned addresses in one node's `nft -j list ruleset` (none if it says nothing).

    `text`: `nft list` of the ban rules' chains, for the rules' texts.
    """
    try:
        ruleset = nft_paths.parse(listed, text)
    except (ValueError, KeyError, TypeError, AttributeError):  # empty, or no nft JSON
        return []
    found: list[NftBan] = []
    for (family, table, name), rules in ruleset.rules.items():
        chain = ruleset.chain(family, table, name)
        hooked = (f"{node}: nft {family} {table} {name}: type {chain.type} hook {chain.hook} "
                  f"priority {chain.priority}") if chain is not None and chain.base else ""
        for nft_rule in rules:
            banning = _ban_set(nft_rule.expr)
            if banning is None or not nft_rule.rule.drops:
                continue
            version, ban_set = banning
            rule = replace(nft_rule.rule, router=node, family=version)
            elements = ruleset.sets.get((family, table, ban_set), {}).get("elem", [])
            found += [NftBan(version, address, ban_set, rule, hooked)
                      for address in _elements(elements)]
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
        self._texts: dict[tuple[str, str, str, str, int], str] = {}  # nft rules' texts

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
        # (node, family, address) → the ban rule, the rules or hook that reach it, its nft set
        current: dict[tuple[str, int, str], tuple[Rule, tuple[str, ...], str]] = {}
        for node in self.nodes:
            for family in FAMILIES:
                status, out, _ = self._run(node, [family.save, "-c"])  # with counters
                if status != 0:
                    continue
                for address, found in bans_in(parse_save(node, family.version, out)).items():
                    current[(node, family.version, address)] = (*found, "")
            for ban in self._nft_bans(node):
                current[(node, ban.family, ban.address)] = (
                    ban.rule, (ban.hooked,) if ban.hooked else (), ban.set)
        with self._lock:
            active = {(b.node, b.family, b.address): i for i, b in enumerate(self._bans)
                      if b.lifted_at is None}
            for key, index in active.items():
                if key not in current:
                    self._bans[index] = replace(self._bans[index], lifted_at=now)
            for key, (rule, hooked, nft_set) in current.items():
                if key not in active:
                    self._bans.append(Ban(key[0], key[1], key[2], rule.chain, rule.cite(),
                                          hooked, now, nft_set=nft_set))

    def _nft_bans(self, node: str) -> list[NftBan]:
        """The node's nftables bans, each rule with its text as `nft list` prints it."""
        status, listed, _ = self._run(node, NFT_LIST)
        found = nft_bans_in(node, listed) if status == 0 else []
        unread = {(b.rule.table_family, b.rule.table, b.rule.chain) for b in found
                  if (node, b.rule.table_family, b.rule.table, b.rule.chain, b.rule.handle)
                  not in self._texts}
        for chain in sorted(unread):  # a rule's text is read once, not at every look
            status, text, _ = self._run(node, ["nft", "list", "chain", *chain])
            if status != 0:
                continue
            for ban in nft_bans_in(node, listed, text):
                r = ban.rule
                if (r.table_family, r.table, r.chain) == chain:
                    self._texts[(node, *chain, r.handle)] = r.text
        return [replace(b, rule=replace(b.rule, text=self._texts.get(
            (node, b.rule.table_family, b.rule.table, b.rule.chain, b.rule.handle),
            b.rule.text))) for b in found]

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
