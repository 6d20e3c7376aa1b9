"""What the HTML report shows of a scenario, arranged for its template.

The matrix (a row per source, target and probe; a cell per family, with its
evidence), the deciding rules numbered as the terminal numbers them, the policy
files line by line (what decided, what only counted, what did not load), and
the load errors with the failing rows each may explain (lab.model.causes).
Every place another links to has an id: `s0-r3` (the cell of result 3 of
scenario 0), `s0-p1-L14` (line 14 of its second policy file), `s0-e0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lab import userfiles
from lab.errors import BadInput
from lab.model.causes import explained
from lab.model.evidence_items import items
from lab.model.record import ScenarioRecord
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Scenario
from lab.netfilter.policy import MAX_BYTES, LoadError, PolicyFile
from lab.report import label


@dataclass(frozen=True)
class Link:
    """Something to go to on the page: its words and its id ('': words only)."""

    text: str
    href: str


@dataclass(frozen=True)
class ItemView:
    label: str
    text: str
    source: Link | None = None  # the policy line the item cites, where the page lists it


@dataclass
class ErrorView:
    """A load error, the policy line it is, and the failing rows it may explain."""

    error: LoadError
    anchor: str
    line: Link | None = None
    rows: list[Link] = field(default_factory=list)


@dataclass(frozen=True)
class CellView:
    result: Result
    anchor: str
    items: tuple[ItemView, ...]
    rule_number: int | None
    explained_by: tuple[Link, ...]

    @property
    def verdict(self) -> str:
        """The verdict as a CSS class (`not applicable` → `not-applicable`)."""
        return str(self.result.observed).replace(" ", "-")


@dataclass(frozen=True)
class RowView:
    source: str
    target: str
    probe: str
    cells: tuple[CellView | None, ...]  # IPv4, IPv6

    @property
    def failed(self) -> bool:
        return any(c is not None and c.result.failed for c in self.cells)


@dataclass
class LineView:
    number: int
    text: str
    anchor: str
    decided: int = 0  # results this line's rule decided
    hits: int = 0  # results whose packets this line's rule counted
    errors: list[ErrorView] = field(default_factory=list)
    head: LineView | None = None  # the line a backslash joins this one to (its command's)

    @property
    def marks(self) -> str:
        """The line's CSS classes: what its command did in this run."""
        of = self.head or self
        found = ["failed" if of.errors else "", "decided" if of.decided else "",
                 "hit" if of.hits and not of.decided else ""]
        return " ".join(m for m in found if m)


@dataclass(frozen=True)
class PolicyView:
    router: str
    path: str
    kind: str
    anchor: str
    lines: tuple[LineView, ...]
    note: str = ""  # why the file's own text is not shown, if it is not


@dataclass(frozen=True)
class RuleView:
    number: int
    rule: str
    source: Link | None


@dataclass(frozen=True)
class ScenarioView:
    anchor: str
    result: ScenarioResult
    record: ScenarioRecord | None
    site_anchor: str
    summary: str
    rows: tuple[RowView, ...]
    rules: tuple[RuleView, ...]
    policies: tuple[PolicyView, ...]
    errors: tuple[ErrorView, ...]

    @property
    def failed_rows(self) -> int:
        return sum(r.failed for r in self.result.results)


def _text_lines(policy: PolicyFile) -> tuple[list[str], str]:
    """The policy's lines as written, and a note where its file could not be read again."""
    if policy.kind == "save":
        return policy.save_text.splitlines(), ""
    if policy.label:  # rules that never were a file: a twin's, as the gateway gave them
        if policy.ruleset is not None:
            return policy.ruleset.text.splitlines(), ""
        return _command_lines(policy), ""
    try:
        return userfiles.read_text(policy.path, "rules file", MAX_BYTES).splitlines(), ""
    except BadInput as exc:  # gone since
        return _command_lines(policy), f"shown as the lab read its commands ({exc})"


def _command_lines(policy: PolicyFile) -> list[str]:
    """The policy's lines as its commands hold them (a line no command is on: empty)."""
    by_line = {c.line: c.text for c in policy.commands}
    return [by_line.get(n, "") for n in range(1, max(by_line, default=0) + 1)]


def _policy_view(router: str, policy: PolicyFile, anchor: str) -> PolicyView:
    texts, note = _text_lines(policy)
    lines = tuple(LineView(n, text, f"{anchor}-L{n}") for n, text in enumerate(texts, 1))
    for command in policy.commands:  # the lines a command's backslashes join to it
        n = command.line
        while 0 < n < len(lines) and lines[n - 1].text.rstrip().endswith("\\"):
            lines[n].head = lines[command.line - 1]
            n += 1
    return PolicyView(router, policy.name, policy.kind, anchor, lines, note)


class _Lines:
    """The policy files' lines of one scenario, found by the source a rule or error cites."""

    def __init__(self, policies: Sequence[PolicyView]) -> None:
        self._at: dict[tuple[str, int], LineView] = {}
        for policy in policies:
            for line in policy.lines:
                self._at.setdefault((policy.path, line.number), line)

    def line(self, source: str) -> LineView | None:
        file, _, number = source.rpartition(":")  # 'rules.sh:17'
        return self._at.get((file, int(number))) if file and number.isdigit() else None

    def link(self, source: str) -> Link | None:
        """The source as a link to its line, or as text where the page lists no such line;
        None for no source."""
        if not source:
            return None
        found = self.line(source)
        return Link(source, f"#{found.anchor}" if found is not None else "")


def scenario_view(number: int, scenario: Scenario | None, result: ScenarioResult,
                  record: ScenarioRecord | None, site_anchor: str) -> ScenarioView:
    """Scenario number `number` of the page: its matrix, rules, policy files, load errors."""
    anchor = f"s{number}"
    files = [(router, p) for router, ps in (scenario.policies.items() if scenario else ())
             for p in ps]
    policies = tuple(_policy_view(router, p, f"{anchor}-p{j}")
                     for j, (router, p) in enumerate(files))
    lines = _Lines(policies)
    cells = {id(r): f"{anchor}-r{k}" for k, r in enumerate(result.results)}
    errors = tuple(ErrorView(e, f"{anchor}-e{k}",
                             lines.link(f"{e.file}:{e.line}") if e.line else None)
                   for k, e in enumerate(result.load_errors))
    explaining: dict[int, list[Link]] = {}
    for view in errors:
        failed = lines.line(f"{view.error.file}:{view.error.line}")
        if failed is not None:
            failed.errors.append(view)
        for r in explained(view.error, [p for _, p in files], result.results):
            view.rows.append(Link(f"{r.source} → {r.target} {label(r)} IPv{r.family}",
                                  f"#{cells[id(r)]}"))
            explaining.setdefault(id(r), []).append(Link(str(view.error), f"#{view.anchor}"))
    for r in result.results:
        decided = lines.line(r.rule_source)
        if decided is not None:
            decided.decided += 1
        for source in {h.rule.source for h in r.evidence.rule_hits}:
            counted = lines.line(source)
            if counted is not None:
                counted.hits += 1
    rows, rules = _matrix(result, lines, cells, explaining)
    return ScenarioView(anchor, result, record, site_anchor, summary(result, errors), rows,
                        rules, policies, errors)


def _matrix(result: ScenarioResult, lines: _Lines, cells: dict[int, str],
            explaining: dict[int, list[Link]]) -> tuple[tuple[RowView, ...], tuple[RuleView, ...]]:
    """The rows of the matrix, and the deciding rules numbered in the order cells cite them."""
    numbers: dict[str, int] = {}
    rules: list[RuleView] = []
    grouped: dict[tuple[str, str, str], dict[int, CellView]] = {}
    for r in result.results:
        if r.rule and r.rule not in numbers:
            numbers[r.rule] = len(numbers) + 1
            rules.append(RuleView(numbers[r.rule], r.rule, lines.link(r.rule_source)))
        shown_items = tuple(ItemView(i.label, i.text, lines.link(i.source)) for i in items(r))
        grouped.setdefault((r.source, r.target, label(r)), {})[r.family] = CellView(
            r, cells[id(r)], shown_items, numbers.get(r.rule or ""),
            tuple(explaining.get(id(r), ())))
    rows = tuple(RowView(*key, tuple(by_family.get(f) for f in (4, 6)))
                 for key, by_family in grouped.items())
    return rows, tuple(rules)


def summary(result: ScenarioResult, errors: Sequence[ErrorView]) -> str:
    """The scenario in one line: PASS or FAIL, how many rows failed, and what may explain it."""
    total, failed = len(result.results), sum(r.failed for r in result.results)
    if result.passed:
        return f"PASS — all {total} rows hold"
    parts = [f"FAIL — {failed} of {total} rows" if total else "FAIL — no row ran"]
    if result.lab_error:
        parts.append(f"the lab failed: {result.lab_error}")
    causes = [e for e in errors if e.rows]
    explained_rows = len({link.href for e in causes for link in e.rows})
    if causes:
        parts.append(f"{explained_rows} of them may be explained by "
                     + ", ".join(f"{e.error.file}:{e.error.line}" for e in causes)
                     + ", which did not load")
    elif result.load_errors:
        parts.append(f"{len(result.load_errors)} policy line(s) did not load")
    if not result.suspects_match:
        parts.append("the firewall logs name other suspects than expected")
    return "; ".join(parts)
