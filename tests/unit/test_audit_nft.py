"""The static checks on a gateway whose rules are nftables (tests/unit/nft/ as nft listed them)."""

from __future__ import annotations

import json
from pathlib import Path

from lab.audit.facts import (
    ADDRESSES,
    FAIL2BAN,
    NFT,
    NFT_JSON,
    ROUTES,
    SYSCTLS,
    Facts,
    Output,
)
from lab.audit.gateway import AuditResult, table
from lab.audit.remote import jail_status
from lab.compliance.addressing import Addressing, Requested
from lab.compliance.checks import run_all
from lab.netfilter.family import IPv4, IPv6

FIXTURES = Path(__file__).parent / "nft"
# iptables-nft on a gateway that has only nft's tables: iptables-save prints nothing
NO_IPTABLES = ""
INTERFACES = [
    {"ifname": "lo", "link_type": "loopback", "addr_info": [{"local": "127.0.0.1",
                                                             "prefixlen": 8}]},
    {"ifname": "ens18", "addr_info": [{"local": "192.0.2.1", "prefixlen": 24},
                                      {"local": "2001:db8:cafe::1", "prefixlen": 64}]},
    {"ifname": "ens19", "addr_info": [{"local": "198.51.100.1", "prefixlen": 24},
                                      {"local": "2001:db8:ffff:1::1", "prefixlen": 64}]},
    {"ifname": "ens20", "addr_info": [{"local": "203.0.113.1", "prefixlen": 28}]}]
ROUTE_OUT = {4: [{"dst": "default", "gateway": "198.51.100.254", "dev": "ens19"}],
             6: [{"dst": "default", "gateway": "2001:db8:ffff:1::fe", "dev": "ens19"}]}


def _out(command: str, stdout: str = "", status: int = 0, stderr: str = "") -> Output:
    return Output(command, status, stdout, stderr)


def _fixture(name: str) -> tuple[str, str]:
    return (FIXTURES / f"{name}.json").read_text(), (FIXTURES / f"{name}.txt").read_text()


def _facts(nft: tuple[str, str] | None, v4: str = NO_IPTABLES, v6: str = NO_IPTABLES,
           fail2ban: dict[str, Output] | None = None) -> Facts:
    outputs = {IPv4().save: _out(IPv4().save, v4), IPv6().save: _out(IPv6().save, v6),
               SYSCTLS: _out(SYSCTLS, "net.ipv4.ip_forward = 1\n"
                                      "net.ipv6.conf.all.forwarding = 1\n"),
               ADDRESSES: _out(ADDRESSES, json.dumps(INTERFACES)),
               **{c: _out(c, json.dumps(ROUTE_OUT[v])) for v, c in ROUTES.items()}}
    if nft is None:  # a gateway without nft: the shell's answer
        outputs[NFT] = _out(NFT, status=127, stderr="sh: 1: nft: not found")
        outputs[NFT_JSON] = _out(NFT_JSON, status=127, stderr="sh: 1: nft: not found")
    else:
        outputs[NFT_JSON], outputs[NFT] = _out(NFT_JSON, nft[0]), _out(NFT, nft[1])
    outputs.update(fail2ban or {FAIL2BAN: _out(FAIL2BAN, status=127, stderr="not found")})
    return Facts("ssh://root@gw", outputs)


def _addressing(facts: Facts) -> Addressing:
    addressing, _ = Requested(management=("ens20",)).resolve(facts)
    return addressing


def _findings(facts: Facts) -> dict[str, tuple[str, str]]:
    return {f.name: (f.status, f.detail) for f in run_all(facts, _addressing(facts))}


def test_a_native_inet_table_is_checked_and_its_rules_cited() -> None:
    facts = _facts(_fixture("gateway"))
    found = _findings(facts)
    statuses = {k: v[0] for k, v in found.items()}
    assert statuses == {
        "inside-interface": "PASS", "smtp-blocked[v4]": "PASS", "smtp-blocked[v6]": "PASS",
        "teredo-rule": "PASS", "submission-open[v4]": "PASS", "submission-open[v6]": "PASS",
        "mail-server-exception[v4]": "PASS", "mail-server-exception[v6]": "PASS",
        "log-before-drop[v4]": "PASS", "log-before-drop[v6]": "PASS",
        "forwarding-on[v4]": "PASS", "forwarding-on[v6]": "PASS",
        "submission-auth-tls": "not checked", "fail2ban-jails": "FAIL"}
    assert found["smtp-blocked[v4]"][1].startswith(
        '192.0.2.10 → 25: DROP by inet filter forward handle 8: iifname "ens18" ip saddr '
        '192.0.2.0/24 tcp dport { 25, 465 } log prefix "port25 " drop')
    assert "2001:db8:cafe::a → 465: DROP by inet filter forward handle 10: iifname " \
           '"ens18" ip6 saddr 2001:db8:cafe::/64' in found["smtp-blocked[v6]"][1]
    assert found["mail-server-exception[v4]"][1].startswith(
        "192.0.2.25 → 25: ACCEPT by inet filter forward handle 4: iifname \"ens18\" ip saddr "
        "192.0.2.25 tcp dport { 25, 465 } accept")
    assert "(logged by inet filter forward handle 8)" in found["log-before-drop[v4]"][1]
    assert "Teredo plain from 192.0.2.10: DROP by inet filter forward handle 11" \
        in found["teredo-rule"][1]
    # the table is a fact of the gateway, said once: not noise, not "read the iptables only"
    notes = AuditResult(facts, _addressing(facts), (), 1.0).notes
    assert notes == ["nftables has tables iptables-save does not show (inet filter): the "
                     "checks read them with the iptables ones; base chains: inet filter "
                     "forward (forward, priority 0, policy accept)"]


def test_without_its_ipv6_rule_the_ipv6_leak_shows() -> None:
    data, text = _fixture("gateway")
    listing = json.loads(data)
    ipv6_drop = [o for o in listing["nftables"] if "rule" in o and '"ip6"' in json.dumps(o)
                 and '"drop"' in json.dumps(o)]
    assert len(ipv6_drop) == 1
    listing["nftables"].remove(ipv6_drop[0])
    lines = [line for line in text.splitlines() if "ip6 saddr 2001:db8:cafe::/64" not in line]
    found = _findings(_facts((json.dumps(listing), "\n".join(lines))))
    assert found["smtp-blocked[v4]"][0] == "PASS"
    status, detail = found["smtp-blocked[v6]"]
    assert status == "FAIL"
    assert detail.startswith("2001:db8:cafe::a → 25: ACCEPT by inet filter forward policy accept")


def test_a_gateway_without_nft_is_a_fact_not_an_error() -> None:
    facts = _facts(None, v4=(FIXTURES / "mixed.save").read_text())
    assert facts.nft_rules is None and facts.nft_only_tables == []
    found = _findings(facts)
    assert found["smtp-blocked[v4]"][0] == "PASS"  # its iptables rules, as always
    assert AuditResult(facts, _addressing(facts), (), 1.0).notes == [
        "nftables not read: nft is not installed on the gateway (command not found): the "
        "iptables rules are all the checks read"]


def test_iptables_nft_tables_are_not_counted_twice() -> None:
    facts = _facts(_fixture("mixed"), v4=(FIXTURES / "mixed.save").read_text())
    assert facts.nft_only_tables == ["inet lan"]
    assert facts.xtables == frozenset({("ip", "filter")})
    # the native table accepts first (priority -5); iptables' FORWARD still drops, once
    status, detail = _findings(facts)["smtp-blocked[v4]"]
    assert status == "PASS"
    assert detail.startswith("192.0.2.10 → 25: DROP by FORWARD#2: -A FORWARD -i ens18 -p tcp "
                             "-m multiport --dports 25,465 -j DROP (logged by FORWARD#1)")
    result = AuditResult(facts, _addressing(facts), (), 1.0)
    assert "ip filter" not in result.notes[0] and "(inet lan)" in result.notes[0]


def _jail(hook: str) -> tuple[Facts, dict[str, tuple[str, str]]]:
    data, text = _fixture("f2b")
    data = data.replace('"hook": "input"', f'"hook": "{hook}"')
    gateway, _ = _fixture("gateway")
    merged = json.loads(gateway)
    merged["nftables"] += json.loads(data)["nftables"][1:]
    fail2ban = {FAIL2BAN: _out(FAIL2BAN, "Status\n|- Number of jail:\t1\n`- Jail list:\tpostfix\n"),
                jail_status("postfix"): _out(jail_status("postfix"),
                                             "`- Actions\n   |- Currently banned:\t1\n")}
    facts = _facts((json.dumps(merged), text), fail2ban=fail2ban)
    return facts, _findings(facts)


def test_fail2ban_bans_in_the_input_hook_miss_forwarded_mail() -> None:
    _, found = _jail("input")
    status, detail = found["fail2ban-jails"]
    assert status == "FAIL"
    assert "jails: postfix (1 banned)" in detail
    assert "inet f2b-table f2b-chain @addr-set-postfix (1 banned) (input hook)" in detail
    assert "in the input hook a ban stops only what is sent to the gateway itself, never " \
           "what it forwards" in detail and "chain_hook = forward" in detail
    _, found = _jail("forward")
    assert found["fail2ban-jails"] == ("PASS", "jails: postfix (1 banned); bans: inet "
                                       "f2b-table f2b-chain @addr-set-postfix (1 banned) "
                                       "(forward hook)")


def test_a_gateway_table_is_shown_in_the_terminal_report() -> None:
    facts = _facts(_fixture("gateway"))
    result = AuditResult(facts, _addressing(facts), tuple(run_all(facts, _addressing(facts))),
                         1.0)
    assert "note: nftables has tables iptables-save does not show (inet filter)" in table(result)
