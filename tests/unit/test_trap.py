"""The trap's pieces that need no namespace: configuration, ban rules, verdicts, reports."""

from __future__ import annotations

import configparser
import json
import time
from pathlib import Path

import pytest

from lab.evidence.bans import BanWatcher, bans_in, nft_bans_in
from lab.evidence.firewall_log import logged_at
from lab.model.evidence import Ban, Observation, Sighting
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict, decide
from lab.netfilter.counters import Hit, parse_save
from lab.netfilter.rules import Rule
from lab.report import as_json, matrix
from lab.services.trap import ETC, prepare
from probes.guessing import TRIVIAL_PASSWORDS, NotAuthorised, check_target

SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:f2b-port25-trap - [0:0]
[3:180] -A FORWARD -j f2b-port25-trap
[1:60] -A FORWARD -s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465 -j DROP
[2:120] -A f2b-port25-trap -s 203.0.113.11/32 -j REJECT --reject-with icmp-port-unreachable
[1:60] -A f2b-port25-trap -j RETURN
COMMIT
"""


def test_a_ban_is_a_drop_in_an_f2b_chain_with_the_rules_that_reach_it() -> None:
    rules = parse_save("gw", 4, SAVE)
    found = bans_in(rules)
    assert list(found) == ["203.0.113.11"]
    rule, hooked = found["203.0.113.11"]
    assert rule.chain == "f2b-port25-trap" and rule.is_ban
    assert hooked == ("gw: iptables -t filter FORWARD#1: -A FORWARD -j f2b-port25-trap",)
    # the policy's own DROP and fail2ban's RETURN are not bans
    assert [r.text for r in rules if r.is_ban] == [rule.text]


# `nft -j list ruleset` and `nft list chain` of a gateway with an iptables-nft rule
# and fail2ban's stock nftables-multiport action, one ban per family (nft 1.0.6)
NFT_JSON = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, '
    '{"table": {"family": "ip", "name": "filter", "handle": 1}}, '
    '{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, '
    '"type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, '
    '{"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 2, "expr": ['
    '{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, '
    '{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, '
    '"right": "203.0.113.11"}}, {"drop": null}]}}, '
    '{"table": {"family": "inet", "name": "f2b-table", "handle": 2}}, '
    '{"set": {"family": "inet", "name": "addr-set-port25-trap", "table": "f2b-table", '
    '"type": "ipv4_addr", "handle": 2, "elem": ["203.0.113.11"]}}, '
    '{"set": {"family": "inet", "name": "addr6-set-port25-trap", "table": "f2b-table", '
    '"type": "ipv6_addr", "handle": 5, "elem": ["2001:db8:b01a:70da::11"]}}, '
    '{"chain": {"family": "inet", "table": "f2b-table", "name": "f2b-chain", "handle": 1, '
    '"type": "filter", "hook": "input", "prio": -1, "policy": "accept"}}, '
    '{"rule": {"family": "inet", "table": "f2b-table", "chain": "f2b-chain", "handle": 4, '
    '"expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, '
    '"right": {"set": [25, 465]}}}, {"match": {"op": "==", "left": {"payload": '
    '{"protocol": "ip", "field": "saddr"}}, "right": "@addr-set-port25-trap"}}, '
    '{"reject": {"type": "icmp", "expr": "port-unreachable"}}]}}, '
    '{"rule": {"family": "inet", "table": "f2b-table", "chain": "f2b-chain", "handle": 7, '
    '"expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, '
    '"right": {"set": [25, 465]}}}, {"match": {"op": "==", "left": {"payload": '
    '{"protocol": "ip6", "field": "saddr"}}, "right": "@addr6-set-port25-trap"}}, '
    '{"reject": {"type": "icmpv6", "expr": "port-unreachable"}}]}}]}')
NFT_CHAIN = "\n".join([
    "table inet f2b-table {",
    "\tchain f2b-chain {",
    "\t\ttype filter hook input priority filter - 1; policy accept;",
    "\t\ttcp dport { 25, 465 } ip saddr @addr-set-port25-trap reject with icmp "
    "port-unreachable",
    "\t\ttcp dport { 25, 465 } ip6 saddr @addr6-set-port25-trap reject with icmpv6 "
    "port-unreachable",
    "\t}", "}", ""])


def test_an_nftables_ban_is_an_element_of_fail2bans_set_used_by_a_reject() -> None:
    found = nft_bans_in("gw", NFT_JSON)
    assert [(b.family, b.address, b.set) for b in found] == [
        (4, "203.0.113.11", "addr-set-port25-trap"),
        (6, "2001:db8:b01a:70da::11", "addr6-set-port25-trap")]
    for ban, handle in zip(found, (4, 7), strict=True):
        rule = ban.rule
        assert (rule.table_family, rule.table, rule.chain, rule.handle) == (
            "inet", "f2b-table", "f2b-chain", handle)
        assert rule.target == "REJECT" and rule.is_ban and rule.native
        assert ban.hooked == "gw: nft inet f2b-table f2b-chain: type filter hook input priority -1"
    # the iptables-nft rule dropping the same address is the policy's, not a ban;
    # an empty set, a ruleset without fail2ban and what is no JSON ban nobody
    assert nft_bans_in("gw", NFT_JSON.replace('["203.0.113.11"]', "[]"))[0].family == 6
    assert nft_bans_in("gw", '{"nftables": [{"metainfo": {}}]}') == []
    assert nft_bans_in("gw", "") == nft_bans_in("gw", "not json") == []


def test_a_set_with_timeouts_lists_its_elements_as_objects() -> None:
    timed = NFT_JSON.replace('["203.0.113.11"]',
                             '[{"elem": {"val": "203.0.113.11", "timeout": 8, "expires": 7}}]')
    assert [b.address for b in nft_bans_in("gw", timed)] == [
        "203.0.113.11", "2001:db8:b01a:70da::11"]


def test_the_watcher_sees_nftables_bans_with_their_rule_text() -> None:
    looks: list[str] = []

    def run(node: str, argv: list[str]) -> tuple[int, str, str]:
        looks.append(" ".join(argv))
        if argv[:3] == ["nft", "-j", "list"]:
            return 0, NFT_JSON, ""
        if argv[:3] == ["nft", "list", "chain"]:
            return 0, NFT_CHAIN, ""
        return 0, "", ""

    with BanWatcher(["gw"], run) as watcher:
        ban = watcher.wait_banned("2001:db8:b01a:70da::11", 1.0)
        deadline = time.monotonic() + 2
        while looks.count("nft -j list ruleset") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ban is not None and ban.family == 6 and ban.nft_set == "addr6-set-port25-trap"
    assert ban.jail == "port25-trap" and ban.chain == "f2b-chain"
    assert ban.rule == ("gw: nft inet f2b-table f2b-chain handle 7: tcp dport { 25, 465 } "
                        "ip6 saddr @addr6-set-port25-trap reject with icmpv6 port-unreachable")
    assert ban.hooked == ("gw: nft inet f2b-table f2b-chain: type filter hook input priority -1",)
    assert "reached from: gw: nft inet f2b-table f2b-chain: type filter hook input" in (
        ban.describe())
    # each rule's text is read once, not at every look
    assert looks.count("nft list chain inet f2b-table f2b-chain") == 1
    assert looks.count("nft -j list ruleset") > 1


def test_a_ban_rule_added_later_to_the_same_chain_gets_its_text_too() -> None:
    # fail2ban adds the IPv6 set and rule at the first IPv6 ban, after the IPv4 one
    v6_rule = NFT_JSON.index(', {"rule": {"family": "inet", "table": "f2b-table", '
                             '"chain": "f2b-chain", "handle": 7')
    only_v4 = NFT_JSON[:v6_rule] + "]}"
    listings = [only_v4] * 3

    def run(node: str, argv: list[str]) -> tuple[int, str, str]:
        if argv[:3] == ["nft", "-j", "list"]:
            return 0, listings.pop(0) if listings else NFT_JSON, ""
        if argv[:3] == ["nft", "list", "chain"]:
            return 0, NFT_CHAIN, ""
        return 0, "", ""

    with BanWatcher(["gw"], run) as watcher:
        ban = watcher.wait_banned("2001:db8:b01a:70da::11", 2.0)
    assert ban is not None
    assert ban.rule.endswith("ip6 saddr @addr6-set-port25-trap reject with icmpv6 "
                             "port-unreachable")


def test_a_ban_counts_its_reaction_and_duration() -> None:
    ban = Ban("gw", 4, "203.0.113.11", "f2b-port25-trap", "cite", (), seen_at=100.5)
    assert ban.jail == "port25-trap"
    assert ban.reaction_ms is None and ban.lifted_after_s is None
    ban = Ban("gw", 4, "203.0.113.11", "f2b-port25-trap", "cite", (), seen_at=100.5,
              lifted_at=108.56, fired_at=100.125)
    assert ban.reaction_ms == 375.0 and ban.lifted_after_s == 8.1


def test_the_watcher_records_a_ban_and_its_end() -> None:
    rulesets = [SAVE, SAVE, SAVE.replace("[2:120] -A f2b-port25-trap -s 203.0.113.11/32 "
                                         "-j REJECT --reject-with icmp-port-unreachable\n", "")]
    looks: list[str] = []

    def run(node: str, argv: list[str]) -> tuple[int, str, str]:
        looks.append(f"{node} {' '.join(argv)}")
        text = rulesets[0] if argv[0] == "iptables-save" else ""
        if argv[0] == "ip6tables-save" and len(rulesets) > 1:
            rulesets.pop(0)
        return 0, text, ""

    with BanWatcher(["gw"], run) as watcher:
        ban = watcher.wait_banned("203.0.113.11", 1.0)
        assert ban is not None and ban.node == "gw" and ban.family == 4
        lifted = watcher.wait_lifted("203.0.113.11", 2.0)
    assert lifted is not None and lifted.lifted_at is not None
    assert watcher.active("203.0.113.11") is None
    assert looks[:2] == ["gw iptables-save -c", "gw ip6tables-save -c"]
    watcher.explain("203.0.113.11", lifted.seen_at - 0.25, "its firewall log line")
    (only,) = watcher.bans()
    assert only.reaction_ms == 250.0 and only.fired_by == "its firewall log line"


def test_what_fired_a_ban_is_kept_in_words_and_as_fields() -> None:
    def run(node: str, argv: list[str]) -> tuple[int, str, str]:
        return 0, SAVE if argv[0] == "iptables-save" else "", ""

    with BanWatcher(["gw"], run) as watcher:
        ban = watcher.wait_banned("203.0.113.11", 1.0)
        assert ban is not None
        watcher.explain("203.0.113.11", ban.seen_at - 0.5, "refused guess", 3)
        watcher.explain("203.0.113.11", ban.seen_at - 0.1, "a later event")  # the first counts
    (only,) = watcher.bans()
    assert (only.fired_by, only.fired_event, only.fired_no) == (
        "refused guess no. 3", "refused guess", 3)
    assert only.reaction_ms == 500.0


def test_private_configuration_without_debians_jails(tmp_path: Path) -> None:
    jail = tmp_path / "scenario" / "jail.local"
    jail.parent.mkdir()
    jail.write_text("[port25-trap]\nenabled = true\n")
    (jail.parent / "filter.d").mkdir()
    (jail.parent / "filter.d" / "mine.conf").write_text("[Definition]\nfailregex = x <HOST>\n")
    inst = prepare("gw", tmp_path / "run", [jail], {"firewall_log": "/run/x/firewall.log"})
    jails = sorted(p.name for p in (inst.conf / "jail.d").iterdir())
    assert jails == ["00-port25lab.conf", "01-jail.local"]
    assert (inst.conf / "filter.d" / "mine.conf").is_file()
    assert (inst.conf / "filter.d" / "port25lab-firewall.conf").is_file()
    assert (inst.conf / "filter.d" / "postfix.conf").is_file()  # the stock filters
    local = configparser.ConfigParser()
    local.read(inst.conf / "fail2ban.local")
    assert {k: local["Definition"][k] for k in ("socket", "pidfile", "dbfile", "logtarget")} == {
        "socket": str(inst.socket), "pidfile": str(inst.pidfile),
        "dbfile": str(tmp_path / "run" / "fail2ban.sqlite3"), "logtarget": str(inst.log)}
    assert "firewall_log = /run/x/firewall.log" in (
        inst.conf / "jail.d" / "00-port25lab.conf").read_text()
    assert inst.server_argv()[:3] == ["fail2ban-server", "-c", str(inst.conf)]
    assert inst.client_argv("status") == ["fail2ban-client", "-c", str(inst.conf), "-s",
                                          str(inst.socket), "status"]
    assert ETC.is_dir()  # untouched: only read


def test_the_lab_filter_matches_a_kernel_log_line() -> None:
    import re

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(Path("lab/services/fail2ban/filter.d/port25lab-firewall.conf"))
    regex = conf["Definition"]["failregex"].replace("<HOST>", r"(?P<host>\S+)")
    line = ("Nov 28 06:55:45 vm  IN=eth0 OUT=eth1 MAC=4e:90 SRC=2001:db8:b01a:70da::11 "
            "DST=2001:db8:ffff:1::25 LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=1 PROTO=TCP SPT=34356 "
            "DPT=25 SEQ=9 ACK=0 WINDOW=64800 SYN URGP=0 MARK=0x0 ")
    found = re.search(regex, line)
    assert found is not None and found["host"] == "2001:db8:b01a:70da::11"
    for other in ("DPT=587 ", "DPT=2525 "):
        assert re.search(regex, line.replace("DPT=25 ", other)) is None
    assert re.search(regex, line.replace("DPT=25 ", "DPT=465 ")) is not None


def test_logged_at_finds_the_nth_line_in_a_window(tmp_path: Path) -> None:
    log = tmp_path / "firewall.jsonl"
    lines = [{"src_ip": "203.0.113.11", "oob.time.sec": 100, "oob.time.usec": u}
             for u in (100000, 200000, 300000)]
    lines.append({"src_ip": "203.0.113.10", "oob.time.sec": 100, "oob.time.usec": 150000})
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert logged_at([log], "203.0.113.11", since=0, until=101) == 100.1
    assert logged_at([log], "203.0.113.11", since=0, until=101, nth=2) == 100.2
    assert logged_at([log], "203.0.113.11", since=100.15, until=101, nth=5) == 100.3
    assert logged_at([log], "203.0.113.11", since=100.3, until=101) is None
    assert logged_at([tmp_path / "missing"], "203.0.113.11", since=0, until=101) is None


BAN_RULE = Rule("gw", 4, "filter", "f2b-port25-trap", 1,
                "-s 203.0.113.11/32 -j REJECT --reject-with icmp-port-unreachable", "REJECT", 2)
JUMP = Rule("gw", 4, "filter", "FORWARD", 1, "-j f2b-port25-trap", "f2b-port25-trap", 9)
DROP = Rule("gw", 4, "filter", "FORWARD", 3, "-i eth0 -p tcp --dport 25 -j DROP", "DROP", 6)


def test_banned_when_a_ban_rule_rejected_the_packet() -> None:
    seen = Observation(sport=20001, reply="icmp", source="203.0.113.1",
                       icmp="unreachable/code 3")
    d = decide("sink", "198.51.100.80", 80, seen, [], [Hit(JUMP, 1), Hit(BAN_RULE, 1)])
    assert d.verdict == Verdict.BANNED
    assert d.rule == BAN_RULE.cite()
    assert d.detail.startswith("rejected by a ban before sink:80")
    # a ban decides even where an ordinary DROP also counted (the ban comes first)
    d = decide("sink", "198.51.100.80", 80, seen, [], [Hit(DROP, 1), Hit(BAN_RULE, 1)])
    assert d.verdict == Verdict.BANNED
    # a ban on the target itself: the SYN arrived, the answer was the ban's
    at_mx = [Sighting("mx", "203.0.113.25", 587)]
    d = decide("mx", "203.0.113.25", 587, seen, at_mx, [Hit(BAN_RULE, 1)])
    assert d.verdict == Verdict.BANNED and "mx:587 saw it" in d.detail
    # without a ban rule, the same silence is an ordinary block
    d = decide("sink", "198.51.100.80", 80, seen, [], [Hit(DROP, 1)])
    assert d.verdict == Verdict.BLOCKED


def test_a_ban_without_hits_decides_nothing() -> None:
    """A ban in INPUT does not see forwarded packets: the verdict is what happened."""
    seen = Observation(sport=20001, reply="rst", source="198.51.100.80", source_port=80)
    d = decide("sink", "198.51.100.80", 80, seen, [Sighting("sink", "198.51.100.80", 80)], [])
    assert d.verdict == Verdict.ALLOWED


def test_guessing_refuses_targets_outside_the_lab() -> None:
    for address in ("203.0.113.25", "198.51.100.25", "192.0.2.25", "2001:db8:b01a:70da::25"):
        check_target(address)
    for address in ("8.8.8.8", "10.0.0.1", "2001:4860::8888", "127.0.0.1"):
        with pytest.raises(NotAuthorised, match=f"refusing to guess passwords on {address}"):
            check_target(address)
    check_target("10.0.0.1", authorised=("10.0.0.1",))
    assert len(TRIVIAL_PASSWORDS) == len(set(TRIVIAL_PASSWORDS)) == 10


def test_reports_show_bans_and_weak_accounts() -> None:
    ban = Ban("gw", 4, "203.0.113.11", "f2b-port25-trap", BAN_RULE.cite(), (JUMP.cite(),),
              seen_at=10.4, lifted_at=18.5, fired_at=10.0, fired_by="its firewall log line")
    results = (
        Result("client2", "sink", "web", 4, Verdict.BANNED, Verdict.BANNED, BAN_RULE.cite(),
               "banned", 1.0, after="ban"),
        Result("client2", "sink", "web", 4, Verdict.ALLOWED, Verdict.ALLOWED, None, "ok", 1.0),
        Result("remote-mx", "mx", "guessing", 4, Verdict.ALLOWED, Verdict.ALLOWED, None,
               "mx:587 accepted a guess", 1.0, weak_account="carol"),
    )
    s = ScenarioResult("fixed-trap", "screened-host", results=results, bans=(ban,),
                       owners={"203.0.113.11": "client2"})
    text = matrix(s)
    assert "web (after ban)" in text and "\n   client2    sink    web " in text
    assert ("client2 (203.0.113.11) banned on gw in f2b-port25-trap, 400 ms after its "
            "firewall log line, lifted after 8.1 s") in text
    assert "reached from gw: iptables -t filter FORWARD#1: -A FORWARD -j f2b-port25-trap" in text
    assert "weak accounts (a trivial password was accepted): carol" in text
    assert "password guessing:\n     remote-mx → mx guessing/v4: mx:587 accepted" in text
    (out,) = as_json([s])["scenarios"]
    assert out["weak_accounts"] == ["carol"]
    assert out["bans"] == [{"host": "client2", "address": "203.0.113.11", "node": "gw",
                            "family": 4, "chain": "f2b-port25-trap", "rule": BAN_RULE.cite(),
                            "reached_from": [JUMP.cite()], "reaction_ms": 400.0,
                            "fired_by": "its firewall log line", "lifted_after_s": 8.1}]
    assert [r["after"] for r in out["results"]] == ["ban", None, None]
