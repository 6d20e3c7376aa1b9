"""The built-in sites: data files next to this module (`screened-host.yaml`, `dmz.yaml`).

Reading them needs no Mininet; `lab.runtime.builder` draws a site as a lab.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lab.errors import BadInput
from lab.model import site_file
from lab.model.site import Site

FOLDER = Path(__file__).resolve().parent
SUFFIX = ".yaml"


def builtin_names() -> list[str]:
    return sorted(p.name.removesuffix(SUFFIX) for p in FOLDER.glob(f"*{SUFFIX}"))


@cache  # a site is an immutable value, and the built-in files do not change under a run
def load(name: str) -> Site:
    """The built-in site of that name; BadInput for a name that is none."""
    if name not in builtin_names():
        raise BadInput(f"unknown site {name!r} (built-in sites: {', '.join(builtin_names())})")
    return site_file.load(FOLDER / f"{name}{SUFFIX}")
