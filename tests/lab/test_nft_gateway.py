"""The audit of an nftables gateway built outside the lab: a native `table inet filter`.

The gateway is tests/lab/own_gateway.py's (ens18 LAN, ens19 WAN, ens20 management with
a private sshd), its rules tests/unit/nft/gateway.nft loaded with `nft -f`, as a Debian
box loads /etc/nftables.conf: a forward hook chain that drops the LAN's 25 and 465 but
the mail server's, for IPv4 and IPv6. iptables has no table there at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import own_gateway
from tests.lab.own_gateway import Gateway

pytestmark = pytest.mark.lab

RULESET = Path(__file__).parent.parent / "unit" / "nft" / "gateway.nft"
NATIVE = ('inet filter forward handle {}: iifname "ens18" {} saddr {} tcp dport {{ 25, 465 }} '
          'log prefix "port25 " drop')


def _load(gateway: Gateway) -> None:
    gateway.inside("gw", "nft", "-f", str(RULESET))


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with own_gateway.gateway(_load) as found:
        yield found


def _handle(gateway: Gateway, text: str) -> int:
    """The kernel's handle of the forward chain's rule that reads `text`."""
    listing = gateway.inside("gw", "nft", "-a", "list", "chain", "inet", "filter", "forward")
    (handle,) = [int(m.group(1)) for line in listing.splitlines() if text in line
                 if (m := re.search(r"# handle (\d+)$", line))]
    return handle


def _audit(gateway: Gateway, name: str) -> tuple[int, str, str, dict[str, Any]]:
    report = gateway.run.folder / name
    status, out, err = gateway.audit("--json", str(report))
    return status, out, err, json.loads(report.read_text())


def _findings(data: dict[str, Any]) -> dict[tuple[str, int | None], dict[str, Any]]:
    return {(f["check"], f["family"]): f for f in data["audit"]["findings"]}


def test_the_native_ruleset_is_audited_with_its_own_rules_cited(gateway: Gateway) -> None:
    status, out, err, data = _audit(gateway, "nft.json")
    assert status == 1, out + err  # fail2ban is not there; nothing else fails
    findings = _findings(data)
    assert {k for k, f in findings.items() if f["status"] != "PASS"} == {
        ("fail2ban-jails", None), ("submission-auth-tls", None)}
    v4 = _handle(gateway, "ip saddr 192.0.2.0/24 tcp dport")
    v6 = _handle(gateway, "ip6 saddr 2001:db8:cafe::/64 tcp dport")
    for port in (25, 465):  # the clients' SMTP: dropped by her own nft rule, cited
        assert (f"192.0.2.10 → {port}: DROP by "
                + NATIVE.format(v4, "ip", "192.0.2.0/24")) in findings[("smtp-blocked", 4)][
                    "detail"]
        assert (f"2001:db8:cafe::a → {port}: DROP by "
                + NATIVE.format(v6, "ip6", "2001:db8:cafe::/64")) in findings[
                    ("smtp-blocked", 6)]["detail"]
    mx = _handle(gateway, "ip saddr 192.0.2.25 tcp dport")
    assert findings[("mail-server-exception", 4)]["detail"].startswith(
        f'192.0.2.25 → 25: ACCEPT by inet filter forward handle {mx}: iifname "ens18" ip '
        "saddr 192.0.2.25 tcp dport { 25, 465 } accept")
    assert "Teredo plain from 192.0.2.10: DROP by inet filter forward" in findings[
        ("teredo-rule", None)]["detail"]
    # found in her rules, not assumed from the published addressing
    assert "note: mail server assumed: 192.0.2.25, 2001:db8:cafe::25" in out
    # the native table is a fact of the gateway, said once
    assert ("note: nftables has tables iptables-save does not show (inet filter): the checks "
            "read them with the iptables ones; base chains: inet filter forward (forward, "
            "priority 0, policy accept)") in out
    commands = {c["command"]: c for c in data["audit"]["facts"]["commands"]}
    assert commands["nft -j list ruleset"]["status"] == 0
    assert commands["iptables-save"]["stdout"] == ""  # iptables knows nothing of it


def test_without_its_ipv6_rule_the_audit_shows_the_ipv6_leak(gateway: Gateway) -> None:
    v6 = _handle(gateway, "ip6 saddr 2001:db8:cafe::/64 tcp dport")
    gateway.inside("gw", "nft", "delete", "rule", "inet", "filter", "forward", "handle",
                   str(v6))
    try:
        status, out, err, data = _audit(gateway, "nft-leak.json")
    finally:  # her whole ruleset again (it starts with `flush ruleset`)
        _load(gateway)
    assert status == 1, out + err
    findings = _findings(data)
    assert findings[("smtp-blocked", 4)]["status"] == "PASS"
    leak = findings[("smtp-blocked", 6)]
    assert leak["status"] == "FAIL"
    assert leak["detail"].startswith("2001:db8:cafe::a → 25: ACCEPT by inet filter forward "
                                     "policy accept")
    assert findings[("mail-server-exception", 4)]["status"] == "PASS"
    # with nothing of IPv6 blocked, no IPv6 exception is there to find the mail server by
    assert "note: mail server assumed: 192.0.2.25: " in out
    assert re.search(r"smtp-blocked\s+PASS\s+FAIL", out), out
