"""What the audit finds on a gateway running the published rules (unit and lab tests)."""

from __future__ import annotations

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
