"""Scenarios: a topology, the policy on its routers and the expectation matrix.

A scenario is a folder with `scenario.yaml` and its policy files; it is data,
validated here completely before any lab boots. Its `topology:` is a built-in
site or a site file in its folder (`topology: campus.yaml`); `load(…, site=FILE)`
runs it on another site, each node it names standing for its counterpart there
(lab.model.counterpart).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import topologies
from lab import userfiles
from lab.errors import BadInput
from lab.model import site_file, yamlfile
from lab.model.counterpart import Counterparts
from lab.model.site import Site
from lab.model.verdict import EXPECTABLE, Verdict
from lab.model.yamlfile import shown
from lab.netfilter.family import family as ip_family
from lab.netfilter.nflog import as_nflog
from lab.netfilter.policy import PolicyFile, read_policy
from probes.registry import PROBES
from probes.tunnel import VARIANTS

_T = TypeVar("_T")
# the built-in scenarios are package data: found where the package is installed
BUILTIN = Path(str(resources.files("scenarios")))
SPEC = "scenario.yaml"
_KEYS = {"summary", "topology", "policy", "expect", "suspects", "trap"}
_EXPECT_KEYS = {"from", "to", "probes", "families", "verdict"}
_OPTIONAL_EXPECT_KEYS = {"variants", "after", "except", "sample", "seed"}
_POLICY_ENTRY_KEYS = {"file", "family"}
_POLICY_ENTRY = "an entry is a file name or {file: NAME, family: 4 or 6}"
# `after:` — wait before probing: until the source is banned, or banned no more
AFTER = ("ban", "unban")
# the most of any one file a scenario reads: a built-in scenario.yaml is 2 KB, a jail less
MAX_BYTES = 1 << 20
# the words of a scenario's refusals to read a file (its callers name the file)
_WORDS = userfiles.Words(
    missing="{reason}", unreadable="{reason}",
    folder="not a regular file (give a text file of at most {limit})",
    special="not a regular file (give a text file of at most {limit})",
    too_big="larger than {limit}, the most a scenario's file may be",
    not_utf8="not UTF-8 text (byte {byte})")
MAX_FILES = 64  # policy or jail files of one node: the built-in scenarios have one
SITE_SUFFIXES = (".yaml", ".yml")  # a `topology:` ending so names a site file
NAME_MAX = 255  # bytes in one part of a path (Linux): longer, and open() fails


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
    # the site file it runs on, read (None: the built-in site named `topology`)
    site_file: Path | None = None
    on_site: Site | None = field(default=None, compare=False, repr=False)

    @property
    def site(self) -> Site:
        return self.on_site if self.on_site is not None else topologies.load(self.topology)

    def with_nflog(self) -> tuple[Scenario, list[str]]:
        """This scenario with its LOG rules run as NFLOG, and a note per translated line."""
        policies: dict[str, tuple[PolicyFile, ...]] = {}
        notes: list[str] = []
        for router, files in self.policies.items():
            translated = []
            for policy in files:
                new, said = as_nflog(policy)
                translated.append(new)
                # a script given for both families carries its reading's notes in both
                notes += [note for note in said if note not in notes]
            policies[router] = tuple(translated)
        return replace(self, policies=policies), notes

    def with_policy(self, files: tuple[PolicyFile, ...]) -> Scenario:
        """This scenario with the policy router's whole policy (both families) replaced."""
        return replace(self, policies={**self.policies, self.site.policy_router: files})

    def with_rules(self, family: int, policy: PolicyFile) -> Scenario:
        """This scenario with the policy router's rules of one family replaced."""
        router = self.site.policy_router
        other = ip_family(family).other.version
        whole = next((p for p in self.policies.get(router, ())
                      if p.kind == "nft" and len(p.families) > 1), None)
        if whole is not None:  # its inet tables cannot be split by family
            raise BadInput(f"scenario {self.name}: {router}'s policy "
                           f"{userfiles.shown(whole.path)} is an nft ruleset for both "
                           f"families: replace it whole with --rules FILE, not --rules-v{family}")
        kept = tuple(p.only(other) for p in self.policies.get(router, ()))
        kept = tuple(p for p in kept if not p.empty)
        return replace(self, policies={**self.policies, router: (*kept, policy.only(family))})


def builtin_names() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN.glob(f"*/{SPEC}"))


def find(name_or_path: str) -> Path:
    """The folder of a built-in scenario name or a path to a scenario folder."""
    path = Path(name_or_path)
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise BadInput(f"scenario {shown(name_or_path)}: a part of the path is longer than "
                       f"{NAME_MAX} bytes, more than a file name can be (shorten it)")
    try:
        if (BUILTIN / name_or_path / SPEC).is_file() and "/" not in name_or_path:
            return BUILTIN / name_or_path
        spec = path / SPEC if path.is_dir() else path
        if spec.name == SPEC and spec.exists() and not spec.is_file():
            raise BadInput(f"{spec}: not a regular file (give a text file)")
        if path.is_dir():
            if not spec.is_file():
                raise BadInput(f"{path}: not a scenario folder (no {SPEC})")
            return path
        if path.is_file() and path.name == SPEC:
            return path.parent
    except OSError as exc:  # EACCES, ENAMETOOLONG of the whole path: pathlib says only ENOENT
        raise BadInput(f"scenario {shown(name_or_path)}: cannot look at it: "
                       f"{exc.strerror}") from None
    raise BadInput(f"unknown scenario {shown(name_or_path)} "
                   "(`port25lab list` shows the built-in ones; or give a scenario folder)")


def load(name_or_path: str, site: Path | None = None) -> Scenario:
    """The scenario, checked; on the site in the file `site` if given, else on its own."""
    folder = find(name_or_path)
    spec_path = folder / SPEC
    try:
        text = _read_text(spec_path)
    except BadInput as exc:
        raise _fail(spec_path, f"cannot read: {exc}") from None
    data = yamlfile.parse(spec_path, text, SPEC, needs="a scenario needs five")
    return _build(folder, spec_path, data, site)


def _read_text(path: Path) -> str:
    """A file the scenario names, read as lab.userfiles reads; BadInput saying why not.

    The path is left unnamed: the caller names the file as the scenario does.
    """
    try:
        return userfiles.read_text(path, "scenario file", MAX_BYTES, _WORDS)
    except userfiles.Unreadable as exc:
        raise BadInput(exc.problem) from None


def _fail(spec: Path, message: str) -> BadInput:
    return BadInput(f"{spec}: {message}")


@dataclass(frozen=True)
class _Names:
    """The node names a scenario gives, checked against its own topology and, when it
    runs on another site, each mapped to its counterpart there."""

    spec: Path
    own: Site
    onto: Counterparts | None = None

    @property
    def site(self) -> Site:
        """The site the scenario runs on."""
        return self.onto.site if self.onto is not None else self.own

    def node(self, name: Any, what: str) -> str:
        if name not in self.own.role_names:
            raise _fail(self.spec, f"{what}: unknown role {shown(name)} in topology "
                                   f"{self.own.name} (roles: {', '.join(self.own.role_names)})")
        if self.onto is None:
            return str(name)
        return self.onto.of(str(name), f"scenario {self.spec.parent.name} ({what})")


def _topology(folder: Path, spec: Path, topology: Any) -> tuple[Site, Path | None]:
    """The scenario's own site: a built-in one, or a site file in its folder."""
    if isinstance(topology, str) and topology.endswith(SITE_SUFFIXES):
        path = folder / _file_name(spec, "topology", topology)
        return site_file.load(path), path
    if not isinstance(topology, str) or topology not in topologies.builtin_names():
        raise _fail(spec, f"topology {shown(topology)} is not one of: "
                          f"{', '.join(topologies.builtin_names())} (or a site file in the "
                          "scenario's folder, e.g. campus.yaml)")
    return topologies.load(topology), None


def _build(folder: Path, spec: Path, data: Any, site: Path | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise _fail(spec, "must be a mapping with topology, policy and expect")
    unknown = _unknown(data, _KEYS)
    if unknown:
        raise _fail(spec, f"unknown key {unknown} (known: {', '.join(sorted(_KEYS))})")
    own, own_file = _topology(folder, spec, data.get("topology"))
    names = _Names(spec, own) if site is None else _Names(
        spec, own, Counterparts(own, site_file.load(site), site))
    plan = names.site
    # an empty value (`policy:`) is none; `[]`, `0` or `false` are mistakes, not "none"
    policies = _policies(folder, spec, names, _or_empty(data.get("policy")))
    traps = _traps(folder, spec, names, _or_empty(data.get("trap")))
    summary = data.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise _fail(spec, f"summary: must be a line of text, not {shown(summary)} "
                          "(quote it if it looks like a list or a number)")
    if summary is not None and _has_control(summary.strip()):
        raise _fail(spec, f"summary: must be one line of text, not {shown(summary.strip())} "
                          "(remove the line break or control character)")
    listed = data.get("suspects")
    expectations = _expectations(spec, names, data.get("expect"),
                                 listed if isinstance(listed, list) else [])
    if not traps and any(e.after for e in expectations):
        raise _fail(spec, "expect: 'after' waits for a ban: the scenario needs a trap")
    suspects = None
    if "suspects" in data:
        named = data["suspects"] if isinstance(data["suspects"], list) else None
        if named is None:
            raise _fail(spec, "suspects: must be a list of roles (may be empty)")
        # a set: the logs' suspects are compared as one, and [client1, client1] never matched
        suspects = tuple(sorted(_unique(names.node(r, "suspects") for r in named)))
    return Scenario(folder.name, folder, (summary or "").strip(), plan.name,
                    policies, expectations, suspects, traps, site or own_file,
                    None if site is None and own_file is None else plan)


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _unknown(data: dict[Any, Any], known: set[str]) -> str:
    """The first key of data (in the file's order) that is not known, quoted; or ''."""
    # keys may be of any type (1, null): sorting them raised TypeError
    return next((shown(key) for key in data if key not in known), "")


def _is_family(value: Any) -> bool:
    # 4.0 == 4 and True == 1 in Python: only the whole number itself is a family
    return type(value) is int and value in (4, 6)


def _policies(folder: Path, spec: Path, names: _Names,
              data: Any) -> dict[str, tuple[PolicyFile, ...]]:
    if not isinstance(data, dict):
        raise _fail(spec, "policy: must map a router role to a list of rules files")
    policies: dict[str, tuple[PolicyFile, ...]] = {}
    for router, files in data.items():
        mapped = names.node(router, "policy")
        if router not in names.own.routers:
            raise _fail(spec, f"policy: {shown(router)} is not a router")
        entries = _listed(files)
        _at_most(spec, f"policy of {router}", entries)
        loaded, seen = [], set()
        for entry in entries:
            family = None
            if isinstance(entry, dict):
                unknown = _unknown(entry, _POLICY_ENTRY_KEYS)
                if unknown:
                    raise _fail(spec, f"policy of {router}: unknown key {unknown} in "
                                      f"{shown(entry)} ({_POLICY_ENTRY})")
                family = entry.get("family")
                if not _is_family(family):
                    raise _fail(spec, f"policy: family of {shown(entry.get('file'))} must be "
                                      f"4 or 6, not {shown(family)}")
                if "file" not in entry:
                    raise _fail(spec, f"policy of {router}: {shown(entry)} names no file "
                                      f"({_POLICY_ENTRY})")
                entry = entry["file"]
            name = _file_name(spec, f"policy of {router}", entry)
            if (name, family) in seen:
                raise _fail(spec, f"policy of {router}: {shown(name)} is named twice (its rules "
                                  "would be added twice: name it once)")
            seen.add((name, family))
            try:
                loaded.append(read_policy(folder / name, family))
            except BadInput as exc:
                raise _fail(spec, f"policy of {router}: {exc}") from None
        policies[mapped] = tuple(loaded)
    return policies


def _traps(folder: Path, spec: Path, names: _Names, data: Any) -> dict[str, tuple[Path, ...]]:
    if not isinstance(data, dict):
        raise _fail(spec, "trap: must map a node to a list of fail2ban jail files")
    traps: dict[str, tuple[Path, ...]] = {}
    for role, files in data.items():
        mapped = names.node(role, "trap")
        if names.own.role(role).kind not in ("router", "server"):
            raise _fail(spec, f"trap: {shown(role)} is not a router or a server")
        entries = _listed(files)
        if not entries:
            raise _fail(spec, f"trap of {role}: name at least one fail2ban jail file")
        _at_most(spec, f"trap of {role}", entries)
        paths: list[Path] = []
        for entry in entries:
            path = folder / _file_name(spec, f"trap of {role}", entry)
            if path in paths:
                raise _fail(spec, f"trap of {role}: {shown(entry)} is named twice (name it once)")
            try:
                _read_text(path)  # before any lab boots; lab.services.trap copies it
            except BadInput as exc:
                raise _fail(spec, f"trap of {role}: cannot read {entry}: {exc}") from None
            paths.append(path)
        traps[mapped] = tuple(paths)
    return traps


def _at_most(spec: Path, where: str, files: list[Any]) -> None:
    # each file is read before the lab boots: 100,000 names of one big file read it as often
    if len(files) > MAX_FILES:
        raise _fail(spec, f"{where}: {len(files)} files, more than the {MAX_FILES} a node may "
                          "have (join them)")


def _has_control(text: str) -> bool:
    """Whether text holds a control character (C0, DEL or C1: a terminal acts on them)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def _file_name(spec: Path, where: str, entry: Any) -> str:
    """A file name as the scenario gives it, checked before the file system sees it."""
    if not isinstance(entry, str) or not entry:
        raise _fail(spec, f"{where}: {shown(entry)} is not a file name")
    if _has_control(entry):  # a NUL: open() raised ValueError
        raise _fail(spec, f"{where}: file name {shown(entry)} holds a control character "
                          "(remove it)")
    if any(len(part.encode()) > NAME_MAX for part in Path(entry).parts):
        raise _fail(spec, f"{where}: file name {shown(entry)} has a part longer than "
                          f"{NAME_MAX} bytes, more than a file name can be (shorten it)")
    return entry


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
            raise _fail(spec, f"{where}: unknown {probe} variant {shown(variant)} "
                              f"(variants: {', '.join(known)})")
    return _unique(str(v) for v in _listed(data))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sample(sources: list[str], named: Iterable[str], size: int, seed: str) -> list[str]:
    """`size` of the sources, the same every run for the same seed; the named ones always.

    The others are drawn by Python's random.Random(seed).sample (a string seed: the same
    draw on every machine for one Python), kept in the sources' order.
    """
    keep = [s for s in dict.fromkeys(named) if s in sources]
    others = [s for s in sources if s not in keep]
    drawn = random.Random(seed).sample(others, max(0, min(size - len(keep), len(others))))
    chosen = set(keep) | set(drawn)
    return [s for s in sources if s in chosen]


def _expectations(spec: Path, names: _Names, data: Any,
                  suspects: list[Any] | None = None) -> tuple[Expectation, ...]:
    if not isinstance(data, list) or not data:
        raise _fail(spec, "expect: must be a non-empty list of expectations")
    found: dict[tuple[str, str, str, int, str, str], Expectation] = {}
    for number, item in enumerate(data, 1):
        where = f"expect #{number}"
        if not isinstance(item, dict):
            raise _fail(spec, f"{where}: must be a mapping with {', '.join(sorted(_EXPECT_KEYS))}")
        unknown = _unknown(item, _EXPECT_KEYS | _OPTIONAL_EXPECT_KEYS)
        if unknown:
            raise _fail(spec, f"{where}: unknown key {unknown}")
        missing = sorted(_EXPECT_KEYS - set(item))
        if missing:
            raise _fail(spec, f"{where}: missing key {missing[0]!r}")
        try:
            verdict = Verdict(item["verdict"])
        except ValueError:
            verdict = None
        if verdict is None or verdict == Verdict.NOT_APPLICABLE:
            raise _fail(spec, f"{where}: verdict {shown(item['verdict'])} is not one of "
                              f"{', '.join(v.value for v in (*EXPECTABLE, Verdict.ERROR))} "
                              "(a scenario may expect all but error)") from None
        if verdict == Verdict.ERROR:
            raise _fail(spec, f"{where}: verdict 'error' can never pass: it says the lab "
                              "could not decide (expect what the policy should do)")
        target = names.node(item["to"], where)
        for listed in ("from", "probes", "families"):
            if not _listed(item[listed]):
                raise _fail(spec, f"{where}: {listed}: name at least one")
        after = item.get("after", "")
        if after not in ("", *AFTER):
            raise _fail(spec, f"{where}: after: {shown(after)} is not one of {', '.join(AFTER)}")
        # each list checked, then each name once: [clients, clients, …] x [teredo, teredo, …]
        # multiplied (300 of each, 5 KB, took 2.3 s; 1 MiB would take hours)
        def group(name: Any, what: str) -> list[str]:
            """A role, or a scenario's word for several: every client, its suspects."""
            if name == "clients":
                return list(names.site.clients)
            if name == "suspects":
                return [names.node(r, f"{what}: suspects") for r in suspects or ()]
            return [names.node(name, what)]

        sources = _unique(s for g in _listed(item["from"]) for s in group(g, where))
        if "except" in item:
            left_out = {s for g in _listed(item["except"]) for s in group(g, f"{where}: except")}
            sources = [s for s in sources if s not in left_out]
        if "sample" in item:
            size = item["sample"]
            if type(size) is not int or size < 1:
                raise _fail(spec, f"{where}: sample: {shown(size)} must be a whole number, "
                                  "1 or more (how many of its sources to probe)")
            seed = item.get("seed", number)
            if type(seed) is not int:
                raise _fail(spec, f"{where}: seed: {shown(seed)} must be a whole number")
            named = [names.node(g, where) for g in _listed(item["from"])
                     if g not in ("clients", "suspects")]
            sources = sample(sources, named, size, f"sample {seed}")
        if not sources:
            raise _fail(spec, f"{where}: from: no source is left (except: took them all)")
        if names.site.role(target).light:
            raise _fail(spec, f"{where}: to: {target} is a light client (no recorder runs in "
                              "it): aim at a host of the site's hosts:")
        for source in sources:
            if source == target:
                raise _fail(spec, f"{where}: {source} cannot probe itself")
        probes = _unique(_probe(spec, where, probe) for probe in _listed(item["probes"]))
        variants = {probe: _variants(spec, where, probe, item.get("variants")) for probe in probes}
        families = _unique(_family(spec, where, family) for family in _listed(item["families"]))
        for source, probe, family in itertools.product(sources, probes, families):
            if variants[probe] != [""] and family != 4:
                raise _fail(spec, f"{where}: {probe} travels in IPv4: family must be 4")
            for variant in variants[probe]:
                key = (source, target, probe, family, variant, after)
                if key in found and found[key].verdict != verdict:
                    label = f"{probe}:{variant}" if variant else probe
                    raise _fail(spec, f"{where}: contradicts an earlier expectation "
                                      f"for {source} → {target} {label} IPv{family}")
                found[key] = Expectation(source, target, probe, family, verdict, variant, after)
    return tuple(found.values())


def _unique(values: Iterable[_T]) -> list[_T]:
    """The values in their order, each once."""
    return list(dict.fromkeys(values))


def _probe(spec: Path, where: str, probe: Any) -> str:
    if not isinstance(probe, str) or probe not in PROBES:
        raise _fail(spec, f"{where}: unknown probe {shown(probe)} (probes: {', '.join(PROBES)})")
    return probe


def _family(spec: Path, where: str, family: Any) -> int:
    if not _is_family(family):
        raise _fail(spec, f"{where}: family {shown(family)} must be 4 or 6")
    return int(family)
