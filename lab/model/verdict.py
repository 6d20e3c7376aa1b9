"""Verdicts, decided from the evidence of the sender, the far side and the routers."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from lab.model.evidence import Observation, Sighting
from lab.netfilter.counters import Hit
from lab.netfilter.rules import Rule

# the option that names where a NAT rule sends the packet, per target
_NEW_DESTINATION = {"DNAT": "--to-destination", "REDIRECT": "--to-ports", "NETMAP": "--to"}


class Verdict(StrEnum):
    ALLOWED = "allowed"      # reached the intended far side
    BLOCKED = "blocked"      # never reached the far side; a router rule decided it
    DIVERTED = "diverted"    # answered by another host or port than the one addressed
    REFUSED = "refused"      # the mail server reached refused the mail (SMTP 4xx/5xx)
    BANNED = "banned"        # the host is cut off after a trap fired
    ERROR = "error"          # the lab could not decide; never a pass
    # not probed: the site gives the row no path (a node without an address of its
    # family); neither passed nor failed. decide() never says it: the engine does.
    NOT_APPLICABLE = "not applicable"


EXPECTABLE = tuple(v for v in Verdict if v not in (Verdict.ERROR, Verdict.NOT_APPLICABLE))


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str | None
    detail: str


def decide(target: str, address: str, dport: int, seen: Observation,
           sightings: Sequence[Sighting], rule_hits: Sequence[Hit],
           expects_answer: bool = True) -> Decision:
    """The verdict for one probe from `seen` (sender), `sightings` (far side) and `rule_hits`.

    `expects_answer` is False for packets nobody answers (a tunnelled SYN sent to
    a relay): there, arriving at the target is enough for `allowed`.
    """
    drops = [h for h in rule_hits if h.rule.drops and not h.rule.is_policy]
    drops += [h for h in rule_hits if h.rule.drops and h.rule.is_policy]
    logged = [h.rule for h in rule_hits if h.rule.target in ("LOG", "NFLOG", "ULOG")]
    rewrites = [h.rule for h in rule_hits if h.rule.target in ("DNAT", "REDIRECT", "NETMAP")]
    log_note = f"; logged by {logged[0].reference()}" if logged else ""
    arrived = [s for s in sightings if s.role == target and s.dport == dport]
    elsewhere = [s for s in sightings if not (s.role == target and s.dport == dport)]

    where = f"{target}:{dport}" if dport else target  # 6in4 has no port
    bans = [h for h in drops if h.rule.is_ban]
    if bans:
        # A trap's rule decided it, whatever else the packet met: the host is cut off.
        how = "rejected" if seen.reply in ("rst", "icmp") else "dropped"
        reached = f"; {where} saw it (a ban on the target itself)" if arrived else ""
        return Decision(Verdict.BANNED, bans[0].rule.cite(),
                        f"{how} by a ban before {where}{reached}; sender: {seen.describe()}"
                        f"{log_note}")
    if arrived and not expects_answer:
        carried = f", carrying {arrived[0].inner}" if arrived[0].inner else ""
        return Decision(Verdict.ALLOWED, None,
                        f"{where} received it{carried}; sender: {seen.describe()}{log_note}")
    if arrived:
        if seen.reply in ("synack", "rst"):
            banner = f"; banner {seen.banner!r}" if seen.banner else ""
            return Decision(Verdict.ALLOWED, None,
                            f"{target}:{dport} saw the SYN; {seen.describe()}{banner}{log_note}")
        if drops:
            return Decision(Verdict.BLOCKED, drops[0].rule.cite(),
                            f"{target}:{dport} saw the SYN but its answer was dropped; "
                            f"sender: {seen.describe()}{log_note}")
        return Decision(Verdict.ERROR, None,
                        f"{target}:{dport} saw the SYN but the sender saw {seen.describe()} "
                        "and no rule explains it")
    if elsewhere:
        new = elsewhere[0]
        rule = rewrites[0].cite() if rewrites else None
        if seen.reply in ("synack", "rst") and seen.source == address:
            return Decision(Verdict.DIVERTED, rule,
                            f"answered by {new.role}:{new.dport} instead of {where}; "
                            f"{seen.describe()}" + (f"; banner {seen.banner!r}"
                                                    if seen.banner else "") + log_note)
        if rule is None:
            return Decision(Verdict.ERROR, None,
                            f"arrived at {new.role}:{new.dport} instead of {where} "
                            f"with no rule rewriting it; sender: {seen.describe()}")
        # The rewritten SYN arrived, but the answer did not come back through the
        # router that rewrote it (e.g. the new host is on the sender's own LAN and
        # answers directly): the sender never gets a connection.
        return Decision(Verdict.BLOCKED, rule,
                        f"rewritten to {new.role}:{new.dport}, but the sender saw "
                        f"{seen.describe()} instead of an answer from {address}: the "
                        "diverted connection never opens" + log_note)
    if drops:
        how = "rejected" if seen.reply in ("rst", "icmp") else "dropped"
        # A rewrite that the drop then undid: say where the packet was sent instead,
        # or the user looks for the drop on the path to the address she probed.
        rewritten = (f"rewritten to {new_destination(rewrites[0])} by {rewrites[0].reference()}, "
                     "then " if rewrites else "")
        return Decision(Verdict.BLOCKED, drops[0].rule.cite(),
                        f"{rewritten}{how} before {where}; sender: {seen.describe()}"
                        f"{log_note}")
    return Decision(Verdict.ERROR, None,
                    f"no far side saw the SYN and no router rule matched it; "
                    f"sender: {seen.describe()}")


def new_destination(rule: Rule) -> str:
    """Where a DNAT/REDIRECT/NETMAP rule sends the packet, as the rule says it."""
    try:
        words = shlex.split(rule.text)
    except ValueError:
        words = rule.text.split()
    option = _NEW_DESTINATION.get(rule.target, "")
    if option in words and words.index(option) + 1 < len(words):
        value = words[words.index(option) + 1]
        return f"the router's own port {value}" if rule.target == "REDIRECT" else value
    return "another destination" if rule.target != "REDIRECT" else "the router itself"
