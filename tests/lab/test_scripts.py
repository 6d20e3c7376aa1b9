"""Scripts as admins write them, loaded on a real router and probed (issue 12, item 5)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lab.model.results import ScenarioResult
from lab.userfiles import shown
from tests.lab.test_evidence import _scenario as scenario_folder
from tests.lab.test_evidence import _verify as verify_folder
from tests.support import CLI, PROJECT, prefixes
from tests.unit.test_script_shell import ADMIN, ADMIN_LINES

pytestmark = pytest.mark.lab


def _verify(folder: Path, rules: str, expect: str) -> ScenarioResult:
    return verify_folder(scenario_folder(folder, "screened-host", "gw", rules, expect))


def test_an_admins_script_loads_as_written_and_decides(tmp_path: Path) -> None:
    result = _verify(tmp_path / "admin", ADMIN, (
        "  - {from: client1, to: remote-mx, probes: [smtp, smtps], families: [4, 6], "
        "verdict: blocked}\n"
        "  - {from: mx, to: remote-mx, probes: [smtp, smtps], families: [4, 6], "
        "verdict: allowed}\n"
        "  - {from: client1, to: mx, probes: [submission], families: [4, 6], "
        "verdict: allowed}\n"))
    assert result.load_errors == ()
    assert result.passed, [r.detail for r in result.results if not r.passed]
    by = {(r.source, r.probe, r.family): r for r in result.results}
    # the deciding rules are the loop's, as the kernel shows them
    for family, tool in ((4, "iptables"), (6, "ip6tables")):
        for probe, port in (("smtp", 25), ("smtps", 465)):
            rule = by["client1", probe, family].rule or ""
            assert rule.startswith(f"gw: {tool} -t filter FORWARD#"), rule
            assert f"--dport {port} -j DROP" in rule, rule
    file = shown(tmp_path / "admin" / "rules.sh")
    assert f"{file}:13: 'modprobe' is not a netfilter command: not run in the lab" in result.notes
    assert ADMIN_LINES["block"] == 22


def test_a_failing_call_in_a_loop_is_a_load_error_at_its_line(tmp_path: Path) -> None:
    result = _verify(tmp_path / "loop", (
        "set -e\n"
        "PORTS='25 nosuchport 465'\n"
        "for port in $PORTS; do\n"
        "    /sbin/iptables -A FORWARD -i eth0 -p tcp --dport $port -j DROP\n"
        "done\n"), "  - {from: client1, to: remote-mx, probes: [smtp, smtps], families: [4], "
                   "verdict: blocked}\n")
    file = shown(tmp_path / "loop" / "rules.sh")
    assert [(e.file, e.line) for e in result.load_errors] == [(file, 4)]
    assert "nosuchport" in result.load_errors[0].message
    # the calls around it loaded, and decide
    assert all(r.passed for r in result.results), [r.detail for r in result.results]


@pytest.mark.parametrize(("text", "says", "seconds"), [
    ("iptables -A FORWARD -j DROP\nwhile true; do :; done\n",
     "still running after 5 s when the lab expands it", (5, 30)),
    ("iptables -A FORWARD -j DROP\nwhile :; do echo 'all work and no play'; done\n",
     "prints more than 1 MiB when the lab expands it", (0, 5)),
], ids=["endless", "flood"])
def test_a_script_without_end_is_one_line_and_exit_2_before_any_lab(
        tmp_path: Path, text: str, says: str, seconds: tuple[int, int]) -> None:
    rules = tmp_path / "rules.sh"
    rules.write_text(text)
    started = time.monotonic()
    done = subprocess.run([CLI, "verify", "fixed-screened-block", "--rules-v4", str(rules)],
                          capture_output=True, text=True, timeout=120, cwd=PROJECT, check=False)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"port25lab: {rules}: {says}"), lines
    assert not prefixes(done.stderr)  # no lab was booted
    assert seconds[0] <= took < seconds[1], took
