"""Scenarios: a topology, the policy on its routers and the expectation matrix.

A scenario is a folder with `scenario.yaml` and its policy files; it is data,
validated here completely before any lab boots.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lab.errors import BadInput
from lab.model.site import Plan
from lab.model.verdict import Verdict
from lab.netfilter.policy import PolicyFile, read_policy
from lab.services.firewall_log import as_nflog
from probes.registry import PROBES
from probes.tunnel import VARIANTS
from topologies import TOPOLOGIES

# the built-in scenarios are package data: found where the package is installed
BUILTIN = Path(str(resources.files("scenarios")))
SPEC = "scenario.yaml"
_KEYS = {"summary", "topology", "policy", "expect", "suspects", "trap"}
_EXPECT_KEYS = {"from", "to", "probes", "families", "verdict"}
_OPTIONAL_EXPECT_KEYS = {"variants", "after"}
# `after:` — wait before probing: until the source is banned, or banned no more
AFTER = ("ban", "unban")


@dataclass(frozen=True)
class Expectation:
    """(source role, probe, family) towards a target role → the verdict the policy intends."""

    source: str
    target: str
    probe: str
    family: int
    verdict: Verdict
    variant: str = ""  # tunnel probes only: one shape of the tunnelled packet
    after: str = ""  # "ban" or "unban": probe once the source is (no longer) banned


@dataclass(frozen=True)
class Scenario:
    name: str
    folder: Path
    summary: str
    topology: str
    policies: dict[str, tuple[PolicyFile, ...]]
    expectations: tuple[Expectation, ...]
    # the internal hosts the firewall logs must name, exactly (None: not checked)
    suspects: tuple[str, ...] | None = None
    # node → jail files of a private fail2ban in that node (lab.services.trap)
    traps: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        return TOPOLOGIES[self.topology].PLAN

    def with_nflog(self) -> tuple[Scenario, list[str]]:
        """This scenario with its LOG rules run as NFLOG, and a note per translated line."""
        policies: dict[str, tuple[PolicyFile, ...]] = {}
        notes: list[str] = []
        for router, files in self.policies.items():
            translated = []
            for policy in files:
                new, said = as_nflog(policy)
                translated.append(new)
                notes += said
            policies[router] = tuple(translated)
        return replace(self, policies=policies), notes

    def with_rules(self, family: int, policy: PolicyFile) -> Scenario:
        """This scenario with the policy router's rules of one family replaced."""
        router = self.plan.policy_router
        other = 10 - family  # 4 <-> 6
        kept = tuple(p.only(other) for p in self.policies.get(router, ()))
        kept = tuple(p for p in kept if not p.empty)
        return replace(self, policies={**self.policies, router: (*kept, policy.only(family))})


def builtin_names() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN.glob(f"*/{SPEC}"))


def find(name_or_path: str) -> Path:
    """The folder of a built-in scenario name or a path to a scenario folder."""
    path = Path(name_or_path)
    if (BUILTIN / name_or_path / SPEC).is_file() and "/" not in name_or_path:
        return BUILTIN / name_or_path
    if path.is_dir():
        if not (path / SPEC).is_file():
            raise BadInput(f"{path}: not a scenario folder (no {SPEC})")
        return path
    if path.is_file() and path.name == SPEC:
        return path.parent
    raise BadInput(f"unknown scenario '{name_or_path}' "
                   "(`port25lab list` shows the built-in ones; or give a scenario folder)")


def load(name_or_path: str) -> Scenario:
    folder = find(name_or_path)
    spec_path = folder / SPEC
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise BadInput(f"{spec_path}{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{spec_path}: cannot read: {exc}") from None
    return _build(folder, spec_path, data)


def _fail(spec: Path, message: str) -> BadInput:
    return BadInput(f"{spec}: {message}")


def _build(folder: Path, spec: Path, data: Any) -> Scenario:
    if not isinstance(data, dict):
        raise _fail(spec, "must be a mapping with topology, policy and expect")
    unknown = set(data) - _KEYS
    if unknown:
        raise _fail(spec, f"unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(_KEYS))})")
    topology = data.get("topology")
    if not isinstance(topology, str) or topology not in TOPOLOGIES:
        raise _fail(spec, f"topology '{topology}' is not one of: {', '.join(TOPOLOGIES)}")
    plan = TOPOLOGIES[topology].PLAN
    policies = _policies(folder, spec, plan, data.get("policy") or {})
    traps = _traps(folder, spec, plan, data.get("trap") or {})
    expectations = _expectations(spec, plan, data.get("expect"))
    if not traps and any(e.after for e in expectations):
        raise _fail(spec, "expect: 'after' waits for a ban: the scenario needs a trap")
    suspects = None
    if "suspects" in data:
        named = data["suspects"] if isinstance(data["suspects"], list) else None
        if named is None:
            raise _fail(spec, "suspects: must be a list of roles (may be empty)")
        suspects = tuple(sorted(_role(spec, plan, r, "suspects") for r in named))
    return Scenario(folder.name, folder, str(data.get("summary", "")).strip(), topology,
                    policies, expectations, suspects, traps)


def _role(spec: Path, plan: Plan, role: Any, what: str) -> str:
    if role not in plan.role_names:
        raise _fail(spec, f"{what}: unknown role '{role}' in topology {plan.name} "
                          f"(roles: {', '.join(plan.role_names)})")
    return str(role)


def _policies(folder: Path, spec: Path, plan: Plan, data: Any) -> dict[str, tuple[PolicyFile, ...]]:
    if not isinstance(data, dict):
        raise _fail(spec, "policy: must map a router role to a list of rules files")
    policies: dict[str, tuple[PolicyFile, ...]] = {}
    for router, files in data.items():
        _role(spec, plan, router, "policy")
        if router not in plan.routers:
            raise _fail(spec, f"policy: '{router}' is not a router")
        entries = files if isinstance(files, list) else [files]
        loaded = []
        for entry in entries:
            family = None
            if isinstance(entry, dict):
                family = entry.get("family")
                if family not in (4, 6):
                    raise _fail(spec, f"policy: family of {entry.get('file')} must be 4 or 6")
                entry = entry.get("file")
            if not isinstance(entry, str):
                raise _fail(spec, f"policy: '{entry}' is not a file name")
            try:
                loaded.append(read_policy(folder / entry, family))
            except BadInput as exc:
                raise _fail(spec, f"policy of {router}: {exc}") from None
        policies[str(router)] = tuple(loaded)
    return policies


def _traps(folder: Path, spec: Path, plan: Plan, data: Any) -> dict[str, tuple[Path, ...]]:
    if not isinstance(data, dict):
        raise _fail(spec, "trap: must map a node to a list of fail2ban jail files")
    traps: dict[str, tuple[Path, ...]] = {}
    for role, files in data.items():
        _role(spec, plan, role, "trap")
        if plan.role(role).kind not in ("router", "server"):
            raise _fail(spec, f"trap: '{role}' is not a router or a server")
        paths = []
        for entry in _listed(files):
            if not isinstance(entry, str) or not entry:
                raise _fail(spec, f"trap: '{entry}' is not a file name")
            path = folder / entry
            try:
                path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise _fail(spec, f"trap of {role}: cannot read {entry}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
            paths.append(path)
        traps[str(role)] = tuple(paths)
    return traps


def _variants(spec: Path, where: str, probe: str, data: Any) -> list[str]:
    """The variants an expectation names (all of the probe's when it names none)."""
    known = VARIANTS.get(probe)
    if known is None:
        if data is not None:
            raise _fail(spec, f"{where}: probe '{probe}' has no variants")
        return [""]
    if data is None:
        return list(known)
    if not _listed(data):
        raise _fail(spec, f"{where}: variants: name at least one (or leave the key out)")
    for variant in _listed(data):
        if not isinstance(variant, str) or variant not in known:
            raise _fail(spec, f"{where}: unknown {probe} variant {variant!r} "
                              f"(variants: {', '.join(known)})")
    return [str(v) for v in _listed(data)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _expectations(spec: Path, plan: Plan, data: Any) -> tuple[Expectation, ...]:
    if not isinstance(data, list) or not data:
        raise _fail(spec, "expect: must be a non-empty list of expectations")
    found: dict[tuple[str, str, str, int, str, str], Expectation] = {}
    for number, item in enumerate(data, 1):
        where = f"expect #{number}"
        if not isinstance(item, dict):
            raise _fail(spec, f"{where}: must be a mapping with {', '.join(sorted(_EXPECT_KEYS))}")
        unknown = set(item) - _EXPECT_KEYS - _OPTIONAL_EXPECT_KEYS
        missing = _EXPECT_KEYS - set(item)
        if unknown or missing:
            key = sorted(unknown)[0] if unknown else sorted(missing)[0]
            raise _fail(spec, f"{where}: {'unknown' if unknown else 'missing'} key '{key}'")
        sources = [s for group in _listed(item["from"])
                   for s in (plan.clients if group == "clients" else [group])]
        try:
            verdict = Verdict(item["verdict"])
        except ValueError:
            raise _fail(spec, f"{where}: verdict '{item['verdict']}' is not one of "
                              f"{', '.join(v.value for v in Verdict)}") from None
        target = _role(spec, plan, item["to"], where)
        for key in ("from", "probes", "families"):
            if not _listed(item[key]):
                raise _fail(spec, f"{where}: {key}: name at least one")
        after = item.get("after", "")
        if after not in ("", *AFTER):
            raise _fail(spec, f"{where}: after: {after!r} is not one of {', '.join(AFTER)}")
        for source in sources:
            _role(spec, plan, source, where)
            if source == target:
                raise _fail(spec, f"{where}: {source} cannot probe itself")
            for probe in _listed(item["probes"]):
                if not isinstance(probe, str) or probe not in PROBES:
                    raise _fail(spec, f"{where}: unknown probe '{probe}' "
                                      f"(probes: {', '.join(PROBES)})")
                variants = _variants(spec, where, probe, item.get("variants"))
                for family in _listed(item["families"]):
                    if family not in (4, 6):
                        raise _fail(spec, f"{where}: family {family!r} must be 4 or 6")
                    if variants != [""] and family != 4:
                        raise _fail(spec, f"{where}: {probe} travels in IPv4: family must be 4")
                    for variant in variants:
                        key = (source, target, probe, family, variant, after)
                        if key in found and found[key].verdict != verdict:
                            label = f"{probe}:{variant}" if variant else probe
                            raise _fail(spec, f"{where}: contradicts an earlier expectation "
                                              f"for {source} → {target} {label} IPv{family}")
                        found[key] = Expectation(source, target, probe, family, verdict,
                                                 variant, after)
    return tuple(found.values())
