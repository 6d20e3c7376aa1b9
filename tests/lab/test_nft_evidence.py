"""Verdicts on native nftables rules, decided from the kernel's per-packet trace.

The ruleset is loaded with `nft -f -` in the router itself (the nft dialect of
policy files is not needed for this): each rule carries the lab's source tag
`p25:FILE:LINE` as its comment, as the lab tags the rules it loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import topologies
from lab.engine.probing import probe_once
from lab.model.results import Result
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from probes.requests import SynRequest
from tests.support import leftovers

pytestmark = pytest.mark.lab

RULESET = """\
table inet filter {
  set mail_ports { type inet_service; elements = { 587, 2525 }; }
  chain early {
    type filter hook forward priority -10; policy accept;
    iifname "eth0" tcp dport 25 accept comment "p25:gw.nft:5"
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "eth0" meta nfproto ipv4 tcp dport 25 drop comment "p25:gw.nft:9"
    iifname "eth0" tcp dport 465 jump clients comment "p25:gw.nft:10"
    iifname "eth0" tcp dport @mail_ports drop comment "p25:gw.nft:11"
    meta nfproto ipv6 tcp dport vmap { 25 : drop, 80 : accept } comment "p25:gw.nft:12"
  }
  chain clients {
    ip saddr 203.0.113.0/24 drop comment "p25:gw.nft:15"
  }
}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lifecycle.opened() as run:
        with Lab(topologies.load("screened-host"), run) as booted:
            status, _, err = booted.exec("gw", ["nft", "-f", "-"], stdin=RULESET)
            assert status == 0, err
            booted.start_agents(["client1", "client2"])
            yield booted
        prefix = run.prefix
    assert leftovers(prefix) == []


def _probe(lab: Lab, probe: str, family: int, sport: int) -> Result:
    return probe_once(lab, Expectation("client1", "remote-mx", probe, family, Verdict.BLOCKED),
                      sport)


def _handle(lab: Lab, source: str) -> int:
    """The kernel's handle of the rule tagged with `source` (as `nft -a` lists it)."""
    _, listed, _ = lab.exec("gw", ["nft", "-a", "list", "table", "inet", "filter"])
    found = re.search(rf'comment "p25:{re.escape(source)}" # handle (\d+)', listed)
    assert found is not None, listed
    return int(found.group(1))


def _deciding(result: Result) -> tuple[str, str]:
    (drop,) = [h for h in result.evidence.rule_hits if h.rule.drops]
    return drop.rule.cite(), drop.rule.source


def test_an_accept_in_one_base_chain_does_not_end_the_hook(lab: Lab) -> None:
    result = _probe(lab, "smtp", 4, 21001)
    assert result.observed == Verdict.BLOCKED, result.detail
    handle = _handle(lab, "gw.nft:9")
    assert _deciding(result) == (
        f'gw: nft inet filter forward handle {handle}: iifname "eth0" meta nfproto ipv4 '
        'tcp dport 25 drop', "gw.nft:9")
    assert result.rule == _deciding(result)[0]
    # the accept of the earlier base chain is on record too, with the kernel's verdict
    (early,) = [h for h in result.evidence.rule_hits if h.rule.chain == "early"]
    assert (early.rule.target, early.verdict, early.rule.source) == ("ACCEPT", "accept",
                                                                     "gw.nft:5")


def test_a_drop_in_a_jumped_to_chain(lab: Lab) -> None:
    result = _probe(lab, "smtps", 4, 21002)
    assert result.observed == Verdict.BLOCKED, result.detail
    assert _deciding(result) == (
        f"gw: nft inet filter clients handle {_handle(lab, 'gw.nft:15')}: "
        "ip saddr 203.0.113.0/24 drop", "gw.nft:15")
    jumps = [h.rule.target for h in result.evidence.rule_hits if h.rule.chain == "forward"]
    assert jumps == ["clients"]


def test_a_set_of_ports(lab: Lab) -> None:
    result = _probe(lab, "submission", 4, 21003)
    assert result.observed == Verdict.BLOCKED, result.detail
    assert _deciding(result) == (
        f"gw: nft inet filter forward handle {_handle(lab, 'gw.nft:11')}: "
        'iifname "eth0" tcp dport @mail_ports drop', "gw.nft:11")


def test_a_verdict_map_gives_each_packet_its_verdict(lab: Lab) -> None:
    blocked = _probe(lab, "smtp", 6, 21004)
    assert blocked.observed == Verdict.BLOCKED, blocked.detail
    handle = _handle(lab, "gw.nft:12")
    text = "meta nfproto ipv6 tcp dport vmap { 25 : drop, 80 : accept }"
    assert _deciding(blocked) == (f"gw: nft inet filter forward handle {handle}: {text}",
                                  "gw.nft:12")
    allowed = _probe(lab, "web", 6, 21005)
    assert allowed.observed == Verdict.ALLOWED, allowed.detail
    (mapped,) = [h for h in allowed.evidence.rule_hits if h.rule.handle == handle]
    assert (mapped.verdict, mapped.rule.target) == ("accept", "ACCEPT")


def test_no_rule_met_is_no_hit(lab: Lab) -> None:
    result = _probe(lab, "web", 4, 21006)
    assert result.observed == Verdict.ALLOWED, result.detail
    # only base chains' ends: both policies accept
    assert {(h.rule.chain, h.rule.is_policy, h.rule.target)
            for h in result.evidence.rule_hits} == {("early", True, "ACCEPT"),
                                                   ("forward", True, "ACCEPT")}


def test_overlapping_rounds_each_see_only_their_own_packets(lab: Lab) -> None:
    # two probes at once: each round's window holds the other's packets too, and
    # its tag, never its timing, tells them apart
    web, smtp = lab.packet_evidence(21301), lab.packet_evidence(21302)
    smtp.begin()
    lab.agent("client2").ask(SynRequest(4, "198.51.100.25", 25, 21302, 0.05), timeout=5)
    web.begin()  # the smtp round is still open: its packets stay its own
    lab.agent("client1").ask(SynRequest(4, "198.51.100.80", 80, 21301, 0.05), timeout=5)
    assert not web.dropped_silently() and smtp.dropped_silently()
    assert not any(h.rule.drops for h in web.hits())
    (drop,) = [h for h in smtp.hits() if h.rule.drops]
    assert (drop.rule.handle, drop.rule.source, drop.packets) == (_handle(lab, "gw.nft:9"),
                                                                  "gw.nft:9", 1)


def test_a_flushed_ruleset_gets_the_lab_table_back_before_the_next_probe(lab: Lab) -> None:
    assert _probe(lab, "smtps", 4, 21401).observed == Verdict.BLOCKED  # tracing runs
    status, _, err = lab.exec("gw", ["nft", "-f", "-"], stdin="flush ruleset\n" + RULESET)
    assert status == 0, err
    result = _probe(lab, "smtps", 4, 21402)
    assert result.observed == Verdict.BLOCKED, result.detail
    assert _deciding(result)[1] == "gw.nft:15"
    _, tables, _ = lab.exec("gw", ["nft", "list", "tables"])
    assert "table inet p25" in tables
