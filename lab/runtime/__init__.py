"""The running lab: Mininet, nodes, a run's identity and teardown (only here: Mininet)."""
