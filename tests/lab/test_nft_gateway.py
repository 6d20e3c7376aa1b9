"""The audit of an nftables gateway built outside the lab: a native `table inet filter`.

The gateway is tests/lab/own_gateway.py's (ens18 LAN, ens19 WAN, ens20 management with
a private sshd), its rules tests/unit/nft/gateway.nft loaded with `nft -f`, as a Debian
box loads /etc/nftables.conf: a forward hook chain that drops the LAN's 25 and 465 but
the mail server's, for IPv4 and IPv6. iptables has no table there at all.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import own_gateway
from tests.lab.own_gateway import Gateway
from tests.support import CLI, leftovers, prefixes

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


# The twin: issue 13's "done when" for this gateway. Her ruleset's own line of each rule
# (the twin cites the gateway's `nft list ruleset` line it loaded the rule from).
def _lines(text: str) -> dict[str, int]:
    return {line.strip(): number for number, line in enumerate(text.splitlines(), 1)}


def _rows(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    (twin,) = report["scenarios"]
    assert twin["lab_error"] is None and twin["load_errors"] == [], twin
    return {(r["source"], r["target"], r["probe"], r["variant"], r["family"]): r
            for r in twin["results"]}


@pytest.fixture(scope="module")
def twinned(gateway: Gateway) -> tuple[int, str, dict[str, Any], Path]:
    report, site = gateway.run.folder / "twin.json", gateway.run.folder / "twin.yaml"
    status, out, err = gateway.audit("--twin", "fixed-screened-block", "--json", str(report),
                                     "--write-site", str(site))
    for prefix in prefixes(err + out) - {gateway.run.prefix}:
        assert leftovers(prefix) == []  # the twin's lab is gone
    return status, out + err, json.loads(report.read_text()), site


def test_the_twin_blocks_the_clients_smtp_by_her_own_nft_rule(
        twinned: tuple[int, str, dict[str, Any], Path]) -> None:
    status, said, data, _ = twinned
    assert status == 1, said
    rows = _rows(data)
    # what her ruleset does not block, the twin shows: it has no rule for 6in4, and its
    # one Teredo rule (UDP 3544 dropped whole) misses a relay on another port and blocks
    # the tunnel's harmless uses as well
    failed = {(r["source"], r["probe"], r["variant"], r["family"], r["observed"])
              for r in rows.values() if not r["passed"]}
    assert failed == {(client, *row) for client in ("client1", "client2") for row in (
        ("teredo", "control-80", 4, "blocked"), ("teredo", "control-587", 4, "blocked"),
        ("teredo", "other-port", 4, "allowed"), ("tunnel6in4", "plain", 4, "allowed"),
        ("tunnel6in4", "plain-465", 4, "allowed"))}, sorted(failed)
    # the tunnel that never opened is blocked by her UDP 3544 rule, cited
    plain = rows[("client1", "remote-mx", "teredo", "plain", 4)]
    assert plain["observed"] == "blocked" and plain["rule"].endswith(
        'iifname "ens18" ip saddr 192.0.2.0/24 udp dport 3544 drop'), plain
    listing = {c["command"]: c["stdout"] for c in data["audit"]["facts"]["commands"]}[
        "nft list ruleset"]
    lines = _lines(listing)
    for client in ("client1", "client2"):
        for probe in ("smtp", "smtps"):
            for family, word, lan in ((4, "ip", "192.0.2.0/24"),
                                      (6, "ip6", "2001:db8:cafe::/64")):
                row = rows[(client, "remote-mx", probe, None, family)]
                assert row["observed"] == "blocked", row
                text = (f'iifname "ens18" {word} saddr {lan} tcp dport {{ 25, 465 }} '
                        'log prefix "port25 " drop')
                assert row["rule"].startswith("gw: nft inet filter forward handle "), row
                # as the lab's kernel holds it: its log statement runs as NFLOG group 25
                assert row["rule"].endswith(text.replace(" drop", " group 25 drop")), row
                assert row["rule_source"].endswith(f":{lines[text]}"), row
    for family in (4, 6):  # the mail server's own SMTP goes out
        assert rows[("mx", "remote-mx", "smtp", None, family)]["observed"] == "allowed"


def test_without_its_ipv6_rule_the_twin_shows_the_ipv6_leak(gateway: Gateway) -> None:
    v6 = _handle(gateway, "ip6 saddr 2001:db8:cafe::/64 tcp dport")
    gateway.inside("gw", "nft", "delete", "rule", "inet", "filter", "forward", "handle",
                   str(v6))
    report = gateway.run.folder / "twin-leak.json"
    try:
        status, out, err = gateway.audit("--twin", "fixed-screened-block", "--json",
                                         str(report))
    finally:
        _load(gateway)
    assert status == 1, out + err
    rows = _rows(json.loads(report.read_text()))
    for client in ("client1", "client2"):
        for probe in ("smtp", "smtps"):
            leak = rows[(client, "remote-mx", probe, None, 6)]
            assert (leak["expected"], leak["observed"]) == ("blocked", "allowed"), leak
            assert rows[(client, "remote-mx", probe, None, 4)]["observed"] == "blocked"


def test_verify_on_the_saved_site_with_her_ruleset_gives_the_twins_verdicts(
        twinned: tuple[int, str, dict[str, Any], Path], tmp_path: Path) -> None:
    """`verify fixed-screened-block --site FILE --rules RULESET.nft`: no SSH, same rows."""
    _, _, data, site = twinned
    report = tmp_path / "verify.json"
    done = subprocess.run([CLI, "verify", "fixed-screened-block", "--site", str(site),
                           "--rules", str(RULESET), "--json", str(report), "-q"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout + done.stderr  # the twin's failures, the same
    verified = _rows(json.loads(report.read_text()))
    twin = _rows(data)
    assert len(twin) == 66
    assert {k: (r["observed"], r["rule"].split(": ", 1)[-1] if r["rule"] else None)
            for k, r in verified.items()} == {
        k: (r["observed"], r["rule"].split(": ", 1)[-1] if r["rule"] else None)
        for k, r in twin.items()}
    # the verify cites her file's own lines
    row = verified[("client1", "remote-mx", "smtp", None, 4)]
    assert row["rule_source"].endswith(f"{RULESET.name}:16"), row  # her IPv4 rule
