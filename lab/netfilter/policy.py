"""Policies: a router's rules as a file in one of the netfilter dialects, read and applied.

`read_policy` tells the dialects apart (lab.netfilter.script, lab.netfilter.save,
lab.netfilter.nft) and `apply_policy` loads one on a router. A script is run command by command,
exactly as written (plus `-w`, so that parallel calls wait for the xtables lock
instead of failing). A command that fails is a load error `FILE:LINE: message`;
the rest still load, as they would on a real router whose boot script has a
broken line. A save file is restored whole, by the family's restore tool; an nft
ruleset is loaded whole by `nft -f -` (atomic: on an error nothing of it loads, and
the error says so).

A policy is untrusted input: a command only ever runs one of the lab's own
netfilter tools, found by the lab in /sbin or /usr/sbin whatever path the
line names, as an argument list (no shell). What a file holds is never quoted
back in an error unless it is netfilter syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from lab import userfiles
from lab.errors import BadInput
from lab.netfilter import nft, origin, save, script
from lab.netfilter.family import family as ip_family
from lab.netfilter.script import Command
from lab.userfiles import shown

# The most of a policy file that is read: far above any real gateway's rules, far
# below what would make reading it take long.
MAX_BYTES = 8 * 1024 * 1024
_WORDS = userfiles.Words(missing="no such {what}", too_big="over {limit}, too big for a {what}",
                         binary="binary file, not an iptables script, iptables-save file "
                         "or nft ruleset")


@dataclass(frozen=True)
class LoadError:
    """A policy line the kernel refused."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        # line 0: the file as a whole (e.g. a jail fail2ban refused)
        return f"{self.file}:{self.line}: {self.message}" if self.line else (
            f"{self.file}: {self.message}")


# a table an nft ruleset names, as a block (`table ip filter {`) or a command (`add table
# ip filter`, `add rule ip filter FORWARD …`: what iptables-restore-translate prints)
_NFT_TABLE = re.compile(r"^[ \t]*(?:(?:add|create|insert)[ \t]+(?:table|chain|rule|set|map)"
                        r"|table)[ \t]+(?:(ip6?|inet|arp|bridge|netdev)[ \t]+)?([\w.-]+)",
                        re.MULTILINE)


@dataclass(frozen=True)
class PolicyFile:
    """A script of commands, an iptables-save/ip6tables-save dump of one family, or an
    nft ruleset (its includes inlined: lab.netfilter.nft)."""

    path: Path
    kind: str  # "script", "save" or "nft"
    commands: tuple[Command, ...] = ()
    save_text: str = ""
    family: int | None = None  # set for save files
    notes: tuple[str, ...] = ()  # what of a script the lab does not run (lab.netfilter.script)
    ruleset: nft.Ruleset | None = None  # set for nft rulesets
    # a twin's replay of collected rules: what does not load is left out, the rest loads
    replay: bool = False
    label: str = ""  # what reports call a policy that is no file (a twin's collected rules)

    @property
    def name(self) -> str:
        """The policy as reports and errors name it: its label, or its file as shown."""
        return self.label or shown(self.path)

    @property
    def families(self) -> frozenset[int]:
        if self.kind == "save":
            return frozenset({self.save_family})
        if self.kind == "nft":
            return self.ruleset.families if self.ruleset is not None else frozenset()
        return frozenset(f for c in self.commands for f in script.families_of(c))

    @property
    def nft_tables(self) -> frozenset[tuple[str, str]]:
        """The (family, name) of each table its nft rulesets declare: nft's, not iptables'.

        iptables-save also prints a table nft made in the family and with the name of
        an xtables table (an `iptables-restore-translate` output: `table ip filter`),
        and silently leaves out what it cannot say in iptables words (a set lookup):
        such a table's rules are read as nft rules, by what made them.
        """
        rulesets = [self.ruleset] if self.kind == "nft" else [
            c.ruleset for c in self.commands]
        return frozenset(
            (m.group(1) or "ip", m.group(2)) for r in rulesets if r is not None
            for m in _NFT_TABLE.finditer(r.text))

    @property
    def save_family(self) -> int:
        """A save file's family (a save file holds one; read_policy always sets it)."""
        if self.family is None:
            raise ValueError(f"{self.path}: a save policy without its family")
        return self.family

    def only(self, family: int) -> PolicyFile:
        """The part of this policy that concerns one family."""
        if self.kind == "save":
            return self if self.family == family else replace(self, save_text="", family=family)
        if self.kind == "nft":  # an inet table is one for both: the file stays whole
            return self if family in self.families else replace(self, ruleset=None)
        return replace(self, commands=tuple(c for c in self.commands
                                            if family in script.families_of(c)))

    @property
    def empty(self) -> bool:
        if self.kind == "nft":
            return self.ruleset is None or self.ruleset.empty
        return not self.commands if self.kind == "script" else not self.save_text


def read_policy(path: Path, family: int | None = None) -> PolicyFile:
    """Read a policy file, telling a script from a save dump; BadInput if it is neither.

    An empty or comment-only file (what `ip6tables-save` prints on a gateway without
    IPv6 rules) is an empty policy: the chains' policies decide.
    """
    text = userfiles.read_text(path, "rules file", MAX_BYTES, _WORDS)
    first = next(save.lines(text), None)  # the first line neither blank nor a comment
    if first is None:
        header = save.header_family(text)
        if family is not None and header not in (None, family):
            raise BadInput(f"{path}: holds IPv{header} rules, given as IPv{family}")
        return PolicyFile(path, "script")
    if nft.looks_like_nft(text):
        ruleset = nft.read(path, text)
        nft.check(ruleset)
        if family is not None and not ruleset.empty and family not in ruleset.families:
            raise BadInput(f"{path}: an nft ruleset without IPv{family} tables, given as "
                           f"IPv{family}")
        return PolicyFile(path, "nft", ruleset=ruleset)
    if first[1].startswith("*"):  # a table: what iptables-save prints first
        return PolicyFile(path, "save", save_text=text, family=save.check(path, text, family))
    read = script.read_script(path, text)
    return PolicyFile(path, "script", commands=read.commands, notes=read.notes)


def override(path: Path, family: int, other: Path | None) -> tuple[PolicyFile, list[str]]:
    """A `--rules-v4`/`--rules-v6` file as the rules of one family, and notes on the rest.

    `other` is the file given for the other family, if any. A file without a rule of
    its family is bad input unless it is empty (an empty policy).
    """
    option, program = f"--rules-v{family}", ip_family(family).tool
    other_family = ip_family(family).other.version
    policy = read_policy(path, family)
    both = _both_families(policy)
    if both:
        raise BadInput(f"{both}: nft rules for IPv4 and IPv6 at once (an inet table, or ip "
                       f"and ip6 tables) cannot be given as {option}: give the file with "
                       "--rules FILE (the whole policy)")
    _flushes_only(policy, family, option)
    own = policy.only(family)
    if own.empty and not policy.empty:
        raise BadInput(f"{path}: has no {program} rules for {option}")
    left = [c for c in policy.commands if family not in script.families_of(c)]
    if not left:
        return own, []
    named = ", ".join(f"{c.file}:{c.line}" for c in left[:10])
    more = f" and {len(left) - 10} more" if len(left) > 10 else ""
    rest = (f"the IPv{other_family} rules come from {other}" if other is not None else
            f"the scenario's own IPv{other_family} rules stay (replace them with "
            f"--rules-v{other_family})")
    return own, [f"{option} {shown(path)}: its {len(left)} IPv{other_family} command(s) "
                 f"are left out ({named}{more}): {rest}"]


def _flushes_only(policy: PolicyFile, family: int, option: str) -> None:
    """BadInput where a ruleset given for one family flushes the other's rules too.

    The other family's rules load with it (before or after it): a `flush ruleset` of
    both would remove them whichever way round.
    """
    own = "ip" if family == 4 else "ip6"

    def refused(where: str, said: str) -> BadInput:
        return BadInput(f"{where}: `{said}` also removes the IPv"
                        f"{ip_family(family).other.version} rules that load with {option}: "
                        f"write `{said} {own}`, or give the whole policy with --rules FILE")

    rulesets = [policy.ruleset] if policy.ruleset is not None else [
        c.ruleset for c in policy.commands if c.ruleset is not None]
    for ruleset in rulesets:
        for line, removed in nft.flushes(ruleset.text):
            if removed - {family}:
                file, at = ruleset.where(line)
                raise refused(f"{file}:{at}", "flush ruleset")
    for cmd in policy.commands:
        if script.is_nft(cmd) and nft.flushes(" ".join(cmd.argv[1:])) and (
                nft.flushes(" ".join(cmd.argv[1:]))[0][1] - {family}):
            raise refused(f"{cmd.file}:{cmd.line}", "nft flush ruleset")


def _both_families(policy: PolicyFile) -> str:
    """Where an nft policy, or an nft call of a script, holds rules of both families ('')."""
    if policy.kind == "nft":
        return policy.name if len(policy.families) > 1 else ""
    return next((f"{c.file}:{c.line}" for c in policy.commands
                 if len(script.families_of(c)) > 1 and not (
                     script.is_nft(c) and nft.flushes(" ".join(c.argv[1:])))), "")


# A runner executes argv in the router's namespace, with optional standard input,
# and returns (exit status, standard error).
Runner = Callable[[list[str], str | None], tuple[int, str]]


def apply_policy(policy: PolicyFile, run: Runner, tag_sources: bool = False) -> list[LoadError]:
    """Load a policy on a router; returns the lines that failed, in order.

    `tag_sources`: each rule is loaded tagged with its file and line
    (lab.netfilter.origin), so that a verdict can cite them — what a verify run
    wants; a node that plays a real gateway is loaded as written. The tag never
    changes what loads: a command or save file that fails tagged is run again as
    written, and that run's error is the one reported.
    """
    errors: list[LoadError] = []
    if policy.kind == "nft":
        if policy.ruleset is None or policy.ruleset.empty:
            return errors
        return load_ruleset(policy.ruleset, run, tag_sources, policy.replay)
    if policy.kind == "script":
        tags = origin.ChainTags()
        for cmd in policy.commands:
            if cmd.ruleset is not None:  # `nft -f FILE` of a file beside the script
                errors.extend(load_ruleset(cmd.ruleset, run, tag_sources))
                continue
            if script.is_nft(cmd):
                errors.extend(_run_nft(cmd, run, tag_sources))
                continue
            tool = script.netfilter_tool(cmd.argv[0])
            if tool is None:
                name = PurePosixPath(cmd.argv[0]).name
                why = "not installed in" if name in script.PROGRAMS else "not a netfilter tool of"
                errors.append(LoadError(cmd.file, cmd.line,
                                        f"{name}: {why} {' or '.join(script.TOOL_FOLDERS)}"))
                continue
            argv = [tool, "-w", *cmd.argv[1:]]
            status, err = (_run_tagged(cmd, argv, tags, run) if tag_sources
                           else run(argv, None))
            if status != 0:
                errors.append(LoadError(cmd.file, cmd.line, _first_line(err, status)))
        return errors
    if not policy.save_text:
        return errors
    family = policy.save_family
    restore = [ip_family(family).restore, "-w"]
    text = origin.tagged_save(policy.save_text, policy.name) if tag_sources else (
        policy.save_text)
    status, err = run(restore, text)
    if status != 0 and tag_sources:
        status, err = run(restore, policy.save_text)
    if status != 0:
        # legacy: "line 5 failed"; nf_tables: "Error occurred at line: 5"
        match = re.search(r"line:? (\d+)", err)
        message = _first_line(err, status)
        line = _failed_rule(policy.save_text, family, int(match.group(1)) if match else 0,
                            message, run)
        errors.append(LoadError(policy.name, line, message))
    return errors


def load_ruleset(ruleset: nft.Ruleset, run: Runner, tag_sources: bool = False,
                 replay: bool = False) -> list[LoadError]:
    """Load an nft ruleset whole (`nft -f -`); its error, naming the file and line nft names.

    `replay` (a twin's collected ruleset): each rule nft refuses is left out and the
    rest loaded again, each left-out rule an error, until it loads or an error is no
    rule's (then nothing of it loads, as the error says).
    """
    argv = [nft.program(), "-f", "-"]
    errors: list[LoadError] = []
    rule_lines = {r.line for r in nft.rules(ruleset.text)} if replay else set()
    for _ in range(nft.MAX_REPLAYS if replay else 1):
        status, err = run(argv, nft.tagged(ruleset)) if tag_sources else (1, "")
        if status != 0:
            status, err = run(argv, ruleset.text)
        if status == 0:
            return sorted(errors, key=lambda e: e.line)
        failed = {f.line for f in nft.failures(err)}
        if replay and failed and failed <= rule_lines:
            for line in sorted(failed):
                file, at = ruleset.where(line)
                message = next(f.message for f in nft.failures(err) if f.line == line)
                errors.append(LoadError(file, at, f"{message} (left out of the replay)"))
            ruleset = nft.without_lines(ruleset, failed)
            rule_lines -= failed
            continue
        break
    file, line, message = nft.located(ruleset, err, status)
    return [LoadError(file, line, f"{message} (nft -f loads a file whole: nothing of "
                                  f"{ruleset.file} loaded)"), *sorted(errors, key=lambda e: e.line)]


def _run_nft(cmd: Command, run: Runner, tag_sources: bool) -> list[LoadError]:
    """One `nft COMMAND …` call of a script, a rule it adds tagged with the script's line."""
    argv = [nft.program(), *cmd.argv[1:]]
    status, err = 1, ""
    if tag_sources and script.nft_adds_rule(cmd):
        said = origin.tag(cmd.file, cmd.line, nft.COMMENT_LIMIT)
        status, err = run([*argv, "comment", f'"{said}"'], None)
    if status != 0:
        status, err = run(argv, None)
    if status == 0:
        return []
    found = nft.failures(err)
    return [LoadError(cmd.file, cmd.line, found[0].message if found else _first_line(err, status))]


def _run_tagged(cmd: Command, argv: list[str], tags: origin.ChainTags,
                run: Runner) -> tuple[int, str]:
    """Run one command, a rule it adds tagged with its line (lab.netfilter.origin).

    A rule named by its words (`-D CHAIN …`, `-C CHAIN …`) carries its tag in the
    kernel: where the words as written match no rule, they are tried with the tag
    of each rule loaded in that chain, in the chain's order, as iptables would
    find the first that matches.
    """
    where = origin.spec(argv)
    said = ""
    if where is not None and where.adds:
        said = origin.tag(cmd.file, cmd.line)
        status, err = run(origin.tagged(argv, where, said), None)
        if status != 0:
            said = ""
            status, err = run(argv, None)
    else:
        status, err = run(argv, None)
    if status != 0 and where is not None and where.by_words:
        for candidate in tags.in_chain(cmd.family, where.table, where.chain):
            if run(origin.tagged(argv, where, candidate), None)[0] == 0:
                status, err, said = 0, "", candidate
                break
    if status == 0:
        tags.ran(cmd.family, argv, said)
    return status, err


def _failed_rule(text: str, family: int, line: int, message: str, run: Runner) -> int:
    """The rule line behind a restore error reported at a table's COMMIT line.

    Some errors (a jump to a chain that does not exist, with nf_tables) only show
    when the table is committed, and the restore tool names the COMMIT line. The
    table's rules are then restored again, in growing prefixes (bisected), where
    they cannot change the router: in a fresh network namespace of their own that
    ends with the restore tool (`unshare --net`; `--test` would not commit, and
    these errors only show at commit). The first prefix that fails the same way
    names the rule. Where that does not reproduce the error, the tool's line stays.
    """
    said = list(save.lines(text))
    at = next((i for i, (number, _, _) in enumerate(said) if number == line), None)
    if at is None or said[at][1] != "COMMIT":
        return line
    start = max((i for i in range(at) if said[i][1].startswith("*")), default=None)
    if start is None:
        return line
    table = [(number, rule) for number, rule, _ in said[start:at]]
    head = [rule for _, rule in table if rule.startswith(("*", ":"))]
    rules = [(number, rule) for number, rule in table if not rule.startswith(("*", ":"))]

    tried: dict[int, str | None] = {}

    def failure(count: int) -> str | None:
        if count not in tried:
            trial = "\n".join([*head, *(r for _, r in rules[:count]), "COMMIT"]) + "\n"
            status, err = run(["unshare", "--net", ip_family(family).restore, "-w"], trial)
            tried[count] = _without_line(_first_line(err, status)) if status else None
        return tried[count]

    wanted = _without_line(message)
    if not rules or failure(len(rules)) != wanted:
        return line
    passes, fails = 0, len(rules)  # prefix lengths: the empty one is assumed to load
    while fails - passes > 1:
        middle = (passes + fails) // 2
        if failure(middle) is None:
            passes = middle
        else:
            fails = middle
    if failure(fails) != wanted or (fails == 1 and failure(0) is not None):
        return line
    return rules[fails - 1][0]


def _without_line(message: str) -> str:
    return re.sub(r"\bline:? \d+", "line", message)


def _first_line(err: str, status: int) -> str:
    for line in err.splitlines():
        if line.strip() and not line.startswith("Try `"):
            return line.strip()
    return f"failed with status {status}"
