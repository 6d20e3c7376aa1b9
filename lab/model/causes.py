"""Which failing rows a policy line that did not load may explain.

A line the kernel refused is a rule that is missing from the router. The rows it
may explain are the failing rows whose packets that rule could have decided,
judged from what the line says, conservatively (a row is linked unless the line
rules it out):

- the line's IP family is the row's (a tunnel probe travels in IPv4);
- where the line names a protocol (`-p udp`), it is the one the probe's packets
  cross the router in: UDP for Teredo and DNS, IPv4 protocol 41 for 6in4, TCP
  for the rest; its ports are not read (a broken port option is often why the
  line failed);
- its target could have changed the row's verdict: a missing DROP or REJECT
  lets through (the row was not observed blocked), a missing ACCEPT stops (the
  row was observed blocked), a missing DNAT or REDIRECT leaves the packet on its
  way (the row was not observed diverted); a LOG line decides no row; any other
  line (a jump to a chain of the policy's own, a chain policy) may explain any.

A save file is restored as a whole, so a line of it that fails leaves all of it
unloaded: it explains every failing row of its family; so does an nft ruleset
(`nft -f` is atomic), for each family it holds, and an nft call of a script (its
words are not read here). A row whose verdict is
`error` is never explained by a policy (the lab could not decide), nor is a row
that passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lab.model.results import Result
from lab.model.verdict import Verdict
from lab.netfilter import script
from lab.netfilter.nft import Ruleset
from lab.netfilter.policy import LoadError, PolicyFile
from lab.netfilter.rules import LOGGING, REWRITES, TERMINAL_DROPS, target_of
from probes.registry import PROBES

# what `-p` may say for each protocol a probe's packets cross the router in
_PROTOCOLS = {"tcp": {"tcp", "6"}, "udp": {"udp", "17"}, "ipv6": {"ipv6", "41"}}
_ANY = {"all", "0"}


def transport(probe: str) -> str:
    """The protocol a probe's packets cross the router in: "tcp", "udp" or "ipv6" (6in4)."""
    entry = PROBES[probe]
    far_side = entry.far_side
    if far_side == "6in4":
        return "ipv6"
    return "udp" if far_side == "udp" else "tcp"


def _protocol(words: Sequence[str]) -> str | None:
    """The protocol the line names, lower case, or None (none named, or negated)."""
    for i, word in enumerate(words[:-1]):
        if word in ("-p", "--protocol"):
            if i > 0 and words[i - 1] == "!":
                return None
            value = words[i + 1].lower()
            return None if value in _ANY else value
    return None


def _may_change(words: Sequence[str], r: Result) -> bool:
    """Whether the rule these words make, had it loaded, could have changed r's verdict."""
    target = target_of(list(words))
    if target in TERMINAL_DROPS:
        return r.observed != Verdict.BLOCKED
    if target == "ACCEPT":
        return r.observed == Verdict.BLOCKED
    if target in REWRITES:
        return r.observed != Verdict.DIVERTED
    return target not in LOGGING


def explains(words: Sequence[str] | None, family: int, r: Result) -> bool:
    """Whether a missing rule (its words; None: a whole save file) may explain row r."""
    if r.passed or r.observed == Verdict.ERROR or r.family != family:
        return False
    if words is None:
        return True
    named = _protocol(words)
    if named is not None and named not in _PROTOCOLS[transport(r.probe)]:
        return False
    return _may_change(words, r)


def explained(error: LoadError, policies: Sequence[PolicyFile],
              results: Sequence[Result]) -> tuple[Result, ...]:
    """The failing rows the line of `error` may explain (none if it is no policy's line)."""
    for policy in policies:
        if policy.kind == "save" and policy.name == error.file:
            return tuple(r for r in results if explains(None, policy.save_family, r))
        if policy.ruleset is not None and _names(policy.ruleset, error):
            return _any_of(policy.families, results)
        for command in policy.commands:
            if command.ruleset is not None and _names(command.ruleset, error):
                return _any_of(script.families_of(command), results)
            if (command.file, command.line) == (error.file, error.line):
                if script.is_nft(command):
                    return _any_of(script.families_of(command), results)
                return tuple(r for r in results
                             if explains(command.argv, command.family, r))
    return ()


def _names(ruleset: Ruleset, error: LoadError) -> bool:
    """The error is one of the ruleset's files (an included one too)."""
    return error.file in {file for file, _ in ruleset.origins}


def _any_of(families: Iterable[int], results: Sequence[Result]) -> tuple[Result, ...]:
    wanted = set(families)
    return tuple(r for r in results if any(explains(None, f, r) for f in wanted))
