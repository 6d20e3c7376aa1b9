"""`port25lab verify --site --rules` end to end: the campus example as a user runs it."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import CLI, PROJECT, leftovers, prefixes

pytestmark = pytest.mark.lab


def test_verify_on_a_site_of_ones_own(tmp_path: Path) -> None:
    out, xml = tmp_path / "campus.json", tmp_path / "campus.xml"
    done = subprocess.run(
        [CLI, "verify", "fixed-screened-block", "--site", "examples/campus/campus.yaml",
         "--rules", "examples/campus/campus.sh", "--json", str(out), "--junit", str(xml)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("== fixed-screened-block [campus: examples/campus/campus.yaml] PASS "
                        "(7 of 66 rows not applicable)")
    assert lines[1] == "   rules: fw: examples/campus/campus.sh"
    assert "considerar IPv6 mesmo que sua rede não tenha IPv6" in done.stdout
    (report,) = json.loads(out.read_text())["scenarios"]
    assert report["site"] == {"name": "campus", "file": "examples/campus/campus.yaml"}
    assert report["rules"] == {"fw": ["examples/campus/campus.sh"]}
    assert (report["passed"], report["not_applicable"]) == (True, 7)
    assert {r["status"] for r in report["results"]} == {"passed", "not applicable"}
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "7")
    for p in prefixes(done.stderr):
        assert leftovers(p) == []
