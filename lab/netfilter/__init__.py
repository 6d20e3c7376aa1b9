"""Netfilter policies: the dialects (iptables scripts, save files) and one rule model."""
