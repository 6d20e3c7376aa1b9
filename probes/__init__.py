"""Probes: what a host of the lab emits, written to read like the packet."""
