"""A result's evidence item by item, in words: for the reports that show it whole.

The HTML report opens these under a matrix cell; JUnit puts them in a failure's
text. Each item is read from the evidence's fields (lab.model.evidence), never
from the `detail` sentence, which is given as it is, as one item of its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lab.model.results import Result
from probes.registry import PROBES


@dataclass(frozen=True)
class Item:
    """One piece of evidence: what it is, what it says, and the policy line it cites."""

    label: str
    text: str
    source: str = ""  # the policy file and line ('rules.sh:17') the item cites, if any


def items(r: Result) -> list[Item]:
    """Where the probe went, what the sender saw, the far side, the rules, the mail, the ban."""
    e = r.evidence
    found: list[Item] = []
    if e.addressed is not None:
        port = f" port {e.addressed.port}" if e.addressed.port else ""
        found.append(Item("sent to", f"{e.addressed.role} ({e.addressed.address}){port}"))
    if e.sender is not None:
        seen = e.sender.describe()
        if e.sender.banner:
            seen += f"; banner {e.sender.banner!r}"
        found.append(Item("sender saw", seen))
    if e.far_side:
        found += [Item("far side", f"{s.role} saw it at {s.dst}"
                                   + (f" port {s.dport}" if s.dport else "")
                                   + (f", carrying {s.inner}" if s.inner else ""))
                  for s in e.far_side]
    elif e.addressed is not None and PROBES[r.probe].far_side is not None:
        found.append(Item("far side", "no recorder saw it"))
    found += [Item("rule hit", f"{h.rule.cite()} ({h.packets} packet"
                               f"{'' if h.packets == 1 else 's'})", h.rule.source)
              for h in e.rule_hits]
    if r.rule:
        found.append(Item("deciding rule", r.rule, r.rule_source))
    if e.smtp is not None:
        found.append(Item("SMTP", e.smtp.describe() or "no dialogue"))
    if e.delivery is not None:
        stopped = e.delivery.stopped_by
        found.append(Item("delivery", e.delivery.describe(),
                          stopped.source if stopped is not None else ""))
    if e.guesses:
        codes = Counter(g.code for g in e.guesses)
        said = ", ".join(f"{n} answered {code}" if code else f"{n} without an answer"
                         for code, n in sorted(codes.items()))
        accepted = [g for g in e.guesses if g.code == 235]
        found.append(Item("guesses", f"{len(e.guesses)} ({said})" + (
            f"; accepted for {accepted[0].user}: trivial password no. {accepted[0].index + 1}"
            if accepted else "")))
    if e.ban is not None:
        found.append(Item("ban", e.ban.describe()))
    found.append(Item("in words", r.detail))
    found.append(Item("time", f"{r.wall_ms:.0f} ms in all; the sender waited "
                              f"{r.elapsed_ms:.0f} ms"))
    return found


def as_text(r: Result, without: tuple[str, ...] = ()) -> str:
    """The items as lines, `label: text (from FILE:LINE)`; `without` the items of those labels."""
    return "\n".join(f"{i.label}: {i.text}" + (f" (from {i.source})" if i.source else "")
                     for i in items(r) if i.label not in without)
