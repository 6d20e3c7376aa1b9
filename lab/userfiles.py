"""Files a user gives: read whole and safely, or refused in one line naming the file and the fix.

Only a regular file is read. It is looked at before it is opened (opening a
device or a FIFO can block, or act: a tape rewinds), opened without blocking
(should a FIFO take its place meanwhile) and looked at again once open. At most
`max_bytes` are read (/dev/zero or a huge file given by mistake would be read
until memory runs out), and text must be UTF-8.

Each kind of file words its refusals its own way (`Words`), as its users have
long read them; the reading is the same for all.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BadInput


@dataclass(frozen=True)
class Words:
    """How one kind of file words its refusals.

    Templates of {what} (the kind: "site file"), {limit} (the size cap: "1 MiB",
    "64 bytes"), {reason} (the system's, e.g. "Permission denied") and {byte} (the
    first byte that is not UTF-8, counted from 1).
    """

    missing: str = "cannot read the {what}: {reason}"
    unreadable: str = "cannot read the {what}: {reason}"
    folder: str = "a folder, not a regular file (give the {what} as a text file)"
    special: str = "not a regular file (a device, FIFO or socket): give a {what}"
    too_big: str = "larger than {limit}: not a {what}"
    not_utf8: str = "not UTF-8 text (save the {what} as UTF-8)"
    # a NUL byte: where set, refused before decoding; else left to a parser that names
    # its line (YAML does)
    binary: str = ""


class Unreadable(BadInput):
    """A file that cannot be read as what it was given as: the file, its line if known, why."""

    def __init__(self, path: Path, problem: str, line: int = 0) -> None:
        self.path, self.problem, self.line = path, problem, line
        super().__init__(f"{named(path)}{f':{line}' if line else ''}: {problem}")


def read_bytes(path: Path, what: str, max_bytes: int, words: Words = Words()) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes`; else Unreadable."""

    def refused(template: str, **values: object) -> Unreadable:
        return Unreadable(path, template.format(what=what, limit=_size(max_bytes), **values))

    try:
        mode = os.stat(path).st_mode  # before open: opening a device or FIFO can block or act
        if not stat.S_ISREG(mode):
            raise refused(words.folder if stat.S_ISDIR(mode) else words.special)
        # O_NONBLOCK: should a FIFO take the file's place after the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise refused(words.missing, reason=exc.strerror) from None
    except OSError as exc:
        raise refused(words.unreadable, reason=exc.strerror) from None
    except ValueError:  # a NUL, or a lone surrogate, in the name: no file can have it
        problem = ("a file name cannot hold a NUL character" if "\0" in str(path) else
                   "a file name cannot hold half a character (a lone surrogate)")
        raise Unreadable(path, problem) from None
    with open(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise refused(words.folder if stat.S_ISDIR(mode) else words.special)
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise refused(words.unreadable, reason=exc.strerror) from None
    if len(data) > max_bytes:
        raise refused(words.too_big)
    return data


def read_text(path: Path, what: str, max_bytes: int, words: Words = Words()) -> str:
    """The UTF-8 text of the regular file at `path`, at most `max_bytes`; else Unreadable."""
    data = read_bytes(path, what, max_bytes, words)
    if words.binary and b"\0" in data:
        raise Unreadable(path, words.binary.format(what=what))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(path, words.not_utf8.format(what=what, byte=exc.start + 1),
                         data.count(b"\n", 0, exc.start) + 1) from None


def shown(path: Path) -> str:
    """A path as reports show it: relative to the working folder where it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def named(path: Path) -> str:
    """A path as an error names it: quoted and escaped if it holds a control character."""
    text = str(path)
    return repr(text) if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text) else text


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count and count % (1 << 20) == 0 else f"{count} bytes"
