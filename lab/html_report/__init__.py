"""The HTML report: one self-contained page a person reads in any browser, offline.

The sites drawn (lab.html_report.diagram), per scenario the verdict matrix with
its evidence under each cell, the deciding rules, the load errors linked to the
rows they may explain, suspects and bans, the policy files line by line; the
run's version, start, command and times; for `audit`, its findings (for a fleet,
a row per gateway, then each gateway's). Rendered by Jinja2 with autoescape on
(rule texts, banners and file names are untrusted); CSS, script and SVG are
inline: opening it needs no network.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from lab.html_report import diagram
from lab.html_report.view import ScenarioView, scenario_view
from lab.model.record import RunRecord, iso
from lab.model.results import ScenarioResult
from lab.model.scenario import Scenario
from lab.model.site import Site
from lab.model.verdict import Verdict

if TYPE_CHECKING:
    from lab.audit.fleet import FleetResult
    from lab.audit.gateway import AuditResult

# what each verdict means (DESIGN.md's table), for the legend
MEANING = {
    Verdict.ALLOWED: "reached the intended far side",
    Verdict.BLOCKED: "left the sender, never reached the far side; the deciding rule is named",
    Verdict.DIVERTED: "answered by another host or port than the one addressed",
    Verdict.REFUSED: "the mail server reached refused the mail (SMTP 4xx/5xx), quoted",
    Verdict.BANNED: "a trap's ban rule cut the host off",
    Verdict.ERROR: "the lab could not decide; never counts as a pass",
    Verdict.NOT_APPLICABLE: "the site gives this row no path in this family: not probed, "
                            "neither passed nor failed",
}


@dataclass(frozen=True)
class Drawn:
    """A site as the page shows it: its id on the page and its picture."""

    site: Site
    anchor: str
    svg: Markup


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("lab.html_report"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = iso
    env.filters["argv"] = shlex.join
    return env


def render(ran: Sequence[tuple[Scenario | None, ScenarioResult]], record: RunRecord | None,
           audit: AuditResult | None = None, fleet: FleetResult | None = None) -> str:
    """The page: each scenario as it was asked for (None: not known) and what it found.

    `fleet`: a fleet audit's gateways, a summary row each, then each one's findings.
    """
    sites: dict[str, Drawn] = {}
    views: list[ScenarioView] = []
    for number, (scenario, result) in enumerate(ran):
        anchor = ""
        if scenario is not None:
            site = scenario.site
            if site.name not in sites:
                prefix = f"site-{len(sites)}"
                # dot's SVG is trusted markup: it escapes every label it draws
                sites[site.name] = Drawn(site, prefix, Markup(diagram.svg(site, prefix)))
            anchor = sites[site.name].anchor
        views.append(scenario_view(number, scenario, result,
                                   record.scenario(number) if record else None, anchor))
    return _environment().get_template("report.html.j2").render(
        scenarios=views, sites=list(sites.values()), run=record, audit=audit, fleet=fleet,
        meaning=MEANING, passed=sum(v.result.passed for v in views))


def write_html(path: Path, ran: Sequence[tuple[Scenario | None, ScenarioResult]],
               record: RunRecord | None, audit: AuditResult | None = None,
               fleet: FleetResult | None = None) -> None:
    """Rendered first, then written: a failure cannot leave half a page."""
    page = render(ran, record, audit, fleet)
    path.write_text(page, encoding="utf-8")
