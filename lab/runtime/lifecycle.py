"""A lab run's identity and its leftovers: per-run prefix, run folder, named namespaces.

Everything a run makes carries its prefix: the run folder /run/port25lab/PREFIX,
the named namespaces PREFIX-ROLE (so `ip netns exec PREFIX-gw ...` works while
it is up) and the processes inside them. A run whose owner process is gone is
stale; `remove_stale` removes exactly such runs and nothing else.

SIGINT, SIGTERM and SIGHUP become `Interrupted`, so that `finally` teardowns run;
steps that must not stop half-way (teardown itself, Mininet's commands) hold
the signal back with `signals_deferred` and deliver it when they are done.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from lab.errors import LabFailure

RUN_ROOT = Path("/run/port25lab")
NETNS_ROOT = Path("/run/netns")
PREFIX_HEAD = "p25-"
# A closed terminal (SIGHUP) ends a run like SIGTERM and Ctrl-C do.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Handler = Callable[[int, FrameType | None], Any] | int | None  # as signal.signal takes it
TEARDOWN_DEADLINE = 10.0  # s: a process still there after this is reported, not waited for


@dataclass(frozen=True)
class Run:
    """One lab run: its prefix and its folder."""

    prefix: str
    folder: Path

    def netns(self, role: str) -> str:
        return f"{self.prefix}-{role}"


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind so that every lab is torn down.

    `torn_down` names the runs whose labs were torn down while it unwound.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.torn_down: list[str] = []


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    # Later signals must not interrupt the teardown the first one started.
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def interrupt_on_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted`, so that `finally` teardowns run."""
    for signum in SIGNALS:
        signal.signal(signum, _raise_interrupted)


@contextlib.contextmanager
def _blocked() -> Iterator[None]:
    """The signals wait in the kernel (while handlers are swapped: no signal in between)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back until the block is done, then deliver them.

    The signal still takes effect (with `interrupt_on_signals`: `Interrupted` is
    raised at the end of the block), only not half-way through it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    arrived: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    previous: dict[signal.Signals, Handler] = {}
    try:
        with _blocked():
            for held in SIGNALS:
                if signal.getsignal(held) is not None:  # None: not set from Python; kept
                    previous[held] = signal.signal(held, record)
        yield
    finally:
        with _blocked():
            for held, handler in previous.items():
                signal.signal(held, handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (tells a live owner from a reused PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def new_run() -> Run:
    """Claim a fresh prefix and folder, recording this process as the owner."""
    prefix = PREFIX_HEAD + secrets.token_hex(3)
    folder = RUN_ROOT / prefix
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    try:
        # 0o711: daemons that drop to their own users (postfix, nobody) must traverse it
        folder.mkdir(mode=0o711)
        folder.chmod(0o711)
        owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
        (folder / "owner.json").write_text(json.dumps(owner))
    except FileExistsError:
        raise  # another run's folder: not ours to remove
    except BaseException:  # a signal too: the caller never gets the run to remove
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Run(prefix, folder)


@contextlib.contextmanager
def opened() -> Iterator[Run]:
    """A run from start to end: what dead runs left is removed, a fresh run is made, and
    on leaving (also on a signal) it is torn down.

    `Lab.stop()` tears its lab's run down itself (a lab used on its own leaves
    nothing); then nothing of the run is left here, and `destroy` does nothing.
    """
    remove_stale()
    run = new_run()
    try:
        yield run
    finally:
        destroy(run)


def is_stale(folder: Path) -> bool:
    try:
        owner = json.loads((folder / "owner.json").read_text())
    except (OSError, ValueError):
        # A folder without a readable owner is only ours if it has our shape;
        # give a run that is just starting a moment to write it.
        return time.time() - folder.stat().st_mtime > 60
    current = _start_time(int(owner["pid"]))
    return current is None or current != owner.get("start")


def remove_stale() -> list[str]:
    """Remove what dead earlier runs left behind; returns their prefixes."""
    removed = []
    if RUN_ROOT.is_dir():
        for folder in sorted(RUN_ROOT.glob(PREFIX_HEAD + "*")):
            if folder.is_dir() and is_stale(folder):
                destroy(Run(folder.name, folder))
                removed.append(folder.name)
    return removed


def namespaces_of(run: Run) -> list[str]:
    if not NETNS_ROOT.is_dir():
        return []
    return sorted(p.name for p in NETNS_ROOT.iterdir() if p.name.startswith(run.prefix + "-"))


def processes_in(namespace_inodes: set[int]) -> list[int]:
    """PIDs whose network namespace is one of these (by inode)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino in namespace_inodes:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_all(pids: list[int], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if is_running(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def kill_now(inodes: set[int], spare: Collection[int] = (),
             deadline: float = TEARDOWN_DEADLINE) -> None:
    """SIGKILL every process in these namespaces but `spare`, until none is left.

    For a lab that keeps no state: nothing to wait a grace period for. Whatever a dying
    process forks is found in the next listing. What is still there after `deadline`
    s is left to `destroy`, which says so.
    """
    inodes = inodes - {os.stat("/proc/self/ns/net").st_ino}  # never the host's
    give_up = time.monotonic() + deadline
    while (pids := [p for p in processes_in(inodes) if p not in spare]) and (
            time.monotonic() < give_up):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def _kill_until_empty(inodes: set[int], deadline: float, what: str) -> None:
    """Kill until no process is left in these namespaces; LabFailure after `deadline` s.

    One listing is not enough: a process may start while the listed ones die (a
    Dovecot or Postfix master's child, an orphan's late fork). The listed ones
    get SIGTERM (then SIGKILL); whatever is still found after that started
    during the teardown, or is dying, and gets SIGKILL.
    """
    give_up = time.monotonic() + deadline
    polite = True
    while pids := processes_in(inodes):
        if polite:
            kill_all(pids)
            polite = False
            continue
        if time.monotonic() > give_up:
            shown = ", ".join(f"{pid} {_comm(pid)}" for pid in pids[:8])
            raise LabFailure(f"teardown of {what}: {len(pids)} processes still in its "
                             f"namespaces after {deadline:g} s ({shown})")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def destroy(run: Run, extra_inodes: set[int] | None = None,
            deadline: float = TEARDOWN_DEADLINE) -> None:
    """Kill every process in the run's namespaces, delete them and the run folder.

    It returns only when no process of the run is left in any of its namespaces.
    Signals wait until it is done. If processes survive `deadline` s it raises
    LabFailure and keeps the namespaces and the folder: `remove_stale` retries.
    """
    removed = had_lab = False
    try:
        with signals_deferred():
            names = namespaces_of(run)
            if not names and not extra_inodes and not run.folder.exists():
                return  # torn down already: its lab's stop did it
            inodes = set(extra_inodes or set())
            for name in names:
                with contextlib.suppress(OSError):
                    inodes.add(os.stat(NETNS_ROOT / name).st_ino)
            # Never our own (the host's) namespace, whatever went wrong before.
            inodes.discard(os.stat("/proc/self/ns/net").st_ino)
            had_lab = bool(names or inodes)
            # The named namespaces stay (their inodes cannot be reused) until it is empty.
            _kill_until_empty(inodes, deadline, run.prefix)
            # one process for all; one that fails does not keep the others (-force)
            ip_batch([f"netns delete {name}" for name in names], force=True)
            shutil.rmtree(run.folder, ignore_errors=True)
            removed = True
    finally:
        if removed and had_lab:
            note_torn_down(run)


def ip_batch(commands: Sequence[str], popen: Callable[..., Any] = subprocess.Popen,
             force: bool = False) -> str:
    """Run `ip` commands as one `ip -batch` (one process); what failed, or "" when none did.

    `popen` starts it (a node's, to run it in the node). `ip` stops at the first command
    that fails (with `force`: goes on) and says its line: the failure names that command.
    """
    if not commands:
        return ""
    proc = popen(["ip", *(["-force"] if force else []), "-batch", "-"], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate("\n".join(commands) + "\n")
    if proc.returncode == 0:
        return ""
    said = (err or out).strip().splitlines()
    failed = next((ln for ln in said if ln.startswith("Command failed -:")), "")
    line = int(failed[17:]) if failed[17:].isdigit() else 0
    shown = f"ip {commands[line - 1]}" if 0 < line <= len(commands) else "ip -batch"
    return f"{shown}: {said[0] if said else f'status {proc.returncode}'}"


def note_torn_down(run: Run) -> None:
    """Tell an `Interrupted` being unwound (or just delivered) that this run's lab is gone.

    So that its message says "lab torn down" only when a lab was.
    """
    unwinding = sys.exc_info()[1]
    if isinstance(unwinding, Interrupted) and run.prefix not in unwinding.torn_down:
        unwinding.torn_down.append(run.prefix)
