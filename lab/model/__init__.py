"""Site, scenario, verdicts, results: plain data and pure decisions (no runtime imports)."""
