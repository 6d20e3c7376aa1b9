"""The built-in scenarios: data folders (scenario.yaml, policy, README), installed
with the package."""
