"""The script dialect: iptables/ip6tables commands, one per line, as admins write them.

A script is read command by command (a trailing `\\` continues a line; blank
lines and `#` comments are skipped), each split into words as the shell would.
A command names one of the netfilter tools in PROGRAMS, by any path: the lab
runs its own (`netfilter_tool`), found in TOOL_FOLDERS, never the path a line
names. Anything else is not a command; a file that is not a script (say,
/etc/shadow) is refused without its text being quoted back.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lab.errors import BadInput
from lab.netfilter.family import FAMILIES
from lab.netfilter.rules import MAX_LINE, too_long
from lab.userfiles import shown

# The programs a line may name (by any path), and the family each one sets.
PROGRAMS = {program: f.version for f in FAMILIES for program in f.programs}
# Where the lab takes them from: /sbin first, the folder the published scripts name
# (on a merged-/usr system it is /usr/sbin under another name).
TOOL_FOLDERS = ("/sbin", "/usr/sbin")


@dataclass(frozen=True)
class Command:
    """One iptables/ip6tables command of a script, with the line it starts on."""

    file: str
    line: int
    text: str
    argv: tuple[str, ...]
    family: int


def parse_script(path: Path, text: str) -> Iterator[Command]:
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


def netfilter_tool(word: str) -> str | None:
    """The lab's own program for the one a policy line names (by any path), or None.

    Only the name counts: `/tmp/x/iptables` and `./iptables` run the lab's iptables.
    The path is not resolved further: the xtables multi-call binaries tell the tool
    (and its backend) from the name they are run under.
    """
    name = PurePosixPath(word).name
    if name not in PROGRAMS:
        return None
    return shutil.which(name, path=os.pathsep.join(TOOL_FOLDERS))


def _command(path: Path, line: int, text: str) -> Command:
    # Checked before shlex (slow on a long word) and without quoting the line: a file
    # that is not a policy (say, /etc/shadow) is not shown back.
    if len(text) > MAX_LINE:
        raise too_long(path, line)
    words = text.split(None, 1)
    if not words or PurePosixPath(words[0]).name not in PROGRAMS:
        raise _not_a_command(path, line)
    try:
        argv = tuple(shlex.split(text, comments=True))
    except ValueError as exc:
        raise BadInput(f"{path}:{line}: cannot parse the command: {exc}") from None
    program = PurePosixPath(argv[0]).name if argv else ""
    if program not in PROGRAMS:  # quoting changed the first word
        raise _not_a_command(path, line)
    return Command(shown(path), line, text, argv, PROGRAMS[program])


def _not_a_command(path: Path, line: int) -> BadInput:
    return BadInput(f"{path}:{line}: not an iptables/ip6tables command (a script holds one "
                    f"per line: {', '.join(PROGRAMS)})")
