"""A site as a picture: its segments, routers and hosts, drawn by Graphviz as inline SVG.

Each node is a box with its name, its role and its interfaces (name and
addresses) — light clients declared in bulk one box per run on a segment (their
first and last names and addresses: a thousand boxes say less, in 1.1 MiB of
SVG instead of 12 KiB); each segment an ellipse with its prefixes; a router's links carry
the interface's name. The policy router is drawn red and says `policy`. Links
are laid out from the inside towards the outside segment, the outside hosts
beyond it, so that the picture reads left to right as the traffic leaves.

The DOT source is built with the `graphviz` package (it quotes every name and
label) and drawn by Debian's `dot` (package graphviz).
"""

from __future__ import annotations

import re
import shutil
from collections import deque
from ipaddress import ip_interface
from typing import cast

import graphviz

from lab.errors import BadInput
from lab.model.site import Node, Site

FONT = "DejaVu Sans"
# the colours of the legend in the report's CSS: policy router, router, host, outside
# what each role plays, as the picture says it
_PLAYS = {"client": "client", "mx": "mail server", "remote-mx": "foreign mail server",
          "sink": "sink (records what arrives)", "relay": "Teredo relay, 6in4 end",
          "router": "router"}
_FILL = {"policy": "#fde2e2", "router": "#eef1f5", "client": "#ffffff", "server": "#ffffff",
         "outside": "#fff6e5"}


def require_dot() -> None:
    """BadInput unless Graphviz's `dot` can be run (checked before any lab boots)."""
    if shutil.which("dot") is None:
        raise BadInput("--html: Graphviz's `dot` is not installed (it draws the site): run "
                       "`make setup` (Debian package graphviz)")


def _label(*lines: str) -> str:
    """A plain (not HTML-like) label of several centred lines, each taken literally."""
    # (a NoHtml str: kept as it is, for graphviz to quote it as text, never as HTML)
    return cast(str, graphviz.nohtml("\\n".join(graphviz.escape(line) for line in lines)))


def _node_label(node: Node) -> str:
    what = _PLAYS.get(node.role, node.role) + (" · policy" if node.policy else "")
    lines = [node.name, what]
    for interface in node.interfaces:
        lines += [f"{interface.name}: {address}" for address in interface.addresses]
    return _label(*lines)


def _numbered(name: str) -> tuple[str, int] | None:
    found = re.fullmatch(r"(.*?)(\d+)", name)
    return (found.group(1), int(found.group(2))) if found else None


def _follows(last: Node, node: Node) -> bool:
    """Whether `node` is the light client after `last` in one range: the next name, on the
    same segments through interfaces of the same names, each address the next one."""
    before, after = _numbered(last.name), _numbered(node.name)
    if not (last.light and node.light and before and after) or (
            after != (before[0], before[1] + 1)):
        return False
    if [(i.name, i.segment, len(i.addresses)) for i in last.interfaces] != [
            (i.name, i.segment, len(i.addresses)) for i in node.interfaces]:
        return False
    pairs = [(ip_interface(a), ip_interface(b)) for here, there in
             zip(last.interfaces, node.interfaces, strict=True)
             for a, b in zip(here.addresses, there.addresses, strict=True)]
    return all(b.network == a.network and b.ip == a.ip + 1 for a, b in pairs)


def _runs(site: Site) -> list[tuple[Node, ...]]:
    """The site's nodes in order, each light client in the run of the range it is in
    (every other node a run of its own)."""
    runs: list[list[Node]] = []
    for node in site.nodes:
        if runs and _follows(runs[-1][-1], node):
            runs[-1].append(node)
        else:
            runs.append([node])
    return [tuple(run) for run in runs]


def _run_label(run: tuple[Node, ...]) -> str:
    first, last = run[0], run[-1]
    lines = [f"{first.name} … {last.name}", f"{len(run)} clients (light)"]
    for here, there in zip(first.interfaces, last.interfaces, strict=True):
        lines += [f"{here.name}: {a} … {ip_interface(b).ip}"
                  for a, b in zip(here.addresses, there.addresses, strict=True)]
    return _label(*lines)


def _segment(name: str) -> str:
    # "/" is in no site name: a segment and a node of one name stay two (and ":" would
    # name a port in DOT)
    return f"segment/{name}"


def _node(name: str) -> str:
    return f"node/{name}"


def _distances(site: Site) -> dict[str, int]:
    """How many links each segment and node is from the outside segment (by DOT name)."""
    links: dict[str, set[str]] = {}
    for node in site.nodes:
        for segment in node.segments:
            links.setdefault(_node(node.name), set()).add(_segment(segment))
            links.setdefault(_segment(segment), set()).add(_node(node.name))
    start = _segment(site.outside.name)
    far = {start: 0}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in sorted(links.get(here, ())):
            if there not in far:
                far[there] = far[here] + 1
                queue.append(there)
    return far


def source(site: Site, prefix: str) -> graphviz.Graph:
    """The site as a Graphviz graph; `prefix` starts every SVG id (one page, several sites)."""
    graph = graphviz.Graph(name=site.name, graph_attr={
        "rankdir": "LR", "id": prefix, "bgcolor": "transparent", "nodesep": "0.25",
        "ranksep": "0.7", "fontname": FONT})
    graph.attr("node", fontname=FONT, fontsize="10", shape="box", style="rounded,filled")
    graph.attr("edge", fontname=FONT, fontsize="9", color="#6b7280")
    for segment in site.segments:
        title = f"{segment.name} (outside)" if segment.outside else segment.name
        graph.node(_segment(segment.name), _label(title, *segment.prefixes), shape="ellipse",
                   style="filled,dashed" if segment.outside else "filled",
                   fillcolor="#fff6e5" if segment.outside else "#e8f0fe",
                   id=f"{prefix}-segment-{segment.name}")
    runs = _runs(site)
    for run in runs:
        node = run[0]
        fill = _FILL["policy"] if node.policy else _FILL[node.kind]
        strong = {"color": "#b91c1c", "penwidth": "2.5"} if node.policy else {}
        label = _run_label(run) if len(run) > 1 else _node_label(node)
        kind = "clients" if len(run) > 1 else "node"
        graph.node(_node(node.name), label, fillcolor=fill,
                   id=f"{prefix}-{kind}-{node.name}", **strong)
    far = _distances(site)
    for node in (run[0] for run in runs):
        for number, interface in enumerate(node.interfaces):
            here, there = _node(node.name), _segment(interface.segment)
            # tail before head: inside to outside, and the outside hosts beyond the outside
            outward = node.kind != "outside" and far.get(here, 0) > far.get(there, 0)
            tail, head = (here, there) if outward else (there, here)
            named = {"label": _label(interface.name)} if node.is_router else {}
            graph.edge(tail, head, id=f"{prefix}-link-{node.name}-{number}", **named)
    return graph


def svg(site: Site, prefix: str) -> str:
    """The site drawn as an `<svg>` element, ready to be put in a page as it is."""
    drawn = str(source(site, prefix).pipe(format="svg", encoding="utf-8"))
    # dot writes a whole document: the page wants the element alone (no prolog, DOCTYPE
    # or comments before it)
    start = re.search(r"<svg\b", drawn)
    if start is None:
        raise RuntimeError(f"dot drew no <svg> for site {site.name}")
    return drawn[start.start():]
