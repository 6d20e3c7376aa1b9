"""A non-editable install carries everything a run needs: modules and package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import PROJECT

IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                 ".mypy_cache", ".ruff_cache", ".pytest_cache")

# Imports only from the install: isolated mode (no PYTHONPATH, no working folder),
# the target folder first on the path, then checks that nothing came from the checkout.
CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import lab, probes, scenarios, topologies
from lab.model import scenario
from lab.services import trap
assert all(m.__file__.startswith(sys.argv[1]) for m in (lab, probes, scenarios, topologies))
names = scenario.builtin_names()
for name in names:
    scenario.load(name)
assert trap.FILTERS.is_dir() and any(trap.FILTERS.glob("*.conf")), trap.FILTERS
from lab.netfilter import shell  # its bash files are package data
trace = shell.expand("X=1\\niptables -A FORWARD -j $X\\n", "rules.sh", ["iptables"])
assert [c.argv for c in trace.calls] == [("iptables", "-A", "FORWARD", "-j", "1")], trace
print(len(names))
"""


def test_a_non_editable_install_has_the_scenarios(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    shutil.copytree(PROJECT, source, ignore=IGNORED)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    done = subprocess.run([sys.executable, "-I", "-c", CHECK, str(target)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(list((PROJECT / "scenarios").glob("*/scenario.yaml")))
