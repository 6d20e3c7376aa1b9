"""Built-in topologies, by name (importing them needs Mininet)."""

from __future__ import annotations

from lab.runtime.builder import PlannedTopo
from topologies.dmz import Dmz
from topologies.screened_host import ScreenedHost

TOPOLOGIES: dict[str, type[PlannedTopo]] = {t.PLAN.name: t for t in (ScreenedHost, Dmz)}
