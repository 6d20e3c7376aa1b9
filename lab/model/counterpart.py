"""A scenario's node names on another site: each node's counterpart there, by what it is.

A scenario speaks of its own topology's nodes (client1, mx, gw, remote-mx). On
another site (`verify --site FILE`) each stands for the node that is the same
thing there: clientN for the site's N-th client, the N-th router carrying the
policy (gw, inner) for the site's N-th, the N-th other router (outer) for its
N-th other router, and mx, remote-mx, sink, relay for its N-th host of that
role. (`clients`, every client, is the site's every client: the scenario's
loader says so.) Node names of the site do not matter, only what each node is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.errors import BadInput
from lab.model.site import Node, Site

POLICY_ROUTER, OTHER_ROUTER = "policy router", "router"
_WHAT = {
    "client": ("client", "clients", "add a host with `role: client`"),
    "mx": ("mail server (role mx)", "mail servers", "add a host with `role: mx`"),
    POLICY_ROUTER: ("router carrying the policy", "routers carrying the policy",
                    "add `policy: true` to one more router"),
    OTHER_ROUTER: ("router without the policy", "routers without the policy",
                   "add a router"),
}
_OUTSIDE_FIX = ("add a host with `role: {role}` on the outside segment, or give none of "
                "remote-mx, sink and relay (then the lab places all three)")


def kind(node: Node) -> str:
    """What a node is, as counterparts are matched: its role, or which kind of router."""
    if node.is_router:
        return POLICY_ROUTER if node.policy else OTHER_ROUTER
    return node.role


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        number % 10, "th")
    return f"{number}{suffix}"


@dataclass(frozen=True)
class Counterparts:
    """The nodes of `own` (a scenario's topology) as the nodes of `site` (read from `path`)."""

    own: Site
    site: Site
    path: Path

    def of(self, name: str, named_in: str) -> str:
        """The counterpart of `own`'s node `name`; BadInput naming the site file if none.

        `named_in` says where the scenario names it (the file and item), for the message.
        """
        what = kind(self.own.role(name))
        index = [n.name for n in self.own.nodes if kind(n) == what].index(name)
        theirs = [n.name for n in self.site.nodes if kind(n) == what]
        if index < len(theirs):
            return theirs[index]
        one, many, fix = _WHAT.get(what, (f"{what} host", f"{what} hosts",
                                          _OUTSIDE_FIX.format(role=what)))
        has = (f"{len(theirs)} {one if len(theirs) == 1 else many} ({', '.join(theirs)})"
               if theirs else f"no {one}")
        raise BadInput(f"{self.path}: site {self.site.name} lacks a counterpart of {name} "
                       f"(the {ordinal(index + 1)} {one} of {self.own.name}), which {named_in} "
                       f"names: it has {has}; {fix}")
