"""What the reports say of a run itself: the version, when, the command, sites, rules, times.

The results (lab.model.results) say what the lab found; this says how it was
asked: by whom it was run with which words, on which site with which policy
files, and how long each scenario and the whole run took. The command line
fills it in; the JSON, JUnit and HTML reports print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lab.userfiles import shown

if TYPE_CHECKING:
    from lab.model.scenario import Scenario


@dataclass(frozen=True)
class ScenarioRecord:
    """One scenario of a run: the site it ran on, its routers' policy files, its time."""

    name: str
    site: str  # the site's name
    site_file: str = ""  # the site file it was read from ("": a built-in site)
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # router → policy files
    started: datetime | None = None  # UTC
    seconds: float = 0.0  # boot to teardown


@dataclass(frozen=True)
class RunRecord:
    """A whole run: the program's version, its start (UTC), its argv, its scenarios, its time."""

    version: str
    started: datetime
    command: tuple[str, ...]
    scenarios: tuple[ScenarioRecord, ...] = ()
    seconds: float = 0.0

    def scenario(self, number: int) -> ScenarioRecord | None:
        """The record of the run's scenario `number` (from 0, in the results' order)."""
        return self.scenarios[number] if 0 <= number < len(self.scenarios) else None


def iso(moment: datetime) -> str:
    """A moment as the reports write it: ISO 8601 in UTC, to the millisecond, with `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def of_scenario(scenario: Scenario, started: datetime, seconds: float) -> ScenarioRecord:
    """The record of a scenario that ran: its site, its routers' policy files, its time."""
    rules = {router: tuple(p.name for p in files)
             for router, files in scenario.policies.items()}
    site_file = shown(scenario.site_file) if scenario.site_file is not None else ""
    return ScenarioRecord(scenario.name, scenario.site.name, site_file, rules, started,
                          round(seconds, 3))
