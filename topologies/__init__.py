"""The built-in sites: data files next to this module (`screened-host.yaml`, `dmz.yaml`).

Reading them needs no Mininet; `lab.runtime.builder` draws a site as a lab.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import BadInput
from lab.model import site_file
from lab.model.site import Site

FOLDER = Path(__file__).resolve().parent
SUFFIX = ".yaml"


def _read_all() -> dict[str, Site]:
    return {p.name.removesuffix(SUFFIX): site_file.load(p)
            for p in sorted(FOLDER.glob(f"*{SUFFIX}"))}


# Read once, when the package is imported: the package's own data, immutable values. A
# process that drops its privileges later (or whose checkout it can no longer read)
# still knows them.
_BUILTIN = _read_all()


def builtin_names() -> list[str]:
    return list(_BUILTIN)


def load(name: str) -> Site:
    """The built-in site of that name; BadInput for a name that is none."""
    if name not in _BUILTIN:
        raise BadInput(f"unknown site {name!r} (built-in sites: {', '.join(_BUILTIN)})")
    return _BUILTIN[name]
