"""The site's diagram: drawn by Graphviz's dot from the site, every node, address and link."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import topologies
from lab.errors import BadInput
from lab.html_report import diagram
from lab.model import site_file
from lab.model.site import Interface, Node
from tests.html_dom import Element, parse
from tests.support import PROJECT


def _drawn(name: str, prefix: str = "site-0") -> Element:
    return parse(diagram.svg(topologies.load(name), prefix))


def _texts(group: Element) -> list[str]:
    return [t.text() for t in group.all("text")]


@pytest.mark.parametrize("name", ["screened-host", "dmz"])
def test_every_node_segment_interface_and_address_is_drawn(name: str) -> None:
    site = topologies.load(name)
    svg = _drawn(name)
    (root,) = svg.all("svg")
    assert root.children[0] != "<?xml"  # the element alone, for a page
    for node in site.nodes:
        group = svg.by_id(f"site-0-node-{node.name}")
        texts = _texts(group)
        assert texts[0] == node.name
        for interface in node.interfaces:
            for address in interface.addresses:
                assert f"{interface.name}: {address}" in texts
    for segment in site.segments:
        texts = _texts(svg.by_id(f"site-0-segment-{segment.name}"))
        assert texts[0] == (f"{segment.name} (outside)" if segment.outside else segment.name)
        assert texts[1:] == list(segment.prefixes)
    links = [e for e in svg.walk() if e.attrs.get("id", "").startswith("site-0-link-")]
    assert len(links) == sum(len(n.interfaces) for n in site.nodes)
    # a router's link says which of its interfaces it is
    routers = [n for n in site.nodes if n.is_router]
    for router in routers:
        for number, interface in enumerate(router.interfaces):
            assert _texts(svg.by_id(f"site-0-link-{router.name}-{number}")) == [interface.name]


def test_the_policy_router_is_marked() -> None:
    svg = _drawn("dmz")
    inner, outer = svg.by_id("site-0-node-inner"), svg.by_id("site-0-node-outer")
    assert _texts(inner)[1] == "router · policy" and _texts(outer)[1] == "router"
    (inner_shape,) = inner.all("path")
    (outer_shape,) = outer.all("path")
    assert inner_shape.attrs["stroke"] == "#b91c1c" and inner_shape.attrs["stroke-width"] == "2.5"
    assert outer_shape.attrs["stroke"] == "black"


def test_the_drawing_reads_from_the_inside_to_the_outside() -> None:
    svg = _drawn("dmz")

    def x(anchor: str) -> float:
        return float(svg.by_id(anchor).all("text")[0].attrs["x"])

    order = ["node-client1", "segment-lan", "node-inner", "segment-dmz", "node-outer",
             "segment-wan", "node-remote-mx"]
    places = [x(f"site-0-{a}") for a in order]
    assert places == sorted(places), dict(zip(order, places, strict=True))


def test_names_are_drawn_as_text_never_as_dot_or_html() -> None:
    site = topologies.load("screened-host")
    odd = replace(site, description="x", nodes=(*site.nodes, Node(
        "odd", "sink", (Interface('<b>"e\\n0</b>', "wan", ("198.51.100.99/24",)),))))
    svg = parse(diagram.svg(odd, "p"))
    assert _texts(svg.by_id("p-node-odd")) == ["odd", "sink (records what arrives)",
                                               '<b>"e\\n0</b>: 198.51.100.99/24']


def test_without_dot_the_html_report_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BadInput, match=r"^--html: Graphviz's `dot` is not installed .*"
                                       r"\(Debian package graphviz\)$"):
        diagram.require_dot()


def test_light_clients_are_drawn_one_box_per_run_on_their_segment() -> None:
    # examples/spambot-epidemic: 1000 light clients on three segments, and mx among them
    site = site_file.load(PROJECT / "examples" / "spambot-epidemic" / "campus.yaml")
    assert len(site.light_nodes) == 1000
    svg = parse(diagram.svg(site, "site-0"))
    boxes = {e.attrs["id"]: _texts(e) for e in svg.walk()
             if e.attrs.get("id", "").startswith(("site-0-node-", "site-0-clients-"))}
    assert boxes["site-0-clients-client1"] == [
        "client1 … client200", "200 clients (light)",
        "eth0: 203.0.113.30/24 … 203.0.113.229",
        "eth0: 2001:db8:ca:1::1000/64 … 2001:db8:ca:1::10c7"]
    assert boxes["site-0-clients-client201"][:3] == [
        "client201 … client450", "250 clients (light)", "eth0: 192.0.2.2/24 … 192.0.2.251"]
    assert boxes["site-0-clients-client451"] == [
        "client451 … client1000", "550 clients (light)",
        "eth0: 2001:db8:ca:3::1000/64 … 2001:db8:ca:3::1225"]
    # every other node its own box; one link per run
    assert {i for i in boxes if i.startswith("site-0-node-")} == {
        f"site-0-node-{n.name}" for n in site.nodes if not n.light}
    links = [e for e in svg.walk() if e.attrs.get("id", "").startswith("site-0-link-")]
    assert len(links) == 3 + sum(len(n.interfaces) for n in site.nodes if not n.light)


def test_two_ranges_on_one_segment_are_two_boxes_each_saying_what_it_holds(
        tmp_path: Path) -> None:
    # back to back on one segment: a dual-stack range, an IPv4-only one, and one after a gap
    campus = (PROJECT / "examples" / "spambot-epidemic" / "campus.yaml").read_text()
    head = campus.split("\nclients:", 1)[0]
    (tmp_path / "site.yaml").write_text(head + """
clients:
  - {segment: staff, count: 3, addresses: [203.0.113.30/24, "2001:db8:ca:1::1000/64"]}
  - {segment: staff, count: 2, addresses: [203.0.113.33/24]}
  - {segment: staff, count: 2, first: 10, addresses: [203.0.113.35/24]}
""")
    site = site_file.load(tmp_path / "site.yaml")
    svg = parse(diagram.svg(site, "site-0"))
    boxes = {e.attrs["id"]: _texts(e) for e in svg.walk()
             if e.attrs.get("id", "").startswith("site-0-clients-")}
    assert boxes == {
        "site-0-clients-client1": ["client1 … client3", "3 clients (light)",
                                   "eth0: 203.0.113.30/24 … 203.0.113.32",
                                   "eth0: 2001:db8:ca:1::1000/64 … 2001:db8:ca:1::1002"],
        "site-0-clients-client4": ["client4 … client5", "2 clients (light)",
                                   "eth0: 203.0.113.33/24 … 203.0.113.34"],
        "site-0-clients-client10": ["client10 … client11", "2 clients (light)",
                                    "eth0: 203.0.113.35/24 … 203.0.113.36"]}
