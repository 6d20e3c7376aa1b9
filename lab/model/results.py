"""What a verify run found: a result per probe with its evidence, a result per scenario."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.model.evidence import Ban, Evidence, Suspect
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError
from lab.netfilter.rules import Rule


@dataclass(frozen=True)
class Result:
    """One probe's verdict against its expectation; `detail` is its evidence in words."""

    source: str
    target: str
    probe: str
    family: int
    expected: Verdict
    observed: Verdict
    rule: str | None
    detail: str
    elapsed_ms: float  # the sender's wait for an answer
    wall_ms: float = 0.0  # the whole probe: sender, far side and router evidence
    variant: str = ""  # for tunnel probes: which shape of the packet
    after: str = ""  # "ban" / "unban": probed once the source was (no longer) banned
    weak_account: str = ""  # guessing: the account that accepted a trivial password
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def passed(self) -> bool:
        return self.observed == self.expected and self.observed != Verdict.ERROR

    @property
    def deciding_rule(self) -> Rule | None:
        """The rule `rule` cites, as the evidence holds it (with its source line)."""
        held = [h.rule for h in self.evidence.rule_hits]
        if self.evidence.delivery is not None and self.evidence.delivery.stopped_by is not None:
            held.append(self.evidence.delivery.stopped_by)
        return next((r for r in held if self.rule is not None and r.cite() == self.rule), None)

    @property
    def rule_source(self) -> str:
        """The policy file and line the deciding rule was written in ('rules.sh:17'), or ''."""
        found = self.deciding_rule
        return found.source if found is not None else ""

    @property
    def applicable(self) -> bool:
        """False for a row the site gives no path (not probed: neither passed nor failed)."""
        return self.observed != Verdict.NOT_APPLICABLE

    @property
    def failed(self) -> bool:
        return self.applicable and not self.passed


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    topology: str  # the site's name
    load_errors: tuple[LoadError, ...] = ()
    results: tuple[Result, ...] = ()
    lab_error: str | None = None
    boot_ms: float = 0.0
    notes: tuple[str, ...] = field(default=())
    suspects: tuple[Suspect, ...] = ()
    expected_suspects: tuple[str, ...] | None = None
    bans: tuple[Ban, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)  # banned address → role
    site_file: str = ""  # the site file it ran on ("": the built-in site)
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # router → policy files

    @property
    def weak_accounts(self) -> tuple[str, ...]:
        return tuple(sorted({r.weak_account for r in self.results if r.weak_account}))

    @property
    def suspects_match(self) -> bool:
        """The firewall logs name exactly the expected hosts (True when not checked)."""
        return self.expected_suspects is None or tuple(
            sorted({s.role for s in self.suspects})) == self.expected_suspects

    @property
    def not_applicable(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if not r.applicable)

    @property
    def passed(self) -> bool:
        """Every applicable row holds (and one at least does); rows the site gives no path
        count neither way."""
        return (not self.load_errors and self.lab_error is None
                and any(r.applicable for r in self.results)
                and not any(r.failed for r in self.results) and self.suspects_match)
