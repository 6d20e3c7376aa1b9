"""Running a scenario: probes, evidence rounds, verdicts."""
