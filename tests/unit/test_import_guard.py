"""With Mininet unavailable, the model, the report, the audit and `list` import and work:
only booting a lab needs Mininet."""

from __future__ import annotations

import re

from tests.support import without_mininet

CHECK = """
import lab.audit.gateway, lab.cli, lab.engine.verify, lab.model.scenario, lab.report
import topologies
from lab.cli import main

print("list", main(["list"]))
print("probes", main(["list", "--probes"]))
# reading a gateway needs no Mininet: this audit gets as far as the password, before SSH
print("audit", main(["audit", "ssh://root@gw.example.org", "--password-env", "P25_UNSET"]))
print("twin", main(["audit", "ssh://root@gw.example.org", "--twin", "fixed-screened-block"]))
print("mininet", sorted(m for m in sys.modules if m.split(".")[0] == "mininet"))
"""


def test_no_mininet_needed_but_to_boot_a_lab() -> None:
    done = without_mininet(CHECK, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                if line.split(" ", 1)[0] in ("list", "probes", "audit", "twin", "mininet"))
    assert said == {"list": "0", "probes": "0", "audit": "2", "twin": "2", "mininet": "[]"}
    # the names' column is as wide as the longest name (fixed-screened-block-translated)
    assert re.search(r"^fixed-screened-block {13}screened-host ", done.stdout, re.M)
    assert re.search(r"^seed-dmz-block {19}dmz ", done.stdout, re.M)
    assert done.stderr.splitlines() == [
        "port25lab: --password-env P25_UNSET: no such environment variable",
        "port25lab: Mininet is not importable: run `make setup` (Debian package mininet) "
        "and use .venv/bin/port25lab"]
