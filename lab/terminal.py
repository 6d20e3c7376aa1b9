"""What the command line shows on a terminal: the report in colour, the progress in one line.

Where the output is not a terminal (a pipe, a file, a program reading it) it is plain
text, a line per step: exactly what it was before colour, so that what reads it keeps
working.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


def is_terminal(stream: Any) -> bool:
    """Whether a stream is a terminal that understands escape sequences."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # not a real file, or closed
        return False
    return tty and os.environ.get("TERM", "") not in ("dumb", "unknown")


class _Console(Console):
    """rich's console, but a reader that is gone is the CLI's to handle (exit 141)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def printer(color: str) -> Callable[[Text], None]:
    """How the report is printed: in colour on a terminal (see --color), else plain text."""
    colour = color == "always" or (color == "auto" and is_terminal(sys.stdout)
                                   and not os.environ.get("NO_COLOR"))
    if not colour:  # exactly the text of report.matrix, as programs reading it expect
        return lambda text: print(text.plain, flush=True)
    console = _Console(file=sys.stdout, force_terminal=True, no_color=False, highlight=False,
                       markup=False, emoji=False, soft_wrap=True)
    return lambda text: console.print(text)


class Progress:
    """What a run is doing, on standard error.

    A line per step and probe where standard error is not a terminal (a log, a program
    reading it) or with -v; on a terminal one line that each step replaces; nothing
    with -q. A closed terminal (EIO) hangs the session up: its SIGHUP ends the run with
    a teardown a moment later; until then the run goes on without progress.
    """

    def __init__(self, quiet: bool, verbose: bool = False) -> None:
        self.quiet = quiet
        self.updating = not (quiet or verbose) and is_terminal(sys.stderr)
        self.gone = False
        self.live: Live | None = None

    def __call__(self, message: str) -> None:
        if self.quiet or self.gone:
            return
        with self._unless_hung_up():
            if not self.updating:
                print(f"  … {message}", file=sys.stderr, flush=True)
                return
            if self.live is None:  # written only when it changes: no thread, no timer
                self.live = Live(console=_Console(file=sys.stderr, force_terminal=True),
                                 auto_refresh=False, transient=True,
                                 redirect_stdout=False, redirect_stderr=False)
                self.live.start()
            self.live.update(Text(f"  … {message}", no_wrap=True, overflow="ellipsis"),
                             refresh=True)

    def clear(self) -> None:
        """Take the updating line away, so that a report is printed where it was."""
        live, self.live = self.live, None
        if live is not None and not self.gone:
            with self._unless_hung_up():
                live.stop()

    @contextlib.contextmanager
    def _unless_hung_up(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.gone = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.clear()  # also when a signal or an error ends the run: the cursor comes back
