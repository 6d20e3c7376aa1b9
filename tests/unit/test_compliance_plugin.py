"""The pytest plugin every pytest run in the environment loads: inert unless asked for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import PROJECT


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def _collected(out: str) -> int:
    match = re.search(r"(\d+) tests? collected", out)
    return int(match.group(1)) if match else 0


def test_an_ordinary_run_is_untouched(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    loaded = _pytest("-q", cwd=tmp_path)
    assert loaded.returncode == 0 and "1 passed" in loaded.stdout, loaded.stdout
    # the plugin is loaded (its options are there, beside testinfra's own) ...
    helped = _pytest("--help", cwd=tmp_path).stdout
    assert "--port25lab-clients" in helped and "--hosts=HOSTS" in helped
    # ... and the project's own suite collects exactly what it collects without it
    with_plugin = _pytest("--collect-only", "-q", "tests/unit", cwd=PROJECT)
    without = _pytest("--collect-only", "-q", "-p", "no:port25lab", "tests/unit", cwd=PROJECT)
    assert _collected(with_plugin.stdout) == _collected(without.stdout) > 100
    assert "test_gateway" not in with_plugin.stdout


def test_asking_for_the_checks_collects_them(tmp_path: Path) -> None:
    done = _pytest("--pyargs", "lab.compliance", "--collect-only", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    names = [ln.split("::")[1] for ln in done.stdout.splitlines() if "::" in ln]
    assert len(names) == 14
    assert "test_smtp_blocked[local-v4]" in names and "test_fail2ban_jails[local]" in names
