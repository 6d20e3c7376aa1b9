"""The nftables dialect: a ruleset file as `nft list ruleset` prints it or `nft -f` reads it.

A ruleset is read whole before any lab boots: its `include`s of files beside
the policy are inlined (nested ones too; anything else is refused before the
host file is opened: nft itself would read an absolute path of the host), and
the text is checked by nft (`nft -c -f -` in a throwaway network namespace), so
that a syntax error is `FILE:LINE: message` with the line nft names, mapped back
through the includes to the file it is in. `define` and `flush ruleset` are nft's:
the text goes to nft as written.

Loading is one `nft -f -` in the router's namespace: atomic, so a load error
means nothing of the file loaded. Each rule without a comment of its own is
loaded tagged `comment "p25:FILE:LINE"` (lab.netfilter.origin's tag) so that a
verdict can cite its source line; the scanner (`rules`) finds each rule
statement's line and end: inside chain blocks and in `add`/`insert`/`replace rule`
commands, not in chain headers, set/map/flowtable bodies, strings or comments.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from lab import userfiles
from lab.errors import BadInput, LabFailure
from lab.netfilter import origin
from lab.userfiles import shown

MAX_BYTES = 8 * 1024 * 1024  # the whole ruleset with its includes, as lab.netfilter.policy
MAX_FILES = 64  # included files: far above a real /etc/nftables.d
MAX_REPLAYS = 32  # a twin's replay: rounds of leaving out the rules nft refuses
COMMENT_LIMIT = 128  # bytes: nft refuses a longer rule comment
_WORDS = userfiles.Words(missing="no such {what}", too_big="over {limit}, too big for a {what}",
                         binary="binary file, not an nftables ruleset")
# the words a ruleset's first statement starts with (what `nft -f` files start with; not
# `reset` or `list`, which a shell script may start with too)
STARTS = frozenset({"table", "flush", "define", "redefine", "undefine", "include", "add",
                    "insert", "create", "delete", "destroy", "replace"})
FAMILIES = {"ip": frozenset({4}), "ip6": frozenset({6}), "inet": frozenset({4, 6}),
            "arp": frozenset({4}), "bridge": frozenset({4, 6}), "netdev": frozenset({4, 6})}
_OBJECTS = frozenset({"table", "chain", "rule", "set", "map", "element", "flowtable",
                      "counter", "quota", "limit", "secmark", "synproxy", "ct"})
_RULE_COMMANDS = frozenset({"add", "insert", "replace"})
# chain block statements that are the chain's, not a rule
_CHAIN_HEADS = frozenset({"type", "policy", "comment", "devices", "flags"})
_GLOB = re.compile(r"[*?\[]")
# where nft's scanner may see its `include` keyword in a word (`$include`, `a,include`):
# broader than nft's, so that no include the lab has not read ever reaches nft
_INCLUDE = re.compile(r"(?<![A-Za-z_])include(?![A-Za-z0-9_])")
# nft's error: "/dev/stdin:9:24-24: Error: syntax error, unexpected newline"
_ERROR = re.compile(r"^\S*?:(\d+):\d+(?:-\d+)?: Error: (.*)$")  # also <cmdline>:1:…
_UNLOCATED = re.compile(r"^(?:netlink: )?Error: (.*)$")
# what a fresh namespace lacks but a router may have: not the file's fault at read time
_STATE = re.compile(r"No such file or directory|File exists|Device or resource busy|"
                    r"does not exist|Could not process rule")


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "{", "}", ";", "nl"
    text: str
    start: int
    end: int
    line: int  # 1-based, in the text tokenized


# nft's scanner as far as structure goes (one regular expression: a ruleset of thousands
# of rules is scanned in milliseconds); a string runs to the next `"`, across lines
_TOKEN = re.compile(r'(?P<nl>\n)|[ \t\r]+|(?P<cont>\\\n)|#[^\n]*|(?P<string>"[^"]*"?)'
                    r'|(?P<punct>[{};])|(?P<word>(?:[^ \t\r\n{};"#\\]|\\(?!\n))+)')


def tokens(text: str) -> Iterator[Token]:
    """nft's tokens as far as structure goes: words, "strings", braces, `;`, newlines.

    `#` comments and `\\` line continuations are skipped, as nft's scanner skips them.
    """
    line = 1
    for found in _TOKEN.finditer(text):
        kind = found.lastgroup
        if kind == "nl":
            yield Token("nl", "\n", found.start(), found.end(), line)
            line += 1
        elif kind == "cont":
            line += 1
        elif kind == "string":
            said = found.group()
            yield Token("string", said, found.start(), found.end(), line)
            line += said.count("\n")
        elif kind == "punct":
            yield Token(found.group(), found.group(), found.start(), found.end(), line)
        elif kind == "word":
            yield Token("word", found.group(), found.start(), found.end(), line)


def looks_like_nft(text: str) -> bool:
    """The file is an nft ruleset: an `nft -f` shebang, or its first statement is nft's."""
    first = text.lstrip().split("\n", 1)[0]
    if first.startswith("#!") and PurePosixPath(first[2:].split()[0] if first[2:].split()
                                                 else "").name == "nft":
        return True
    word = next((t for t in tokens(text) if t.kind != "nl"), None)
    return word is not None and word.kind == "word" and word.text in STARTS


# --- includes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Ruleset:
    """A ruleset with its includes inlined: the text nft gets, and where each line came from.

    `origins[n]` is the (file as shown, line) of the text's line n + 1.
    """

    path: Path
    text: str
    origins: tuple[tuple[str, int], ...]

    @property
    def file(self) -> str:
        """The file as reports name it (the top file's line comes first in `origins`)."""
        return self.origins[0][0] if self.origins else shown(self.path)

    def where(self, line: int) -> tuple[str, int]:
        """The file and line of one of the text's lines (the file itself for line 0)."""
        if 1 <= line <= len(self.origins):
            return self.origins[line - 1]
        return self.file, 0

    @property
    def families(self) -> frozenset[int]:
        return families(self.text)

    @property
    def empty(self) -> bool:
        return not any(t.kind != "nl" for t in tokens(self.text))


def read(path: Path, text: str | None = None) -> Ruleset:
    """A ruleset file with its includes inlined; BadInput for an include the lab refuses."""
    folder = path.parent.resolve()
    budget = [MAX_BYTES, MAX_FILES]
    lines: list[tuple[str, int, str]] = []
    _inline(path, text, folder, (), budget, lines)
    return Ruleset(path, "\n".join(t for _, _, t in lines) + "\n",
                   tuple((f, n) for f, n, _ in lines))


def _inline(path: Path, text: str | None, folder: Path, stack: tuple[Path, ...],
            budget: list[int], out: list[tuple[str, int, str]]) -> None:
    if text is None:
        if budget[0] <= 0:
            raise BadInput(f"{shown(path)}: the ruleset with its includes is over "
                           f"{MAX_BYTES >> 20} MiB: too big for a policy")
        text = userfiles.read_text(path, "nft ruleset", budget[0], _WORDS)
    budget[0] -= len(text.encode())
    file = shown(path)
    found = list(tokens(text))
    cursor, line = 0, 1

    def emit(until: int) -> None:
        nonlocal cursor, line
        for n, piece in enumerate(text[cursor:until].split("\n")):
            out.append((file, line + n, piece))
        line += text.count("\n", cursor, until)
        cursor = until

    for i, token in enumerate(found):
        if token.kind != "word" or token.text != "include":
            refuse_hidden_include(file, token)
            continue
        name = found[i + 1] if i + 1 < len(found) else None
        if name is None or name.kind != "string" or not name.text.endswith('"'):
            raise BadInput(f"{file}:{token.line}: include needs a file name in double "
                           'quotes (include "rules.nft")')
        target = beside(f"{file}:{token.line}", f'include "{name.text[1:-1]}"',
                        name.text[1:-1], folder, (*stack, path.resolve()))
        budget[1] -= 1
        if budget[1] < 0:
            raise BadInput(f"{file}:{token.line}: more than {MAX_FILES} included files: "
                           "not a ruleset the lab reads")
        emit(token.start)
        cursor = name.end  # the include itself is replaced by the file's lines
        _inline(target, None, folder, (*stack, path.resolve()), budget, out)
    emit(len(text))


def refuse_hidden_include(file: str, token: Token) -> None:
    """BadInput for a word nft may read as an include that is not one on its own."""
    if token.kind == "word" and _INCLUDE.search(token.text):
        raise BadInput(f"{file}:{token.line}: `include` inside a word: write an include on "
                       'its own (include "rules.nft"), of a file beside the policy')


def no_include(where: str, text: str) -> None:
    """BadInput for any include in text nft reads as a command (a script's `nft …` call)."""
    for token in tokens(text):
        if token.kind == "word" and _INCLUDE.search(token.text):
            raise BadInput(f"{where}: an include in an nft command is not run: load a file "
                           "beside the script with nft -f FILE")


def beside(where: str, what: str, name: str, folder: Path,
           stack: tuple[Path, ...] = ()) -> Path:
    """The file an include (or a script's `nft -f`) names, beside the policy in `folder`.

    BadInput, the file unopened, for any other: an absolute path, `..`, a glob, a
    link out of the folder, a missing file; and for a file in `stack` (a cycle).
    """
    said = f"{where}: {what}"
    beside = f"the lab reads only files beside the policy ({shown(folder) or '.'}/)"
    if not name:
        raise BadInput(f"{said}: names no file")
    if _GLOB.search(name):
        raise BadInput(f"{said}: a glob is not followed: {beside}; include each file by name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise BadInput(f"{said}: not read, {beside}: copy it there and include it by its "
                       "name")
    target = folder / pure
    if not target.resolve().is_relative_to(folder):  # a link that leads out of the folder
        raise BadInput(f"{said}: a link out of the policy's folder is not followed: {beside}")
    if not target.exists():
        raise BadInput(f"{said}: no such file beside the policy")
    if target.resolve() in stack:
        raise BadInput(f"{said}: includes itself (through {', '.join(shown(p) for p in stack)}"
                       "): an include cycle")
    return target


# --- families -----------------------------------------------------------------------------

def families(text: str) -> frozenset[int]:
    """The IP families a ruleset's tables and rules are for (an inet table: both).

    `flush ruleset` adds none: what it removes is `flushes`'.
    """
    found: set[int] = set()
    for statement in statements(list(tokens(text))):
        words = [t.text for t in statement if t.kind == "word"]
        if not words:
            continue
        if words[0] in ("add", "create", "delete", "destroy", "flush", "insert", "replace",
                        "reset", "list"):
            words = words[1:]
        if not words:
            continue
        if words[0] in _OBJECTS and len(words) > 1:  # `flush ruleset` holds no rule
            # nft's default family is ip
            found |= FAMILIES.get(words[1], FAMILIES["ip"])
    return frozenset(found)


def flushes(text: str) -> list[tuple[int, frozenset[int]]]:
    """Each `flush ruleset [FAMILY]`: its line, and the families whose tables it removes."""
    found = []
    for statement in statements(list(tokens(text))):
        words = [t.text for t in statement if t.kind == "word"]
        if words[:2] == ["flush", "ruleset"]:
            found.append((statement[0].line, FAMILIES.get(words[2], frozenset())
                          if len(words) > 2 else frozenset({4, 6})))
    return found


def command_families(argv: Sequence[str]) -> frozenset[int]:
    """The families one `nft COMMAND …` call concerns (its words as a ruleset line)."""
    said = " ".join(argv[1:])
    return families(said) or frozenset(f for _, removed in flushes(said) for f in removed)


def statements(found: list[Token]) -> Iterator[list[Token]]:
    """The top-level statements: split at newlines and `;` outside braces."""
    current: list[Token] = []
    depth = 0
    for token in found:
        if token.kind == "{":
            depth += 1
        elif token.kind == "}":
            depth = max(0, depth - 1)
        if depth == 0 and token.kind in ("nl", ";"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


# --- the rule scanner ------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleAt:
    """A rule statement: the line it starts on, where its text ends, its own comment."""

    line: int
    end: int
    commented: bool
    start: int = 0  # where its text starts


def rules(text: str) -> list[RuleAt]:
    """Each rule statement of a ruleset text, in order."""
    found = list(tokens(text))
    return list(_Scanner(found).scan())


class _Scanner:
    """Walks the blocks: top level, table, chain (whose statements are rules), other bodies."""

    def __init__(self, found: list[Token]) -> None:
        self.found = found
        self.at = 0

    def _statement(self) -> tuple[list[Token], str]:
        """The next statement at this level, and how it ended: "{", "}", ";", "nl", ""."""
        taken: list[Token] = []
        depth = 0
        while self.at < len(self.found):
            token = self.found[self.at]
            self.at += 1
            if token.kind == "{":
                if depth == 0 and self._opens_block(taken):
                    return taken, "{"
                depth += 1
            elif token.kind == "}":
                if depth == 0:
                    return taken, "}"
                depth -= 1
            elif token.kind in ("nl", ";") and depth == 0:
                return taken, token.kind
            taken.append(token)
        return taken, ""

    def _opens_block(self, taken: list[Token]) -> bool:
        words = [t.text for t in taken if t.kind == "word"]
        return self.level != "chain" and bool(words) and (
            self.level == "table" or _head(words) in ("table", "chain"))

    level = "top"

    def scan(self) -> Iterator[RuleAt]:
        yield from self._block("top")

    def _block(self, level: str) -> Iterator[RuleAt]:
        outer, self.level = self.level, level
        try:
            while self.at < len(self.found):
                taken, ended = self._statement()
                words = [t.text for t in taken if t.kind == "word"]
                if ended == "{":
                    head = _head(words) if level == "top" else (words[0] if words else "")
                    if head == "table":
                        yield from self._block("table")
                    elif head == "chain":
                        yield from self._block("chain")
                    else:
                        self._skip_body()
                    continue
                if taken and self._is_rule(level, words):
                    yield RuleAt(taken[0].line, taken[-1].end, _commented(taken),
                                 taken[0].start)
                if ended == "}" and level != "top":
                    return
        finally:
            self.level = outer

    def _is_rule(self, level: str, words: list[str]) -> bool:
        if not words:
            return False
        if level == "chain":
            return words[0] not in _CHAIN_HEADS
        if level == "top":
            return words[0] == "rule" or (words[0] in _RULE_COMMANDS and words[1:2] == ["rule"])
        return False

    def _skip_body(self) -> None:
        depth = 1
        while self.at < len(self.found) and depth:
            kind = self.found[self.at].kind
            depth += (kind == "{") - (kind == "}")
            self.at += 1


def _head(words: list[str]) -> str:
    return words[1] if words[0] in ("add", "create") and len(words) > 1 else words[0]


def _commented(statement: list[Token]) -> bool:
    """The rule has a comment of its own (outside braces: an element's comment is not it)."""
    depth = 0
    for i, token in enumerate(statement):
        depth += (token.kind == "{") - (token.kind == "}")
        if depth == 0 and token.kind == "word" and token.text == "comment" and (
                i + 1 < len(statement) and statement[i + 1].kind == "string"):
            return True
    return False


def tagged(ruleset: Ruleset) -> str:
    """The text with each rule that has no comment of its own tagged with its file and line."""
    text = ruleset.text
    pieces: list[str] = []
    cursor = 0
    for rule in rules(text):
        if rule.commented:
            continue
        file, line = ruleset.where(rule.line)
        pieces += [text[cursor:rule.end],
                   f' comment "{origin.tag(file, line, COMMENT_LIMIT)}";']
        cursor = rule.end
    pieces.append(text[cursor:])
    return "".join(pieces)


_LOG_OPTIONS = {"prefix": 1, "group": 1, "snaplen": 1, "queue-threshold": 1, "level": 1}


def logs_to_group(ruleset: Ruleset, group: int) -> tuple[Ruleset, list[int]]:
    """Each rule's `log` statement sent to an NFLOG group, and the text lines it changed.

    The kernel's log writes nothing from a network namespace (lab.netfilter.nflog);
    `log group N` goes to the router's ulogd2. A syslog `level` and the `flags` (which
    nft refuses with a group) are left out; the prefix stays. Lines stay where they are.
    """
    text = ruleset.text
    every = list(tokens(text))
    edits: list[tuple[int, int, str]] = []  # (start, end, new text)
    changed: list[int] = []
    spans = [(r.start, r.end) for r in rules(text)]
    for i, token in enumerate(every):
        if token.kind != "word" or token.text != "log" or not any(
                a <= token.start < b for a, b in spans):
            continue
        j, grouped = i + 1, False
        while j < len(every) and every[j].kind == "word":
            option = every[j].text
            if option in _LOG_OPTIONS:
                grouped |= option == "group"
                if option == "level" and j + 1 < len(every):
                    edits.append((every[j].start, every[j + 1].end, ""))
                j += 2
            elif option == "flags":
                width = 3 if j + 1 < len(every) and every[j + 1].text in ("tcp", "ip") else 2
                last = min(j + width - 1, len(every) - 1)
                edits.append((every[j].start, every[last].end, ""))
                j += width
            else:
                break
        if not grouped:  # a log to a group of its own stays as written
            edits.append((token.end, token.end, f" group {group}"))
            changed.append(token.line)
    pieces: list[str] = []
    cursor = 0
    for start, end, new in sorted(edits):
        # what is left out keeps its newlines (a `\` continuation): the lines stay
        pieces += [text[cursor:start], new + "\n" * text.count("\n", start, end)]
        cursor = end
    pieces.append(text[cursor:])
    return replace(ruleset, text="".join(pieces)), changed


# --- nft itself ------------------------------------------------------------------------------

def program() -> str:
    """The lab's nft (in /sbin or /usr/sbin, as the lab's other netfilter tools)."""
    found = shutil.which("nft", path=os.pathsep.join(("/sbin", "/usr/sbin")))
    if found is None:
        raise LabFailure("nft not found in /sbin or /usr/sbin: nftables rulesets need it "
                         "(apt-get install nftables, or make setup)")
    return found


@dataclass(frozen=True)
class Failure:
    """One error nft gave: the text's line (0: none named) and its message."""

    line: int
    message: str


def failures(err: str) -> list[Failure]:
    """nft's errors, in its order (the source lines it quotes and its carets left out)."""
    found: list[Failure] = []
    for said in err.splitlines():
        if located := _ERROR.match(said):
            found.append(Failure(int(located.group(1)), located.group(2).strip()))
        elif bare := _UNLOCATED.match(said):
            found.append(Failure(0, bare.group(1).strip()))
    return found


def check(ruleset: Ruleset) -> None:
    """nft's own check of the text in a fresh network namespace; BadInput for an error in it.

    An error that may be the fresh namespace's (a table an iptables policy makes, an
    interface of the router) is left to the load, which names it.
    """
    if ruleset.empty:
        return
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else [
        "unshare", "--user", "--map-root-user", "--net"]
    try:
        done = subprocess.run([*unshare, program(), "-c", "-f", "-"], input=ruleset.text,
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise LabFailure(f"{ruleset.file}: nft -c took over 60 s") from None
    if done.returncode == 0:
        return
    found = failures(done.stderr)
    if not found and done.stderr.startswith("unshare"):
        if os.geteuid() != 0:
            return  # no user namespaces here: `list` still works; verify (root) checks
        raise LabFailure(f"cannot check {ruleset.file} in a fresh network namespace: "
                         f"{done.stderr.strip().splitlines()[0]}")
    bad = next((f for f in found if not _STATE.search(f.message)), None)
    if bad is None and found:
        return
    bad = bad or Failure(0, (done.stderr.strip().splitlines() or [
        f"nft -c failed with status {done.returncode}"])[0])
    file, line = ruleset.where(bad.line)
    raise BadInput(f"{file}:{line}: {bad.message}" if line else f"{file}: {bad.message}")


def located(ruleset: Ruleset, err: str, status: int) -> tuple[str, int, str]:
    """The file, line and message of a failed load's first error."""
    found = failures(err)
    if not found:
        return ruleset.file, 0, (err.strip().splitlines() or [f"nft failed with status "
                                                              f"{status}"])[0]
    file, line = ruleset.where(found[0].line)
    return file, line, found[0].message


def without_lines(ruleset: Ruleset, numbers: set[int]) -> Ruleset:
    """The ruleset with some of its text's lines left blank (a twin's replay drops them)."""
    kept = [("" if n in numbers else said)
            for n, said in enumerate(ruleset.text.split("\n"), 1)]
    return replace(ruleset, text="\n".join(kept))


def source(comment: str) -> str:
    """The `FILE:LINE` an nft rule comment that is the lab's tag names ('' if none)."""
    return origin.source(comment)


# --- a collected ruleset (the twin's) ----------------------------------------------------------

def from_text(source: str, text: str) -> Ruleset:
    """A ruleset collected from a gateway (`nft list ruleset`), its lines named by `source`.

    `nft list` never prints an include: one in collected text is refused, never followed.
    """
    for token in tokens(text):
        if token.kind == "word" and _INCLUDE.search(token.text):
            raise BadInput(f"{source}:{token.line}: an include in a collected ruleset is "
                           "not followed")
    count = text.count("\n") + 1
    return Ruleset(Path(source), text, tuple((source, n) for n in range(1, count + 1)))


def tables(text: str) -> list[tuple[str, str, int, int]]:
    """Each top-level `table FAMILY NAME { … }`: its family, name, and first and last line."""
    found: list[tuple[str, str, int, int]] = []
    every = list(tokens(text))
    at = 0
    while at < len(every):
        token = every[at]
        words = [t.text for t in every[at:at + 4] if t.kind == "word"]
        starts = at == 0 or every[at - 1].kind in ("nl", ";")
        if starts and token.kind == "word" and _head(words) == "table":
            named = words[words.index("table") + 1:]
            family, name = (named[0], named[1]) if len(named) > 1 and named[0] in FAMILIES \
                else ("ip", named[0] if named else "")
            brace = next((i for i in range(at, len(every))
                          if every[i].kind in ("{", "nl", ";")), len(every))
            if brace < len(every) and every[brace].kind == "{":
                depth, end = 0, brace
                for end in range(brace, len(every)):
                    depth += (every[end].kind == "{") - (every[end].kind == "}")
                    if depth == 0:
                        break
                found.append((family, name, token.line, every[end].line))
                at = end + 1
                continue
        at += 1
    return found


def without_tables(ruleset: Ruleset, dropped: set[tuple[str, str]]) -> Ruleset:
    """The ruleset without some of its tables (their lines left blank: the others keep theirs)."""
    lines: set[int] = set()
    for family, name, first, last in tables(ruleset.text):
        if (family, name) in dropped:
            lines |= set(range(first, last + 1))
    return without_lines(ruleset, lines)


_INTERFACE_WORDS = frozenset({"iifname", "oifname", "iif", "oif"})


def _interface_tokens(text: str) -> Iterator[Token]:
    """The tokens that name an interface: after iifname/oifname/iif/oif, alone or in a set."""
    every = list(tokens(text))
    for i, token in enumerate(every):
        if token.kind != "word" or token.text not in _INTERFACE_WORDS:
            continue
        j = i + 1
        if j < len(every) and every[j].kind == "word" and every[j].text in ("!=", "=="):
            j += 1
        if j < len(every) and every[j].kind == "{":
            j += 1
            while j < len(every) and every[j].kind not in ("}",):
                if every[j].kind in ("word", "string") and every[j].text != ",":
                    yield every[j]
                j += 1
        elif j < len(every) and every[j].kind in ("word", "string"):
            yield every[j]


def _name(token: Token) -> str:
    return token.text.strip('"').rstrip(",")


def interfaces(text: str) -> set[str]:
    """The interface names a ruleset's rules match on (a wildcard keeps its `*`)."""
    return {_name(t) for t in _interface_tokens(text) if _name(t)}


def mapped(ruleset: Ruleset, mapping: dict[str, str]) -> Ruleset:
    """The ruleset with interface names mapped from the gateway's to the lab's."""
    text = ruleset.text
    pieces: list[str] = []
    cursor = 0
    for token in _interface_tokens(text):
        name = _name(token)
        wildcard = name.endswith("*")
        base = name[:-1] if wildcard else name
        if base not in mapping:
            continue
        new = mapping[base] + ("*" if wildcard else "")
        pieces += [text[cursor:token.start], token.text.replace(name, new, 1)]
        cursor = token.end
    pieces.append(text[cursor:])
    return replace(ruleset, text="".join(pieces))
