"""Policies: published iptables scripts and iptables-save files, read and applied.

A script is run command by command, exactly as written (plus `-w`, so that
parallel calls wait for the xtables lock instead of failing). A command that
fails is a load error `FILE:LINE: message`; the rest still load, as they would
on a real router whose boot script has a broken line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from lab.errors import BadInput

PROGRAMS = {"iptables": 4, "ip6tables": 6}
SAVE_TOOLS = {4: "iptables-restore", 6: "ip6tables-restore"}
_SAVE_LINE = re.compile(r"^(\*\w+|:\S+ \S+( \[\d+:\d+\])?|(\[\d+:\d+\] )?-A \S+.*|COMMIT)$")


@dataclass(frozen=True)
class Command:
    """One iptables/ip6tables command of a script, with the line it starts on."""

    file: str
    line: int
    text: str
    argv: tuple[str, ...]
    family: int


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


@dataclass(frozen=True)
class PolicyFile:
    """A script of commands, or an iptables-save/ip6tables-save dump of one family."""

    path: Path
    kind: str  # "script" or "save"
    commands: tuple[Command, ...] = ()
    save_text: str = ""
    family: int | None = None  # set for save files

    @property
    def families(self) -> frozenset[int]:
        if self.kind == "save":
            assert self.family is not None
            return frozenset({self.family})
        return frozenset(c.family for c in self.commands)

    def only(self, family: int) -> PolicyFile:
        """The part of this policy that concerns one family."""
        if self.kind == "save":
            return self if self.family == family else replace(self, save_text="", family=family)
        return replace(self, commands=tuple(c for c in self.commands if c.family == family))

    @property
    def empty(self) -> bool:
        return not self.commands if self.kind == "script" else not self.save_text


def read_policy(path: Path, family: int | None = None) -> PolicyFile:
    """Read a policy file, telling a script from a save dump; BadInput if it is neither."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such rules file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, not a rules file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    if b"\0" in data:
        raise BadInput(f"{path}: binary file, not an iptables script or iptables-save file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text, not an iptables policy") from None
    lines = [ln.strip() for ln in text.splitlines()]
    meaningful = [ln for ln in lines if ln and not ln.startswith("#")]
    if not meaningful:
        raise BadInput(f"{path}: holds no iptables rules")
    if meaningful[0].startswith("*"):
        return _read_save(path, text, lines, family)
    return PolicyFile(path, "script", commands=tuple(parse_script(path, text)))


def parse_script(path: Path, text: str) -> Iterable[Command]:
    """The commands of a shell script of iptables/ip6tables lines (with `\\` continuations)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending:
            start = number
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield _command(path, start, " ".join(p.strip() for p in pending))
        pending = []
    if pending:
        yield _command(path, start, " ".join(p.strip() for p in pending))


def shown(path: Path) -> str:
    """A path as reports show it: relative to the working folder where it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command(path: Path, line: int, text: str) -> Command:
    try:
        argv = tuple(shlex.split(text, comments=True))
    except ValueError as exc:
        raise BadInput(f"{path}:{line}: cannot parse the command: {exc}") from None
    program = Path(argv[0]).name if argv else ""
    if program not in PROGRAMS:
        raise BadInput(f"{path}:{line}: not an iptables/ip6tables command: {text[:60]}")
    return Command(shown(path), line, text, argv, PROGRAMS[program])


def _read_save(path: Path, text: str, lines: list[str], family: int | None) -> PolicyFile:
    for number, line in enumerate(lines, 1):
        if line and not line.startswith("#") and not _SAVE_LINE.match(line):
            raise BadInput(f"{path}:{number}: not an iptables-save line: {line[:60]}")
    detected = _save_family(text)
    if family is None:
        if detected is None:
            raise BadInput(f"{path}: cannot tell IPv4 from IPv6 rules; "
                           "pass it with --rules-v4 or --rules-v6")
        family = detected
    elif detected is not None and detected != family:
        raise BadInput(f"{path}: holds IPv{detected} rules, given as IPv{family}")
    return PolicyFile(path, "save", save_text=text, family=family)


def _save_family(text: str) -> int | None:
    if "ip6tables-save" in text:
        return 6
    if "iptables-save" in text:
        return 4
    addresses = re.findall(r"-[sd] (\S+)", text)
    if any(":" in a for a in addresses):
        return 6
    if addresses:
        return 4
    return None


# A runner executes argv in the router's namespace, with optional standard input,
# and returns (exit status, standard error).
Runner = Callable[[list[str], str | None], tuple[int, str]]


def apply_policy(policy: PolicyFile, run: Runner) -> list[LoadError]:
    """Load a policy on a router; returns the lines that failed, in order."""
    errors: list[LoadError] = []
    if policy.kind == "script":
        for cmd in policy.commands:
            status, err = run([cmd.argv[0], "-w", *cmd.argv[1:]], None)
            if status != 0:
                errors.append(LoadError(cmd.file, cmd.line, _first_line(err, status)))
        return errors
    if not policy.save_text:
        return errors
    assert policy.family is not None
    status, err = run([SAVE_TOOLS[policy.family], "-w"], policy.save_text)
    if status != 0:
        # legacy: "line 5 failed"; nf_tables: "Error occurred at line: 5"
        match = re.search(r"line:? (\d+)", err)
        errors.append(LoadError(shown(policy.path), int(match.group(1)) if match else 0,
                                _first_line(err, status)))
    return errors


def _first_line(err: str, status: int) -> str:
    for line in err.splitlines():
        if line.strip() and not line.startswith("Try `"):
            return line.strip()
    return f"failed with status {status}"
