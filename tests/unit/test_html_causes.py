"""Which failing rows a policy line that did not load may explain (lab.model.causes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.model.causes import explained, transport
from lab.model.results import Result
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError, read_policy
from lab.userfiles import shown

A, B, D, V, E = (Verdict.ALLOWED, Verdict.BLOCKED, Verdict.DIVERTED, Verdict.REFUSED,
                 Verdict.ERROR)


def _row(probe: str, family: int, expected: Verdict, observed: Verdict,
         variant: str = "") -> Result:
    return Result("client1", "remote-mx", probe, family, expected, observed, None, "", 1.0,
                  variant=variant)


ROWS = {
    "teredo leaks": _row("teredo", 4, B, A, "plain"),
    "6in4 leaks": _row("tunnel6in4", 4, B, A, "plain"),
    "smtp leaks": _row("smtp", 4, B, A),
    "smtp6 leaks": _row("smtp", 6, B, A),
    "dns leaks": _row("dns", 4, B, A),
    "submission cut": _row("submission", 4, A, B),
    "smtp not diverted": _row("smtp", 4, D, B),
    "spam refused, not diverted": _row("spam", 4, D, V),
    "teredo blocked as wanted": _row("teredo", 4, B, B, "other-port"),
    "teredo undecided": _row("teredo", 4, B, E, "fragment"),
}


def _explained(tmp_path: Path, line: str, family: int | None = None) -> set[str]:
    path = tmp_path / "rules.sh"
    path.write_text(f"# a comment\n{line}\n")
    policy = read_policy(path, family)
    error = LoadError(shown(path), 2, "refused")
    found = explained(error, [policy], list(ROWS.values()))
    return {name for name, row in ROWS.items() if any(row is f for f in found)}


@pytest.mark.parametrize("line, rows", [
    # the published Teredo line: UDP, DROP: the UDP rows that leaked
    ("iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -dport 3544 -j DROP",
     {"teredo leaks", "dns leaks"}),
    ("iptables -A FORWARD -p 17 -j REJECT", {"teredo leaks", "dns leaks"}),
    # 6in4 is IPv4 protocol 41
    ("iptables -A FORWARD -p 41 -j DROP", {"6in4 leaks"}),
    ("iptables -A FORWARD -p ipv6 -j DROP", {"6in4 leaks"}),
    # TCP: the IPv4 smtp rows that got through — not IPv6's
    # (a missing DROP cannot explain a row observed blocked)
    ("iptables -A FORWARD -p tcp --dport 25 -j DROP",
     {"smtp leaks", "spam refused, not diverted"}),
    ("ip6tables -A FORWARD -p tcp --dport 25 -j DROP", {"smtp6 leaks"}),
    # a missing ACCEPT explains what was cut off, not what leaked
    ("iptables -A FORWARD -p tcp --dport 587 -j ACCEPT",
     {"submission cut", "smtp not diverted"}),
    # a missing DNAT explains the rows that were not diverted
    ("iptables -t nat -A PREROUTING -p tcp --dport 25 -j DNAT --to-destination 203.0.113.25:587",
     {"submission cut", "smtp not diverted", "smtp leaks", "spam refused, not diverted"}),
    # a log rule decides no row
    ("iptables -A FORWARD -p udp -j LOG", set()),
    # no protocol, a negated one, or "all": any IPv4 row that failed and was decided
    ("iptables -A FORWARD -j my-chain",
     {"teredo leaks", "6in4 leaks", "smtp leaks", "dns leaks", "submission cut",
      "smtp not diverted", "spam refused, not diverted"}),
    ("iptables -A FORWARD ! -p tcp -j DROP",
     {"teredo leaks", "6in4 leaks", "smtp leaks", "dns leaks", "spam refused, not diverted"}),
    ("iptables -A FORWARD -p all -j DROP",
     {"teredo leaks", "6in4 leaks", "smtp leaks", "dns leaks", "spam refused, not diverted"}),
])
def test_a_script_line_explains_rows_by_family_protocol_and_target(
        tmp_path: Path, line: str, rows: set[str]) -> None:
    assert _explained(tmp_path, line) == rows


def test_a_save_file_that_fails_explains_every_failing_row_of_its_family(tmp_path: Path) -> None:
    path = tmp_path / "gw.rules.v6"
    path.write_text("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j DROP\nCOMMIT\n")
    policy = read_policy(path, 6)
    found = explained(LoadError(shown(path), 3, "refused"), [policy], list(ROWS.values()))
    assert found == (ROWS["smtp6 leaks"],)


def test_an_error_of_no_policy_line_explains_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rules.sh"
    path.write_text("iptables -A FORWARD -p udp -j DROP\n")
    policy = read_policy(path)
    rows = list(ROWS.values())
    assert explained(LoadError("jail.local", 0, "fail2ban in gw: bad"), [policy], rows) == ()
    assert explained(LoadError(shown(path), 7, "no such line"), [policy], rows) == ()


@pytest.mark.parametrize("probe, protocol", [
    ("smtp", "tcp"), ("smtps", "tcp"), ("mail", "tcp"), ("guessing", "tcp"), ("web", "tcp"),
    ("teredo", "udp"), ("dns", "udp"), ("tunnel6in4", "ipv6")])
def test_the_protocol_a_probe_crosses_the_router_in(probe: str, protocol: str) -> None:
    assert transport(probe) == protocol


def test_an_nft_ruleset_that_fails_explains_every_failing_row_of_its_families(
        tmp_path: Path) -> None:
    (tmp_path / "more.nft").write_text("table ip more {\n}\n")
    path = tmp_path / "gw.nft"
    path.write_text('include "more.nft"\ntable ip6 t {\n}\n')
    policy = read_policy(path)
    every = {name for name, row in ROWS.items() if not row.passed and row.observed != E}
    for error in (LoadError(shown(path), 2, "refused"),
                  LoadError(shown(tmp_path / "more.nft"), 1, "refused")):
        found = explained(error, [policy], list(ROWS.values()))
        assert {n for n, r in ROWS.items() if any(r is f for f in found)} == every
    script = tmp_path / "gw.sh"
    script.write_text("iptables -P FORWARD DROP\nnft add rule ip6 t c drop\n")
    found = explained(LoadError(shown(script), 2, "refused"), [read_policy(script)],
                      list(ROWS.values()))
    assert {n for n, r in ROWS.items() if any(r is f for f in found)} == {"smtp6 leaks"}
