"""Test helpers: what a lab run leaves behind, and where the CLI is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.runtime import lifecycle

PROJECT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "port25lab")
PREFIX = re.compile(r"\bp25-[0-9a-f]{6}\b")


# Python code to run first in a child interpreter: Mininet cannot be imported there
# (an import hook refuses it, as a machine without Debian's mininet package would).
HIDE_MININET = """
import sys

class _NoMininet:
    def find_spec(self, name, path=None, target=None):
        if name == "mininet" or name.startswith("mininet."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
        return None

sys.meta_path.insert(0, _NoMininet())
"""


def without_mininet(code: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child interpreter that cannot import Mininet."""
    return subprocess.run([sys.executable, "-c", HIDE_MININET + code], capture_output=True,
                          text=True, timeout=120, cwd=PROJECT, check=False, **options)


def leftovers(prefix: str) -> list[str]:
    """Everything of one run that still exists: named namespaces, run folder, processes."""
    found = [f"netns {n}" for n in os.listdir(lifecycle.NETNS_ROOT)
             if n.startswith(prefix)] if lifecycle.NETNS_ROOT.is_dir() else []
    if (lifecycle.RUN_ROOT / prefix).exists():
        found.append(f"folder {lifecycle.RUN_ROOT / prefix}")
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    found += [f"process {line.strip()}" for line in ps.stdout.splitlines() if prefix in line]
    return found


def prefixes(text: str) -> set[str]:
    return set(PREFIX.findall(text))
