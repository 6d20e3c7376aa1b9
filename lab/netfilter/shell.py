"""The shell a policy script is expanded with: the real bash, in a sandbox that holds nothing.

A script that is more than netfilter commands (variables, loops, functions, `set -e`)
is run, before any lab boots, by bash inside bubblewrap: new user (its root
mapped to an unprivileged user), mount, PID, network, IPC and UTS namespaces; a
fresh read-only tmpfs as the root that holds only bash and the libraries `ldd`
names, /dev/null, the script, the lab's shell around it (expand.bash) and
stand-ins for the netfilter tools. So no host file can be read or written, no
program of the host runs, and every process dies with the sandbox's PID 1. A
time limit, output limits and ulimits (expand.bash) bound what a script can cost.

What comes back is a trace: each netfilter call with its argv and line, each
command the sandbox did not have, bash's own complaints by line, and how the
script ended. lab.netfilter.script turns it into the commands the lab loads.

It lives here, not in lab/runtime: it belongs to reading the script dialect, at
read time, and lab/netfilter stays free of the runtime.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabFailure

TIME_LIMIT = 5.0  # seconds: far above any real script's expansion (a few ms)
OUTPUT_LIMIT = 1 << 20  # what the script prints, stdout and stderr together
CALLS_LIMIT = 16 << 20  # the recorded calls: twice the largest policy file the lab reads
PROCESS_LIMIT = 32  # processes at once (`ulimit -u` in expand.bash)
# bash's word when a fork hits that limit: it would retry for up to 15 s, so the lab
# stops the sandbox at the first one (a fork bomb ends in milliseconds, not at the time limit)
_FORK_LIMIT_HIT = b": fork: retry: "
# the folders the stand-ins are in (by any other path a tool is not found)
FOLDERS = ("/sbin", "/usr/sbin", "/bin", "/usr/bin")
SCRIPT = "/p25/script"  # where the script is in the sandbox: bash names it in complaints
_RECORD_FD = 99  # expand.bash's: below bash's own (255) and above a script's usual 3-9
_NOBODY = 65534
_HERE = Path(__file__).parent
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")  # what expand.bash may name a function
_COMPLAINT = re.compile(rf"^{re.escape(SCRIPT)}: line (\d+): (.*)$")


@dataclass(frozen=True)
class Call:
    """A netfilter call the script made: its argv (the program as called) and line."""

    line: int
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Trace:
    """What a script did when expanded.

    `missing`: (line, name) of each command the sandbox does not have;
    `complaints`: (line, message) of each of bash's own error messages;
    `exit`: (line, status) of the script's own `exit`, if it called one;
    `finished`: it ran to its last line; `garbled`: the records end in something
    expand.bash did not write (the script wrote to its descriptor); `stopped`: why
    the sandbox was stopped ("time", "output", "calls", "processes"), or "".
    """

    calls: tuple[Call, ...] = ()
    missing: tuple[tuple[int, str], ...] = ()
    complaints: tuple[tuple[int, str], ...] = ()
    exit: tuple[int, int] | None = None
    finished: bool = False
    garbled: bool = False
    status: int = 0
    stopped: str = ""


def expand(text: str, name: str, programs: Iterable[str], paths: Iterable[str] = ()) -> Trace:
    """Run the script `text` (called `name`) in the sandbox, with stand-ins for `programs`.

    The stand-ins answer to each program's name, in FOLDERS, and at `paths` (a
    script's own spellings of a tool's path, such as /opt/sbin/iptables).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise LabFailure("bwrap not found: a shell script is expanded in a bubblewrap "
                         "sandbox (apt-get install bubblewrap, or make setup)")
    programs = tuple(programs)
    data = [_memfd(text), _memfd((_HERE / "expand.bash").read_text()),
            _memfd((_HERE / "standin.bash").read_text())]
    record_r, record_w = os.pipe()
    output_r, output_w = os.pipe()
    info_r, info_w = os.pipe()  # bwrap says there the PID of the sandbox's PID 1
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "P25_FD": str(record_w),
           "P25_NAME": name, "P25_PROGRAMS": " ".join(programs),
           "P25_PROCESSES": str(PROCESS_LIMIT),
           "P25_PATHS": " ".join(p for p in paths if _SAFE_PATH.fullmatch(p))}
    argv = [bwrap, "--info-fd", str(info_w), *_sandbox(programs, *data)]
    for variable, value in env.items():
        argv += ["--setenv", variable, value]
    argv += ["/bin/bash", "--noprofile", "--norc", "/p25/expand.bash"]
    # root runs the sandbox as nobody: should anything get out, it is out unprivileged
    user = {"user": _NOBODY, "group": _NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output_w,
                                   stderr=output_w, pass_fds=(record_w, info_w, *data),
                                   env={}, close_fds=True, **user)  # type: ignore[call-overload]
    finally:
        for fd in (record_w, output_w, info_w, *data):
            os.close(fd)
    sandbox = None
    try:
        sandbox = _pid_one(info_r)
        records, output, stopped = _collect(record_r, output_r)
    finally:
        _end(process, sandbox)
        status = process.returncode
        for fd in (record_r, output_r, info_r):
            os.close(fd)
        if sandbox is not None:
            os.close(sandbox)
    said = output.decode("utf-8", "replace")
    if stopped:
        return Trace(stopped=stopped, status=status)
    if not records and said.startswith("bwrap:"):
        raise LabFailure(f"the sandbox for shell scripts did not start: "
                         f"{said.splitlines()[0]}")
    return _read(records, said, status)


def _pid_one(info_fd: int) -> int | None:
    """A pidfd of the sandbox's PID 1, from what bwrap writes on --info-fd once it runs."""
    said = b""
    deadline = time.monotonic() + TIME_LIMIT
    with selectors.DefaultSelector() as selector:
        selector.register(info_fd, selectors.EVENT_READ)
        while b"}" not in said and selector.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(info_fd, 4096)
            if not chunk:
                break
            said += chunk
    try:
        pid = json.loads(said)["child-pid"]
        return os.pidfd_open(pid) if isinstance(pid, int) else None
    except (ValueError, KeyError, TypeError, OSError):
        return None  # bwrap did not start it: nothing runs that could be left


def _end(process: subprocess.Popen[bytes], sandbox: int | None) -> None:
    """Wait for bwrap; on a limit, kill the sandbox's PID 1 and with it every process in it.

    The kernel completes the death of the sandbox's PID 1 only once every other
    process of its PID namespace is gone, so the end is waited for on PID 1's
    pidfd: bwrap itself returns as soon as the script's shell has ended (its PID 1
    then dies with it, --die-with-parent, but a moment later — CI saw a fork
    bomb's processes still there).
    """
    if process.poll() is None:
        if sandbox is not None:
            signal.pidfd_send_signal(sandbox, signal.SIGKILL)
        else:
            process.kill()
    process.wait()
    if sandbox is None:
        return
    with selectors.DefaultSelector() as selector:
        selector.register(sandbox, selectors.EVENT_READ)  # readable once PID 1 has ended
        if not selector.select(TIME_LIMIT):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(sandbox, signal.SIGKILL)
            selector.select(TIME_LIMIT)


def _sandbox(programs: tuple[str, ...], script: int, shell: int, standin: int) -> list[str]:
    """bwrap's options: the namespaces and the root the script runs in."""
    argv = ["--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0", "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/",
            "--hostname", "gateway"]
    bash = os.path.realpath(shutil.which("bash") or "/bin/bash")
    argv += ["--ro-bind", bash, "/bin/bash"]
    for library in _libraries(bash):
        argv += ["--ro-bind", library, library]
    argv += ["--dev-bind", "/dev/null", "/dev/null", "--dir", "/p25",
             "--perms", "0444", "--ro-bind-data", str(script), SCRIPT,
             "--perms", "0444", "--ro-bind-data", str(shell), "/p25/expand.bash",
             "--perms", "0555", "--ro-bind-data", str(standin), "/p25/standin"]
    for folder in FOLDERS:
        for program in programs:
            argv += ["--symlink", "/p25/standin", f"{folder}/{program}"]
    return [*argv, "--remount-ro", "/"]


@functools.cache
def _libraries(program: str) -> tuple[str, ...]:
    """The shared libraries `program` loads, by absolute path (what `ldd` names)."""
    listed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True)
    return tuple(sorted({word for word in listed.stdout.split() if word.startswith("/")}))


def _memfd(text: str) -> int:
    fd = os.memfd_create("p25-sandbox", 0)
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _collect(record_fd: int, output_fd: int) -> tuple[bytes, bytes, str]:
    """Both streams until they close, or until a limit is passed (then why)."""
    streams = {record_fd: bytearray(), output_fd: bytearray()}
    limits = {record_fd: (CALLS_LIMIT, "calls"), output_fd: (OUTPUT_LIMIT, "output")}
    deadline = time.monotonic() + TIME_LIMIT
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return b"", b"", "time"
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                streams[key.fd] += chunk
                limit, why = limits[key.fd]
                if len(streams[key.fd]) > limit:
                    return b"", b"", why
                if key.fd == output_fd and _FORK_LIMIT_HIT in streams[output_fd]:
                    return b"", b"", "processes"
    return bytes(streams[record_fd]), bytes(streams[output_fd]), ""


def _read(records: bytes, output: str, status: int) -> Trace:
    """The trace from expand.bash's records and bash's complaints."""
    fields = records.decode("utf-8", "replace").split("\0")
    calls: list[Call] = []
    missing: list[tuple[int, str]] = []
    exit_at: tuple[int, int] | None = None
    finished = garbled = False
    at = 0
    try:
        while at < len(fields) - 1:  # the last field is what follows the last NUL
            kind = fields[at]
            if kind == "C":
                line, count = int(fields[at + 1]), int(fields[at + 2])
                argv = tuple(fields[at + 3:at + 4 + count])
                if len(argv) != count + 1:
                    raise ValueError("a call cut short")
                calls.append(Call(line, argv))
                at += 4 + count
            elif kind == "N":
                missing.append((int(fields[at + 1]), fields[at + 2]))
                at += 3
            elif kind == "X":
                exit_at = exit_at or (int(fields[at + 1]), _status(fields[at + 2]))
                at += 3
            elif kind == "D":
                finished = True
                at += 2
            else:
                raise ValueError(f"no record {kind!r}")
    except (ValueError, IndexError):
        garbled = True  # only the script can have written it (to descriptor 99)
    complaints = tuple((int(m.group(1)), m.group(2)) for m in map(_COMPLAINT.match,
                                                                    output.splitlines()) if m)
    return Trace(tuple(calls), tuple(missing), complaints, exit_at, finished, garbled, status)


def _status(word: str) -> int:
    try:
        return int(word) & 0xFF
    except ValueError:  # `exit foo`: bash says "numeric argument required" and exits 2
        return 2
