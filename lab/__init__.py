"""port25lab: emulate outbound-mail gateway rules and verify what they do."""
