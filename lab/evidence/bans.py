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
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from lab.model.evidence import Ban
from lab.netfilter.counters import parse_save
from lab.netfilter.family import FAMILIES
from lab.netfilter.rules import BAN_CHAIN, Rule

POLL = 0.02  # s between two looks at a trap node's rulesets
# fail2ban's nftables actions: `addr_set = addr-set-<name>` (addr6-set- for IPv6)
NFT_SETS = {"addr-set-": 4, "addr6-set-": 6}
NFT_LIST = ["nft", "-j", "list", "ruleset"]
_NFT_VERDICTS = {"reject": "REJECT", "drop": "DROP"}


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
    rule: Rule  # its text is '' until read with `nft -a list chain`
    hooked: str  # the base chain's hook: where the ban applies


def _ban_set(expr: list[Any]) -> tuple[int, str] | None:
    """The family and fail2ban set a rule's `(ip|ip6) saddr @set` match names, if any."""
    for item in expr:
        match = item.get("match") if isinstance(item, dict) else None
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


def nft_bans_in(node: str, listed: str) -> list[NftBan]:
    """Banned addresses in one node's `nft -j list ruleset` (none if it says nothing)."""
    try:
        items = json.loads(listed).get("nftables", []) if listed.strip() else []
    except (ValueError, AttributeError):
        return []
    sets: dict[tuple[str, str, str], list[str]] = {}
    hooks: dict[tuple[str, str, str], str] = {}
    positions: dict[tuple[str, str, str], int] = {}
    found: list[NftBan] = []
    for item in items:
        if "set" in item:
            s = item["set"]
            sets[(s["family"], s["table"], s["name"])] = list(_elements(s.get("elem", [])))
        elif "chain" in item and "hook" in item["chain"]:
            c = item["chain"]
            hooks[(c["family"], c["table"], c["name"])] = (
                f"{node}: nft {c['family']} {c['table']} {c['name']}: "
                f"type {c.get('type', 'filter')} hook {c['hook']} priority {c.get('prio', 0)}")
        elif "rule" in item:
            r = item["rule"]
            where = (r["family"], r["table"], r["chain"])
            positions[where] = positions.get(where, 0) + 1
            banning = _ban_set(r.get("expr", []))
            verdict = next((_NFT_VERDICTS[k] for e in r.get("expr", []) if isinstance(e, dict)
                            for k in e if k in _NFT_VERDICTS), "")
            if banning is None or not verdict:
                continue
            family, name = banning
            rule = Rule(node, family, r["table"], r["chain"], positions[where], "", verdict,
                        table_family=r["family"], handle=int(r.get("handle", 0)))
            for address in sets.get((r["family"], r["table"], name), []):
                found.append(NftBan(family, address, name, rule, hooks.get(where, "")))
    return found


def _handles(listed: str) -> dict[int, str]:
    """Each rule's text by its handle, in what `nft -a list chain` printed."""
    texts: dict[int, str] = {}
    for line in listed.splitlines():
        text, mark, handle = line.strip().rpartition(" # handle ")
        if mark and handle.isdigit() and not text.endswith("{"):
            texts[int(handle)] = text
    return texts


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
        status, out, _ = self._run(node, NFT_LIST)
        found = nft_bans_in(node, out) if status == 0 else []
        for ban in found:
            r = ban.rule
            key = (node, r.table_family, r.table, r.chain, r.handle)
            if key not in self._texts:  # read once per rule, not at every look
                status, listed, _ = self._run(node, ["nft", "-a", "list", "chain",
                                                     r.table_family, r.table, r.chain])
                for handle, text in (_handles(listed) if status == 0 else {}).items():
                    self._texts[(*key[:4], handle)] = text
        return [replace(b, rule=replace(b.rule, text=self._texts.get(
            (node, b.rule.table_family, b.rule.table, b.rule.chain, b.rule.handle), "")))
            for b in found]

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
