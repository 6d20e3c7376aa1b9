"""The one lifecycle of a daemon in a lab node (after IPMininet's `Daemon`).

prepare → dry run → start → ready → stop:

- `prepare` writes the service's files into its node's folder of the run
  (outside any namespace) and checks that its programs are installed;
- `dry_run` asks the daemon itself what is wrong with that configuration, where
  it has a way to say so without starting (`fail2ban-client --test`, `sshd -t`);
  what it says are problems, and a service with problems is not started;
- `start` starts the daemon in its node: held in the foreground
  (`NodeHandle.spawn`) or detached with a pidfile; `Refused` if it would not;
- `ready` says whether it does what it is for yet (listens, writes);
- `stop` ends it: what it holds, then what its pidfiles name.

`start` runs the first three for all services at once (each in a thread of its own),
`wait_ready` the fourth for all together; `stop_all` stops many with one grace period.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from lab.errors import LabFailure
from lab.runtime import lifecycle
from lab.runtime.handle import NodeHandle

READY_TIMEOUT = 10.0  # s: every daemon of the lab is ready well within this
HELD_GRACE = 2.0  # s a held process may take to end after SIGTERM
DAEMON_GRACE = 0.2  # s for detached daemons (fail2ban's, miredo's…: a lab keeps no state)


class Refused(LabFailure):
    """The daemon would not start; the message is its own words (without the node's name)."""


class Service:
    """A daemon in one lab node, with the lifecycle above. Subclasses say what is theirs."""

    name = "service"
    grace = DAEMON_GRACE  # s its detached daemons may take to end after SIGTERM

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.held: list[subprocess.Popen[bytes]] = []  # processes it keeps in the foreground
        self.checked = False  # its dry run passed (or it has none): it was started

    def prepare(self) -> None:
        """Write the configuration; LabFailure if the daemon is not installed."""

    def dry_run(self) -> list[str]:
        """What the daemon says is wrong with its configuration (nothing: [])."""
        return []

    def start(self) -> None:
        """Start the daemon in the node; `Refused` with its words if it would not."""
        raise NotImplementedError

    def ready(self) -> bool:
        return True

    def not_ready(self) -> str:
        """Why it is not ready yet, for the failure once the wait is over."""
        return f"{self.name} did not start in {READY_TIMEOUT:g} s"

    def pidfiles(self) -> list[Path]:
        """The pidfiles of the processes it started detached."""
        return []

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        """Start `argv` in the node in the foreground, held (and stopped) by this service."""
        self.held.append(self.node.spawn(argv, log, env))

    def stop(self) -> None:
        stop_all([self])


def start(services: Sequence[Service]) -> dict[Service, list[str]]:
    """Prepare, dry-run and start the services, all at once; the problems of those not started.

    A service is not started when its dry run finds problems or its start is refused.
    Each waits on its own programs (`fail2ban-client --test`, `sshd -t`, `ip`), so they
    run side by side in threads; the first failure (in the services' order) is raised once
    all are done, so that nothing is still starting when the lab is torn down.
    """
    if len(services) <= 1:
        answers = [_started(s) for s in services]
    else:
        with ThreadPoolExecutor(max_workers=len(services)) as threads:
            futures = [threads.submit(_started, s) for s in services]
            wait(futures)
        answers = [f.result() for f in futures]
    return {s: problems for s, problems in zip(services, answers, strict=True) if problems}


def _started(service: Service) -> list[str]:
    """Prepare, dry-run and start one service: what stopped it ([]: it started)."""
    service.prepare()
    problems = service.dry_run()
    if problems:
        return problems
    service.checked = True
    try:
        service.start()
    except Refused as exc:
        return [str(exc)]
    return []


def wait_ready(services: Sequence[Service], timeout: float = READY_TIMEOUT) -> None:
    """Wait until every service is ready; LabFailure naming the first that is not."""
    deadline = time.monotonic() + timeout
    waiting = list(services)
    while waiting := [s for s in waiting if not s.ready()]:
        if time.monotonic() > deadline:
            raise LabFailure(f"{waiting[0].node.name}: {waiting[0].not_ready()}")
        time.sleep(0.01)


def pids_in(pidfiles: Sequence[Path]) -> list[int]:
    """The PIDs the pidfiles name (a file that is missing or holds no number: none)."""
    found = []
    for pidfile in pidfiles:
        with contextlib.suppress(OSError, ValueError, IndexError):
            found.append(int(pidfile.read_text().split()[0]))
    return found


def end(processes: Sequence[subprocess.Popen[Any]], grace: float = HELD_GRACE) -> None:
    """Terminate processes we hold and reap them; SIGKILL one still there after `grace` s."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()


def reap(services: Sequence[Service], also: Sequence[subprocess.Popen[Any]] = ()) -> None:
    """Collect the held processes of services whose namespaces were emptied already."""
    end([*also, *(p for s in services for p in s.held)], grace=HELD_GRACE)
    for service in services:
        service.held = []


def stop_all(services: Sequence[Service],
             also: Sequence[subprocess.Popen[Any]] = ()) -> None:
    """Stop services together: one grace period for all of them, not one each.

    `also`: other processes held by the caller, ended with the held ones.
    """
    end([*also, *(p for s in services for p in s.held)])
    for service in services:
        service.held = []
    # Detached daemons are stopped by pidfile while their namespace exists.
    lifecycle.kill_all(pids_in([f for s in services for f in s.pidfiles()]),
                       grace=max((s.grace for s in services), default=DAEMON_GRACE))
