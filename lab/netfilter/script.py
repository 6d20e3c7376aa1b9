"""The script dialect: iptables/ip6tables calls in a shell script, as admins write them.

A script of netfilter commands only, one per line (a trailing `\\` continues a
line; blank lines and `#` comments are skipped), is read directly, as it always
was: each command split into words as the shell would (`parse_script`). Any
other script (variables, `${}`, loops, functions, `set -e`, other programs) is
expanded by the real shell in a sandbox that holds nothing of the host
(lab.netfilter.shell) into the same commands: each netfilter call with its argv
and the script line it is on. Which of the two reads a script is decided in one
place, `read_script`, by content.

A call of `nft` is a command too (NFT): `nft add rule …` runs as written, with the
lab's nft; `nft -f FILE` of a file beside the script is that ruleset, read
(lab.netfilter.nft) and loaded in the script's order; a file anywhere else is
refused, never read.

A command names one of the netfilter tools in PROGRAMS: the lab runs its own
(`netfilter_tool`), found in TOOL_FOLDERS, never the path a line names. Other
commands never run on the host: in the sandbox they find nothing, and each is a
note. A file that is not a script (say, /etc/shadow) is refused without its text
being quoted back.

What the expansion cannot know, and assumes: every netfilter call succeeds (the
lab loads and checks them later), but `iptables -C` (is the rule there?) says no,
as on a router that boots with empty tables; so `iptables -C R || iptables -A R`
adds R, and a script that branches on any other call's status takes the branch
of success. A script is run with the argument `start`, as a boot runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lab.errors import BadInput
from lab.netfilter import nft, shell
from lab.netfilter.family import FAMILIES
from lab.netfilter.rules import MAX_LINE, too_long
from lab.userfiles import shown

# The programs a line may name (by any path), and the family each one sets.
PROGRAMS = {program: f.version for f in FAMILIES for program in f.programs}
# Where the lab takes them from: /sbin first, the folder the published scripts name
# (on a merged-/usr system it is /usr/sbin under another name).
TOOL_FOLDERS = ("/sbin", "/usr/sbin")
NFT = "nft"
BOTH = 0  # the family of an nft call for both (an inet table, `flush ruleset`)
# nft's options that only change what it prints or checks; any other is refused
_NFT_FLAGS = frozenset({"-a", "--handle", "-e", "--echo", "-n", "--numeric", "-s",
                        "--stateless", "-N", "--reversedns", "-S", "--service", "-u", "--guid",
                        "-y", "--numeric-priority", "-p", "--numeric-protocol", "-T",
                        "--numeric-time", "-t", "--terse", "-j", "--json", "-c", "--check"})


@dataclass(frozen=True)
class Command:
    """One iptables/ip6tables command of a script, with the line it starts on."""

    file: str
    line: int
    text: str
    argv: tuple[str, ...]
    family: int  # 4, 6, or BOTH (an nft call for both families)
    ruleset: nft.Ruleset | None = None  # `nft -f FILE`: the file's ruleset


def families_of(command: Command) -> frozenset[int]:
    return frozenset({4, 6}) if command.family == BOTH else frozenset({command.family})


def is_nft(command: Command) -> bool:
    return PurePosixPath(command.argv[0]).name == NFT


def nft_adds_rule(command: Command) -> bool:
    """An `nft add|insert|replace rule …` call without a comment of its own."""
    found = nft.rules(" ".join(command.argv[1:]))
    return len(found) == 1 and not found[0].commented


@dataclass(frozen=True)
class Script:
    """A script's commands as the lab loads them, and notes on what of it the lab does not run."""

    commands: tuple[Command, ...]
    notes: tuple[str, ...] = ()


def read_script(path: Path, text: str) -> Script:
    """The commands of a script: read directly if it is plain commands, else expanded."""
    logical = list(_logical_lines(text))
    for start, pieces in logical:
        if sum(len(p) + 1 for p in pieces) > MAX_LINE:
            raise too_long(path, start)
    if all(_names_a_tool(pieces) for _, pieces in logical):
        return Script(tuple(parse_script(path, text)))
    return expand_script(path, text)


def _names_a_tool(pieces: list[str]) -> bool:
    """The command's first word names a netfilter tool: today's reader reads it.

    Such a script is read as it always was, word for word: a `;`, `$(…)` or
    backtick on its lines is a word given to iptables (which refuses it), not
    shell. The shell expands a script with any other line.
    """
    words = _joined(pieces).split(None, 1)
    return (bool(words) and PurePosixPath(words[0]).name in (*PROGRAMS, NFT)
            and not _ASSIGNMENT.match(words[0]))  # IPT=/sbin/iptables sets a variable


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def parse_script(path: Path, text: str) -> Iterator[Command]:
    """The commands of a shell script of iptables/ip6tables lines (with `\\` continuations)."""
    for start, pieces in _logical_lines(text):
        yield _command(path, start, _joined(pieces))


def _logical_lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each line that is not blank or a comment, with the lines a `\\` continues it on."""
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
        yield start, pending
        pending = []
    if pending:
        yield start, pending


def _joined(pieces: list[str]) -> str:
    return " ".join(p.strip() for p in pieces)


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
    if not words or PurePosixPath(words[0]).name not in (*PROGRAMS, NFT):
        raise _not_a_command(path, line)
    try:
        argv = tuple(shlex.split(text, comments=True))
    except ValueError as exc:
        raise BadInput(f"{path}:{line}: cannot parse the command: {exc}") from None
    program = PurePosixPath(argv[0]).name if argv else ""
    if program == NFT:
        return nft_command(path, line, text, argv)
    if program not in PROGRAMS:  # quoting changed the first word
        raise _not_a_command(path, line)
    return Command(shown(path), line, text, argv, PROGRAMS[program])


def nft_command(path: Path, line: int, text: str, argv: tuple[str, ...]) -> Command:
    """A script's `nft …` call; `nft -f FILE` of a file beside the script is read here.

    A file anywhere else is refused without being opened: the lab reads only the
    files a user gives and those beside them.
    """
    words = list(argv[1:])
    file: str | None = None
    while words and words[0].startswith("-"):
        word = words.pop(0)
        if word in ("-f", "--file") or word.startswith("--file="):
            file = word.partition("=")[2] if "=" in word else (words.pop(0) if words else "")
        elif word not in _NFT_FLAGS:
            raise BadInput(f"{path}:{line}: nft {word}: an option the lab does not run (it "
                           "runs nft commands and `nft -f FILE` of a file beside the script)")
    if file is None:
        nft.no_include(f"{path}:{line}", " ".join(words))
        found = nft.command_families(["nft", *words])
        return Command(shown(path), line, text, argv,
                       next(iter(found)) if len(found) == 1 else BOTH)
    said = f"{path}:{line}: nft -f {file}"
    if words:
        raise BadInput(f"{said}: give the file alone (nft -f FILE), not with a command")
    if file in ("", "-", "/dev/stdin"):
        raise BadInput(f"{said}: a ruleset from standard input is not read: put it in a file "
                       "beside the script and load it with nft -f FILE")
    target = nft.beside(f"{path}:{line}", f"nft -f {file}", file, path.parent.resolve())
    ruleset = nft.read(target)
    nft.check(ruleset)
    found = ruleset.families
    return Command(shown(path), line, text, argv,
                   next(iter(found)) if len(found) == 1 else BOTH, ruleset)


def _not_a_command(path: Path, line: int) -> BadInput:
    return BadInput(f"{path}:{line}: not an iptables/ip6tables command (a script holds one "
                    f"per line: {', '.join(PROGRAMS)})")


# --- scripts the shell expands -----------------------------------------------------------

MAX_NOTES = 10  # notes named one by one; the rest are counted
_NOT_A_COMMAND = ("not an iptables/ip6tables command (the lab runs a script's calls of "
                  f"{', '.join(PROGRAMS)}; no other program)")
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
_PATH = re.compile(r"[A-Za-z0-9_ ./+@%,=-]{1,255}")
_SYNTAX = re.compile(r"syntax error|unexpected EOF|unexpected end of file")
# bash on a file: "PATH: REASON", from a builtin "cd: PATH: REASON"
_NO_FILE = re.compile(r"(?:[a-z]+: )?(.+): (No such file or directory|Read-only file system|"
                      r"Permission denied|Is a directory|Not a directory)")
# a word that may be a path (the characters a stand-in's function name may hold)
_PATH_WORD = re.compile(r"[A-Za-z0-9_.+-]*/[A-Za-z0-9_./+-]*")
_UNSET = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63}): unbound variable")
# words after which a `\` continues a command that has not started yet
_NOT_A_FIRST_WORD = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!",
                               "time", "{", "(", "case", "in"})


def expand_script(path: Path, text: str) -> Script:
    """The commands of a script as the shell expands it (lab.netfilter.shell); BadInput if bad."""
    source = re.sub(r"\r$", "", text, flags=re.MULTILINE)  # CRLF: the fast path's reading
    trace = shell.expand(source, path.name, (*PROGRAMS, NFT), _paths_named(source))
    if trace.stopped == "time":
        raise BadInput(f"{path}: still running after {shell.TIME_LIMIT:g} s when the lab "
                       "expands it (an endless loop?): a policy script must end")
    if trace.stopped == "processes":
        raise BadInput(f"{path}: starts more than {shell.PROCESS_LIMIT} processes at once when "
                       "the lab expands it (a fork bomb?): a policy script must not")
    if trace.stopped:
        what = "prints" if trace.stopped == "output" else "calls iptables with"
        limit = shell.OUTPUT_LIMIT if trace.stopped == "output" else shell.CALLS_LIMIT
        raise BadInput(f"{path}: {what} more than {limit >> 20} MiB when the lab expands it "
                       "(a loop that does not end?): not a policy script")
    if trace.garbled:
        raise BadInput(f"{path}: writes to file descriptor 99, on which the lab records the "
                       "script's calls: use another descriptor")
    lines = source.split("\n")
    problems: list[tuple[int, str]] = []
    notes: list[tuple[int, str]] = []
    commands: list[Command] = []
    for call in trace.calls:
        line = _first_line(lines, call.line)
        name = PurePosixPath(call.argv[0]).name
        if "-C" in call.argv or "--check" in call.argv:
            notes.append((line, f"{name} -C is answered 'no such rule' (the lab reads a script "
                                "before any rule is loaded): not loaded"))
            continue
        if name == NFT:
            commands.append(nft_command(path, line, _text_at(lines, line), call.argv))
            continue
        commands.append(Command(shown(path), line, _text_at(lines, line), call.argv,
                                PROGRAMS[name]))
    for number, word in trace.missing:
        line = _first_line(lines, number)
        if _PROGRAM_NAME.fullmatch(word):
            notes.append((line, f"'{word}' is not a netfilter command: not run in the lab"))
        elif word.startswith("-"):
            problems.append((line, "the command starts with an option, not a program: is a "
                                   "variable that names the program empty?"))
        else:
            problems.append((line, _NOT_A_COMMAND))
    for number, message in trace.complaints:
        line = _first_line(lines, number)
        problem, note = _complaint(message)
        if problem:
            problems.append((line, problem))
        if note:
            notes.append((line, note))
    _ending(trace, lines, problems)
    if not trace.calls:  # not a policy: at its first foreign command, or its first line
        foreign = [line for line, _ in (*trace.missing, *trace.complaints)]
        if foreign:
            problems.append((_first_line(lines, min(foreign)), _NOT_A_COMMAND))
        else:
            first = next((start for start, _ in _logical_lines(source)), 1)
            problems.append((first, "calls no iptables/ip6tables command when the lab runs it "
                                    "(with the argument `start`): not a policy script"))
    if problems:
        line, message = min(problems)
        raise BadInput(f"{path}:{line}: {message}")
    return Script(tuple(commands), _noted(shown(path), notes))


def _paths_named(source: str) -> tuple[str, ...]:
    """The paths to a netfilter tool a script spells out, outside the stand-ins' folders.

    `/opt/sbin/iptables` or `./iptables` then runs the lab's iptables, as in a plain
    script: only the name counts.
    """
    found = {word for word in _PATH_WORD.findall(source)
             if PurePosixPath(word).name in (*PROGRAMS, NFT)
             and str(PurePosixPath(word).parent) not in shell.FOLDERS}
    return tuple(sorted(found))


def _complaint(message: str) -> tuple[str, str]:
    """One of bash's own error messages as (bad input, note); either may be ''."""
    if _SYNTAX.search(message):
        return ("cannot parse the script here: a shell syntax error (`bash -n` names it)", "")
    missing = _NO_FILE.fullmatch(message)
    if missing:
        target, reason = missing.groups()
        name = PurePosixPath(target).name
        if name in (*PROGRAMS, NFT) and reason == "No such file or directory":
            return (f"calls {name} by a path where the lab does not have it: call it by name "
                    f"or from {', '.join(shell.FOLDERS)}", "")
        if not _PATH.fullmatch(target):
            return (_NOT_A_COMMAND, "")  # not a path a script names: never quoted back
        if reason == "Read-only file system":
            return ("", f"'{target}' is not written: nothing is written in the lab")
        return ("", f"'{target}' is not in the lab ({reason.lower()}: nothing of the host "
                    "is): not run, read or written")
    return ("", "fails in the lab, where nothing of the host is: not done")


def _ending(trace: shell.Trace, lines: list[str], problems: list[tuple[int, str]]) -> None:
    """A script that exits with a failure, or that the shell stops, is bad input."""
    if trace.exit is not None:
        line, status = trace.exit
        if status:
            problems.append((_first_line(lines, line), f"exits with status {status} here in "
                             "the lab, where no program but iptables and ip6tables runs: "
                             "make the script not depend on others"))
        return
    if trace.finished or trace.status == 0:
        return
    last = max((line for line, _ in trace.complaints), default=0)
    unset = next((m.group(1) for _, said in trace.complaints
                  if (m := _UNSET.fullmatch(said))), None)
    why = (f"uses {unset}, which is not set (set -u)" if unset else
           f"bash stops here with status {trace.status}")
    problems.append((_first_line(lines, last) if last else 0, why))


def _first_line(lines: list[str], number: int) -> int:
    """The line a command starts on, from the line bash gives it.

    bash numbers a command by the line of its second word: when a `\\` right after
    the first word continues it (`iptables \\`), that is the next line.
    """
    while number > 1:
        before = lines[number - 2].rstrip()
        if not before.endswith("\\") or before.endswith("\\\\"):
            break
        head = before[:-1].strip()
        if not head:  # a line of only `\`: the first word is further up
            number -= 1
            continue
        words = head.split()
        if (len(words) == 1 and not head.startswith("#") and head not in _NOT_A_FIRST_WORD
                and head[-1] not in ";&|(){}"):
            number -= 1
        break
    return number


def _text_at(lines: list[str], number: int) -> str:
    """The script's text of the command starting at a line, continuations joined."""
    if number < 1:  # a stand-in file called after the script removed the lab's trap
        return ""
    pieces: list[str] = []
    for line in lines[number - 1:]:
        line = line.rstrip()
        if not line.endswith("\\"):
            pieces.append(line)
            break
        pieces.append(line[:-1])
    return _joined(pieces)


def _noted(file: str, notes: list[tuple[int, str]]) -> tuple[str, ...]:
    """The notes by line, each once; past MAX_NOTES, a count."""
    unique = sorted(set(notes))
    said = [f"{file}:{line}: {message}" for line, message in unique[:MAX_NOTES]]
    if len(unique) > MAX_NOTES:
        said.append(f"{file}: {len(unique) - MAX_NOTES} more lines are not run in the lab")
    return tuple(said)
