"""nftables traces read as rule hits: real `nft -a monitor trace` text of this kernel.

The fixtures were printed by nftables 1.0.6 in a lab router: nft-trace-native.txt
for the ruleset of tests/lab/test_nft_evidence.py plus a nat table (dnat,
masquerade) and a table `ip strict` (policy drop, reject); nft-trace-iptables.txt
for fixed-screened-block's iptables-nft rules, and a fail2ban-like rule added after
the monitor started (which the monitor prints as `unknown rule handle N`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from lab.engine.verify import source_ports
from lab.netfilter import trace
from lab.netfilter.counters import parse_save
from lab.netfilter.rules import Rule

FIXTURES = Path(__file__).parent / "fixtures"
NATIVE = trace.read("gw", (FIXTURES / "nft-trace-native.txt").read_text().splitlines())
IPTABLES = trace.read("gw", (FIXTURES / "nft-trace-iptables.txt").read_text().splitlines())


def _none(family: str, table: str, chain: str, handle: int) -> Rule | None:
    return None


def _of(packets: list[trace.PacketTrace], tag: int) -> list[trace.PacketTrace]:
    return [p for p in packets if p.carries(tag)]


def _hits(tag: int) -> list[tuple[str, str, int, str, str, str]]:
    return [(h.rule.table_family + " " + h.rule.table, h.rule.chain, h.rule.handle,
             h.rule.target, h.verdict, h.rule.source)
            for h in trace.hits(_of(NATIVE, tag), _none)]


def test_a_rule_line() -> None:
    parsed = trace.parse_line(
        'trace id 02d6ed02 inet filter forward rule iifname "eth0" meta nfproto ipv4 tcp '
        'dport 25 drop comment "p25:gw.nft:9" # handle 6 (verdict drop)')
    assert parsed == ("02d6ed02", trace.Step(
        "inet", "filter", "forward", "rule",
        'iifname "eth0" meta nfproto ipv4 tcp dport 25 drop comment "p25:gw.nft:9"', 6, "drop"))


def test_policy_packet_and_other_lines() -> None:
    assert trace.parse_line("trace id 7d3fb3e2 ip strict forward policy drop ") == (
        "7d3fb3e2", trace.Step("ip", "strict", "forward", "policy", "drop"))
    packet = trace.parse_line('trace id 94ffe01c ip nat post packet: oif "eth0" ip saddr '
                              "198.51.100.80 tcp sport 8080 tcp dport 21107")
    assert packet is not None and packet[1].kind == "packet"
    assert trace.parse_line("# Warning: table ip filter is managed by iptables-nft") is None


def test_each_packet_is_found_by_its_tag_never_by_another() -> None:
    syn = _of(NATIVE, 21100)
    assert len(syn) == 1 and "tcp sport 21100 tcp dport 25" in syn[0].headers
    # the SYN to 80 and the answer that a policy dropped on its way back
    assert len(_of(NATIVE, 21105)) == 2
    assert _of(NATIVE, 21999) == []


def test_an_accept_ends_only_its_base_chain_a_drop_in_the_next_decides() -> None:
    assert _hits(21100) == [("ip nat", "pre", 0, "ACCEPT", "accept", ""),  # its policy
                            ("inet filter", "early", 5, "ACCEPT", "accept", "gw.nft:5"),
                            ("inet filter", "forward", 6, "DROP", "drop", "gw.nft:9")]
    (decided,) = [h for h in trace.hits(_of(NATIVE, 21100), _none) if h.rule.drops]
    assert decided.rule.cite() == ('gw: nft inet filter forward handle 6: iifname "eth0" '
                                   "meta nfproto ipv4 tcp dport 25 drop")
    assert all(p.dropped_silently for p in _of(NATIVE, 21100))


def test_a_drop_in_a_jumped_to_chain() -> None:
    assert _hits(21101)[-2:] == [
        ("inet filter", "forward", 7, "clients", "jump clients", "gw.nft:10"),
        ("inet filter", "clients", 11, "DROP", "drop", "gw.nft:15")]


def test_a_set_of_ports() -> None:
    assert _hits(21102)[-1] == ("inet filter", "forward", 8, "DROP", "drop", "gw.nft:11")


def test_a_verdict_map_is_cited_with_the_verdict_it_gave_each_packet() -> None:
    assert _hits(21103)[-1] == ("inet filter", "forward", 10, "DROP", "drop", "gw.nft:12")
    mapped = [h for h in _hits(21104) if h[2] == 10]
    assert mapped == [("inet filter", "forward", 10, "ACCEPT", "accept", "gw.nft:12")]


def test_a_policy_drop_of_the_answer() -> None:
    hits = trace.hits(_of(NATIVE, 21105), _none)
    policies = [(h.rule.table, h.rule.target, h.packets) for h in hits if h.rule.is_policy
                and h.rule.table == "strict"]
    assert policies == [("strict", "DROP", 1)]
    (accepted,) = [h for h in hits if h.rule.table == "strict" and not h.rule.is_policy]
    assert accepted.rule.text == "tcp dport 80 accept"


def test_dnat_in_a_nat_chain_then_the_drop() -> None:
    hits = _hits(21106)
    assert hits[0] == ("ip nat", "pre", 3, "DNAT", "accept", "gw.nft:20")
    assert hits[-1] == ("inet filter", "forward", 6, "DROP", "drop", "gw.nft:9")


def test_reject_is_a_drop_that_answers() -> None:
    hits = trace.hits(_of(NATIVE, 21107), _none)
    (rejected,) = [h for h in hits if h.rule.drops]
    assert (rejected.rule.target, rejected.rule.text) == ("REJECT", "tcp dport 8080 reject "
                                                          "with tcp reset")
    assert not any(p.dropped_silently for p in _of(NATIVE, 21107))


def test_a_counter_in_a_native_rule_is_not_its_text() -> None:
    step = trace.Step("inet", "filter", "forward", "rule",
                      "tcp dport 25 counter packets 3 bytes 180 drop", 9, "drop")
    assert trace.native_rule("gw", step, 4).text == "tcp dport 25 counter drop"


# the iptables-nft rules of fixed-screened-block's gw, as iptables-save prints them
SAVE = (FIXTURES / "iptables-save-gw.txt").read_text()


def test_an_iptables_nft_rule_is_the_iptables_rule_at_its_handles_place() -> None:
    by_place = trace.xtables_rules({4: parse_save("gw", 4, SAVE)},
                                   {("ip", "filter", "FORWARD"): [2, 3, 4]})

    def lookup(family: str, table: str, chain: str, handle: int) -> Rule | None:
        return by_place.get((family, table, chain, handle))

    hits = trace.hits(_of(IPTABLES, 21111), lookup)
    assert [h.rule.reference() for h in hits] == [
        "gw: iptables -t filter FORWARD#2: -A FORWARD -s 203.0.113.0/24 -i eth0 -p tcp -m "
        "multiport --dports 25,465 -j LOG (from rules.sh:6)",
        "gw: iptables -t filter FORWARD#3: -A FORWARD -s 203.0.113.0/24 -i eth0 -p tcp -m "
        "multiport --dports 25,465 -j DROP (from rules.sh:7)"]
    # no rule matched: the chain's policy, as iptables-save names it
    (policy,) = trace.hits(_of(IPTABLES, 21112)[:1], lookup)
    assert policy.rule.cite() == "gw: iptables -t filter -P FORWARD ACCEPT (policy)"


def test_a_rule_newer_than_the_monitor_gets_its_text_from_the_kernel() -> None:
    asked: list[tuple[str, str, str, int]] = []

    def text_of(family: str, table: str, chain: str, handle: int) -> str:
        asked.append((family, table, chain, handle))
        return "ip saddr 203.0.113.10 counter packets 1 bytes 44 reject"

    hits = trace.hits(_of(IPTABLES, 21001), _none, text_of)
    assert asked == [("ip", "filter", "f2b-t", 14)]
    assert (hits[-1].rule.text, hits[-1].rule.target) == (
        "ip saddr 203.0.113.10 counter reject", "REJECT")


def test_the_traced_ports_are_the_probes_source_ports() -> None:
    ports = list(itertools.islice(source_ports(), 12001))
    assert ports[0] == trace.PROBE_PORTS.start
    assert max(ports) == trace.PROBE_PORTS.stop - 1 and ports[-1] == ports[0]


def test_a_trace_id_used_again_is_another_packet() -> None:
    # the kernel's trace id is the skb's: the SYN's answer may come in the same memory
    lines = [line for line in (FIXTURES / "nft-trace-native.txt").read_text().splitlines()
             if line.startswith(("trace id 1158ff35 ", "trace id 7d3fb3e2 "))]
    same = [line.replace("7d3fb3e2", "1158ff35") for line in lines]
    packets = trace.read("gw", same)
    assert [p.headers.split("tcp sport ")[1].split()[0] for p in packets] == ["21105", "80"]
    assert [p.dropped_silently for p in packets] == [False, True]


def test_the_monitor_line_that_removes_the_lab_table() -> None:
    # as `nft -a monitor` printed it for a `flush ruleset` on this kernel
    assert trace.removes_lab_table("delete table inet p25 # handle 1\n")
    assert not trace.removes_lab_table("delete table inet p250 # handle 1\n")
    assert not trace.removes_lab_table("delete table ip filter # handle 2\n")
    assert not trace.removes_lab_table("delete rule inet p25 out handle 2\n")
