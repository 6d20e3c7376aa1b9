"""A running node of the lab, as services and the engine use it.

A `NodeHandle` runs programs in one node's namespaces (through Mininet's
`popen`), starts the daemons services keep there, reads the node's listening
ports and names its folder in the run. It imports nothing of Mininet: the lab
hands it the Mininet node it wraps.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from lab.errors import LabFailure

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LISTEN = "0A"  # a socket's state in /proc/net/tcp*: LISTEN
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def project_env() -> dict[str, str]:
    """The environment for this project's own programs in a node (`python -m lab…`)."""
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def in_namespace(pid: int, make: Any) -> Any:
    """`make()` run by a thread inside the network namespace of process `pid`.

    Sockets (libnftables' netlink one too) stay bound to the namespace they were
    made in, so what `make` returns keeps talking to the node from any thread.
    Python 3.11 has no os.setns: libc's, through ctypes. The thread goes back before
    it ends.
    """
    made: list[Any] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with open(f"/proc/{pid}/ns/net") as node, open("/proc/thread-self/ns/net") as own:
                if _libc.setns(node.fileno(), CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns: {os.strerror(errno)}")
                try:
                    made.append(make())
                finally:
                    _libc.setns(own.fileno(), CLONE_NEWNET)
        except BaseException as exc:  # raised in the caller's thread below (a node whose
            failed.append(exc)  # process is gone: its /proc entry cannot be opened)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return made[0]


class NodeHandle:
    """One node of a running lab: run programs in it, start its daemons, read its ports."""

    def __init__(self, name: str, mininet_node: Any, folder: Path) -> None:
        self.name = name
        self.mininet = mininet_node
        self.folder = folder  # the node's own folder in the run (made here)
        folder.mkdir(exist_ok=True)

    @property
    def pid(self) -> int:
        """A process in the node's namespaces (its shell): /proc/PID/net is the node's."""
        pid: int = self.mininet.pid
        return pid

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        """Start `argv` in the node (options as for subprocess.Popen)."""
        proc: subprocess.Popen[Any] = self.mininet.popen(argv, **options)
        return proc

    def exec(self, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]:
        """Run a program in the node and wait for it: (status, stdout, stderr)."""
        proc = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise LabFailure(f"{self.name}: {' '.join(argv)} took over {timeout} s") from None
        return proc.returncode, out, err

    def spawn(self, argv: list[str], log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a program that stays in the foreground; its output goes to `log`.

        The caller holds the process and ends it (see lab.services.service).
        """
        with log.open("a") as out:
            proc: subprocess.Popen[bytes] = self.popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        return proc

    def start_daemon(self, argv: list[str], log: Path, timeout: float = 30) -> tuple[int, str]:
        """Run a command that leaves a daemon behind; wait for the command, not the daemon.

        The daemon inherits the command's output, so pipes would never close:
        the output goes to `log`. Returns the command's status and what it wrote.
        """
        with log.open("a+") as out:
            start = out.tell()
            proc = self.popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            try:
                status: int = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise LabFailure(f"{self.name}: {' '.join(argv)} took over {timeout} s") from None
            out.seek(start)
            return status, out.read()

    def listening(self) -> set[int]:
        """TCP ports in LISTEN state on both families in the node (read from /proc)."""
        ports: dict[str, set[int]] = {}
        for table in ("tcp", "tcp6"):
            lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()
            ports[table] = {int(ln.split()[1].rsplit(":", 1)[1], 16) for ln in lines[1:]
                            if ln.split()[3] == LISTEN}
        return ports["tcp"] & ports["tcp6"]
