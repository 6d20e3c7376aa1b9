"""Reading the evidence a lab run leaves: firewall logs (and later far side, bans)."""
