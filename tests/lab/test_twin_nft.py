"""The twin replays a gateway's native nftables tables (those iptables-save does not show).

The gateway of tests.lab.test_twin_site (tests.lab.own_gateway: its own names and
addressing, a private sshd), with a native table added next to its iptables rules:
the audit collects `nft list ruleset`, and its twin loads that table with nft, the
gateway's rule enforced in the lab.
"""

from __future__ import annotations

import json

import pytest

from tests.lab.own_gateway import Gateway
from tests.lab.test_twin_site import _rows, _twin
from tests.lab.test_twin_site import gateway as gateway  # the fixture, re-exported
from tests.support import leftovers, prefixes

pytestmark = pytest.mark.lab

NATIVE = """\
table inet extra {
	chain forward {
		type filter hook forward priority -5; policy accept;
		iifname "ens19" ip daddr 192.0.2.25 tcp dport 25 drop
	}
}
"""


def test_the_twin_replays_the_gateways_native_nft_table(gateway: Gateway) -> None:
    gateway.inside("gw", "nft", "-f", "-", stdin=NATIVE)
    report = gateway.run.folder / "twin-nft.json"
    try:
        status, out, err = gateway.audit("--twin", "fixed-screened-block", "--json",
                                         str(report))
    finally:
        gateway.inside("gw", "nft", "delete", "table", "inet", "extra")
    for prefix in prefixes(err + out) - {gateway.run.prefix}:
        assert leftovers(prefix) == []
    assert status == 1, out + err
    data = json.loads(report.read_text())
    twin = _twin(data)  # no lab error, no line that did not load
    # loaded after the iptables rules (the report shows the sources as paths)
    assert [r.rsplit(" ", 1)[-1] for r in twin["rules"]["gw"]] == [
        "iptables-save", "ip6tables-save", "ruleset"]
    rows = _rows(twin)
    # the native table drops the outside's IPv4 SMTP to the mail server in the twin, as on
    # the gateway; its IPv6 and the mail server's own SMTP out are untouched
    inbound = rows[("remote-mx", "mx", "smtp", None, 4)]
    assert inbound["observed"] != "allowed", (inbound["detail"], err)
    assert rows[("remote-mx", "mx", "smtp", None, 6)]["observed"] == "allowed"
    assert rows[("mx", "remote-mx", "smtp", None, 4)]["observed"] == "allowed"
