"""Per-rule packet counters of a router, read from `iptables-save -c`, and their deltas.

The rule that a probe's packet hit is the one whose counter moved while the
probe ran; that is how a verdict names its deciding rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.netfilter import save
from lab.netfilter.rules import Rule


def parse_save(router: str, family: int, text: str) -> list[Rule]:
    """Rules and built-in chain policies of `iptables-save -c` output, in its order."""
    return save.read(text, family, router).with_policies(router)


@dataclass(frozen=True)
class Hit:
    """A rule a probe's packets met: by its counter's delta, or by the kernel's trace.

    `verdict` is the kernel's verdict for the packet where a trace says it
    (accept, drop, jump X, …; a verdict map's rule is cited with it).
    """

    rule: Rule
    packets: int
    verdict: str = ""


def hits(before: list[Rule], after: list[Rule]) -> list[Hit]:
    """Rules whose counters grew between two snapshots, in table/chain order."""
    old = {r.key: r.packets for r in before}
    return [Hit(r, r.packets - old.get(r.key, 0)) for r in after
            if r.packets > old.get(r.key, 0)]
