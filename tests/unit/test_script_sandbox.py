"""A policy script touches nothing of the host: no file read or written, no process left.

The script is expanded by the real bash (lab.netfilter.shell): these tests give it
what an attacker, or a careless admin, would write, and look at the host's own
file system and process table afterwards.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.netfilter.policy import read_policy


def _processes(marker: str) -> list[str]:
    """The host's processes whose command line or environment holds `marker`.

    A sandbox's processes carry the script's name in their environment (P25_NAME):
    a test that names its script uniquely finds its own, not another run's.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if marker in line or marker in env:
            found.append(f"{entry.name}: {line}")
    return found


def test_nothing_in_a_script_reaches_the_host(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    traces = [Path(f"/tmp/p25-trace-{token}-{n}") for n in range(6)]
    keep = Path(f"/tmp/p25-keep-{token}")
    keep.mkdir()
    (keep / "file").write_text("kept\n")
    secret = tmp_path / "secret"
    secret.write_text(f"p25-secret-{token}\n")
    try:
        path = tmp_path / f"rules-{token}.sh"
        path.write_text(f"""\
touch {traces[0]}
x=$(touch {traces[1]})
y=`touch {traces[2]}`
echo pwned > {traces[3]}
echo pwned >> {keep}/file
cd /tmp && echo pwned > {traces[4].name}
exec 3>{traces[5]}
rm -rf {keep}
sleep 600 &
( while :; do :; done ) &
( ( while :; do :; done ) & ) &
exec 4<>/dev/tcp/192.0.2.1/25
iptables -A FORWARD -m comment --comment "$(cat {secret})$(< {secret})" -j ACCEPT
set +f
for f in /*; do iptables -A FORWARD -m comment --comment "$f" -j ACCEPT; done
""")
        policy = read_policy(path)
        # what was done in the sandbox stayed there
        assert [t for t in traces if t.exists()] == []
        assert (keep / "file").read_text() == "kept\n"
        assert _processes(path.name) == []
        # no host file was there to read: the comment is empty, no secret is quoted
        assert policy.commands[0].argv == ("iptables", "-A", "FORWARD", "-m", "comment",
                                           "--comment", "", "-j", "ACCEPT")
        assert all(f"p25-secret-{token}" not in " ".join((*c.argv, c.text))
                   for c in policy.commands)
        assert not any(f"p25-secret-{token}" in note for note in policy.notes)
        # what the sandbox holds: bash and its libraries, /dev/null, the lab's files
        # and the stand-ins; nothing of the host (/etc, /home, /proc, /root, /tmp)
        assert {c.argv[-3] for c in policy.commands[1:]} == {
            "/bin", "/dev", "/lib", "/lib64", "/p25", "/sbin", "/usr"}
        # each refusal is a note at its line, the host's paths named as the script names
        # them: ten named, the rest (line 13's cat and its file) counted
        assert [int(n.split(":")[1]) for n in policy.notes[:-1]] == [*range(1, 10), 12]
        assert policy.notes[4].endswith(f":5: '{keep}/file' is not in the lab (no such file or "
                                        "directory: nothing of the host is): not run, read or "
                                        "written")
        assert policy.notes[-1].endswith(": 2 more lines are not run in the lab")
    finally:
        for trace in traces:
            trace.unlink(missing_ok=True)
        (keep / "file").unlink(missing_ok=True)
        keep.rmdir()


def test_a_script_that_forks_without_end_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / f"rules-{secrets.token_hex(4)}.sh"
    path.write_text("iptables -A FORWARD -j DROP\n"
                    "bomb() { bomb | bomb & }\n"
                    "bomb\n")
    # Two endings, both right, and which one is a race the kernel's scheduler decides: the
    # script's own shell forks the two halves of `bomb | bomb &` and ends, and every process
    # of the sandbox ends with it; or the first half's children reach the sandbox's process
    # limit before the shell forks the second half, and the lab says so at bash's first
    # failed fork (bash would retry it for 15 s). Never the time limit's message (CI saw it
    # once, before the lab stopped at the first failed fork), never a process left.
    try:
        policy = read_policy(path)
    except BadInput as error:
        assert str(error) == (f"{path}: starts more than 32 processes at once when the lab "
                              "expands it (a fork bomb?): a policy script must not")
    else:
        assert [c.argv for c in policy.commands] == [("iptables", "-A", "FORWARD", "-j", "DROP")]
    assert _processes(path.name) == []


def test_a_script_that_starts_more_processes_than_the_limit_is_one_line(tmp_path: Path) -> None:
    # 40 background jobs that stay a while: the 33rd fork fails, and the lab stops there
    # (the time limit would say "still running after 5 s")
    path = tmp_path / f"rules-{secrets.token_hex(4)}.sh"
    path.write_text("iptables -A FORWARD -j DROP\n"
                    "for i in {1..40}; do (for ((j=0;j<100000;j++)); do :; done) & done\n"
                    "wait\n")
    with pytest.raises(BadInput, match=r"starts more than 32 processes at once"):
        read_policy(path)
    assert _processes(path.name) == []
