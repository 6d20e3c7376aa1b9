"""The rule model: one netfilter rule (or a built-in chain's policy) wherever it was read.

Every dialect reader produces these: the save files a router or a gateway prints,
with or without counters, and the scripts a policy is written in. Verdicts, the
audit's static checks, the twin and the firewall-log translation all read them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BadInput
from lab.netfilter.family import family as ip_family

TERMINAL_DROPS = frozenset({"DROP", "REJECT"})
LOGGING = frozenset({"LOG", "NFLOG", "ULOG"})
REWRITES = frozenset({"DNAT", "REDIRECT", "NETMAP"})
# targets after which the packet goes on to the next rule
NON_TERMINAL = frozenset({"MARK", "CONNMARK", "TCPMSS", "CLASSIFY", "DSCP", "TOS", "CT",
                          "NOTRACK", "TTL", "HL", "AUDIT", "SET", "TRACE", "CHECKSUM"})
JUMP_FLAGS = ("-j", "--jump", "-g", "--goto")
BAN_CHAIN = "f2b-"  # fail2ban's stock iptables actions put a jail's bans in f2b-<jail>
# The longest line a dialect reader takes as a rule: far above any real rule (3 KiB for
# 250 sources), far below what makes shlex, quadratic in a word's length, take long.
MAX_LINE = 16 * 1024


def too_long(path: Path, line: int) -> BadInput:
    """The error for a line over MAX_LINE (checked before it is split into words)."""
    return BadInput(f"{path}:{line}: longer than {MAX_LINE} characters, not an iptables rule")


def words_of(text: str) -> tuple[str, ...]:
    """A rule's words as the shell would split them (plain split if its quotes are broken)."""
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())


def target_of(words: tuple[str, ...] | list[str]) -> str:
    """The rule's target (`-j`, `--jump`, `-g`, `--goto`), or '' for a rule that only counts."""
    for i, word in enumerate(words[:-1]):
        if word in JUMP_FLAGS:
            return words[i + 1]
    return ""


@dataclass(frozen=True)
class Rule:
    """A rule (or, at position 0, a built-in chain's policy) and its packet count.

    `router` is the lab node it was read from ('' for a gateway read by the audit);
    `line` is its line in the text it was read from; `source` the policy file and
    line it was written in, where known ('rules.sh:17').

    A rule of a native nftables table (one `nft` made, not iptables-nft's
    xtables tables) has its nft family (`table_family`: ip, ip6, inet, bridge,
    netdev, arp) and its kernel `handle`; `text` is the rule as `nft list`
    prints it, and `target` the iptables word for its verdict statement
    (DROP, REJECT, ACCEPT, RETURN, DNAT, SNAT, MASQUERADE, REDIRECT, LOG, the
    chain of a jump/goto; '' for a rule that only counts, or whose verdict
    differs per packet, as a verdict map's). `family` is the IP family a
    verdict concerns (an inet rule is read once per family it was hit in).
    """

    router: str
    family: int
    table: str
    chain: str
    position: int  # 1-based within the chain; 0 is the chain policy
    text: str  # the words after `-A CHAIN`, as printed
    target: str
    packets: int = 0
    line: int = 0
    source: str = ""
    table_family: str = ""  # set only for native nftables rules
    handle: int = 0  # the kernel's handle of a native nftables rule

    @property
    def key(self) -> tuple[str, int, str, str, int, str]:
        return (self.router, self.family, self.table_family + self.table, self.chain,
                self.position, self.text)

    @property
    def native(self) -> bool:
        """A rule of a native nftables table (written in nft, not iptables)."""
        return bool(self.table_family)

    @property
    def words(self) -> tuple[str, ...]:
        return words_of(self.text)

    @property
    def is_policy(self) -> bool:
        return self.position == 0

    @property
    def drops(self) -> bool:
        return self.target in TERMINAL_DROPS

    @property
    def logs(self) -> bool:
        return self.target in LOGGING

    @property
    def rewrites(self) -> bool:
        return self.target in REWRITES

    @property
    def goes_to(self) -> bool:
        """A `-g`/`--goto` jump: the chain's RETURN does not come back here."""
        return any(w in ("-g", "--goto") for w in self.words)

    @property
    def is_ban(self) -> bool:
        """A rule fail2ban's stock iptables actions made: its chain is `f2b-<jail>`."""
        return self.chain.startswith(BAN_CHAIN) and self.drops

    def in_chain(self) -> str:
        """The rule by its place and text: `FORWARD#3: -A FORWARD …`."""
        if self.native:
            where = f"{self.table_family} {self.table} {self.chain}"
            if self.is_policy:
                return f"{where} policy {self.target.lower()}"
            return f"{where} handle {self.handle}: {self.text}"
        if self.is_policy:
            return f"{self.chain} policy {self.target}"
        return f"{self.chain}#{self.position}: -A {self.chain} {shlex.join(self.words)}".rstrip()

    def cite(self) -> str:
        """How a report names the rule: router, table, chain, position and text.

        A gateway's rule read by the audit has no lab router: its place and text.
        """
        if not self.router:
            return self.in_chain()
        if self.native:  # `gw: nft inet filter forward handle 7: tcp dport 25 drop`
            return f"{self.router}: nft {self.in_chain()}" + (
                " (policy)" if self.is_policy else "")
        tool = ip_family(self.family).tool
        if self.is_policy:
            return f"{self.router}: {tool} -t {self.table} -P {self.chain} {self.target} (policy)"
        return (f"{self.router}: {tool} -t {self.table} {self.chain}#{self.position}: "
                f"-A {self.chain} {self.text}")

    def reference(self) -> str:
        """`cite()` and, where known, the line she wrote it on, for evidence in words.

        `gw: iptables -t nat PREROUTING#1: -A PREROUTING … (from rules.sh:12)`. The
        source follows the kernel's rendering, which tests and users' scripts match
        at the start; a rule of no known source (fail2ban's, a chain policy) is
        cited alone.
        """
        return f"{self.cite()} (from {self.source})" if self.source else self.cite()
