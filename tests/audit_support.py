"""What the audit finds on a gateway running the published rules (unit and lab tests); a
gateway made of plain network namespaces, and correct rules written for its network."""

from __future__ import annotations

import subprocess
from typing import Any

# With the mail server read; fail2ban is absent or not running on the gateway.
PUBLISHED_FINDINGS = {
    "inside-interface": "PASS",
    "smtp-blocked[v4]": "PASS", "smtp-blocked[v6]": "PASS",
    "teredo-rule": "FAIL",  # its published line never loads (`-dport`)
    "submission-open[v4]": "PASS", "submission-open[v6]": "PASS",
    "mail-server-exception[v4]": "PASS", "mail-server-exception[v6]": "PASS",
    "log-before-drop[v4]": "PASS", "log-before-drop[v6]": "PASS",
    "forwarding-on[v4]": "PASS", "forwarding-on[v6]": "PASS",
    "submission-auth-tls": "PASS",
    "fail2ban-jails": "FAIL",
}

# Her rules, as she wrote them for her network, LAN on ens18
# (scenarios/fixed-screened-block/rules.sh with her interface and addresses).
RULES = r"""
LAN_IF=ens18
LAN=192.0.2.0/24
LAN6=2001:db8:cafe::/64
MX=192.0.2.25
MX6=2001:db8:cafe::25
iptables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $MX --dports 25,465 -j ACCEPT
ip6tables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $MX6 --dports 25,465 -j ACCEPT
iptables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $LAN --dports 25,465 -j LOG
iptables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $LAN --dports 25,465 -j DROP
ip6tables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $LAN6 --dports 25,465 -j LOG
ip6tables -A FORWARD -i $LAN_IF -p tcp -m multiport -s $LAN6 --dports 25,465 -j DROP
iptables -A FORWARD -i $LAN_IF -m conntrack --ctstate INVALID -j DROP
iptables -A FORWARD -i $LAN_IF -p udp -s $LAN -m u32 --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 48 & 0xFFFF = 25,465" -j DROP
iptables -A FORWARD -i $LAN_IF -p udp -s $LAN -m u32 --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 16 = 0 && 0 >> 22 & 0x3C @ 16 >> 28 = 6 && 0 >> 22 & 0x3C @ 20 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 56 & 0xFFFF = 25,465" -j DROP
iptables -A FORWARD -i $LAN_IF -p udp -s $LAN -m u32 --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 = 0x10000 && 0 >> 22 & 0x3C @ 21 >> 28 = 6 && 0 >> 22 & 0x3C @ 24 & 0xFF = 6 && 0 >> 22 & 0x3C @ 61 & 0xFFFF = 25,465" -j DROP
iptables -A FORWARD -i $LAN_IF -p udp -s $LAN -m u32 --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 0,60 && 0 >> 22 & 0x3C @ 48 >> 24 = 6 && 0 >> 22 & 0x3C @ 48 >> 13 & 0x7F8 @ 56 & 0xFFFF = 25,465" -j DROP
iptables -A FORWARD -i $LAN_IF -p 41 -s $LAN -m u32 --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 4 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 40 & 0xFFFF = 25,465" -j DROP
"""  # noqa: E501  (a u32 expression is one word)


class Namespace:
    """A plain named network namespace as a lab node's handle wraps one (`popen`, `pid`)."""

    def __init__(self, name: str) -> None:
        self.enter = ["nsenter", f"--net=/run/netns/{name}"]
        # something to be in it: /proc/PID/net is the namespace's (the teardown ends it)
        self.holder = subprocess.Popen([*self.enter, "sleep", "infinity"])

    @property
    def pid(self) -> int:
        return self.holder.pid

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*self.enter, *argv], **options)
