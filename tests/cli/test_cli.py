"""The command line end to end, as a user runs it: exit codes, reports, signals."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.netfilter.policy import read_policy
from lab.runtime import lifecycle
from tests.support import CLI, PROJECT, leftovers, prefixes, without_mininet

pytestmark = pytest.mark.lab


def _cli(*args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          check=False)


def test_verify_writes_the_json_and_junit_shapes(tmp_path: Path) -> None:
    out, xml = tmp_path / "out.json", tmp_path / "out.xml"
    done = _cli("verify", "seed-screened-block", "fixed-screened-block",
                "--json", str(out), "--junit", str(xml))
    assert done.returncode == 1, done.stderr
    assert "== seed-screened-block [screened-host] FAIL" in done.stdout
    assert "== fixed-screened-block [screened-host] PASS" in done.stdout
    assert "load error: scenarios/seed-screened-block/rules.sh:14: Bad argument `3544'" \
        in done.stdout
    assert "[1/66]" in done.stderr  # progress while it runs
    report = json.loads(out.read_text())
    seed, fixed = report["scenarios"]
    assert (seed["name"], seed["topology"], seed["passed"]) == (
        "seed-screened-block", "screened-host", False)
    assert seed["load_errors"] == [{"file": "scenarios/seed-screened-block/rules.sh",
                                    "line": 14, "message": "Bad argument `3544'"}]
    assert fixed["passed"] is True and fixed["load_errors"] == []
    for result in seed["results"] + fixed["results"]:
        assert set(result) >= {"source", "target", "probe", "family", "expected", "observed",
                               "rule", "detail", "passed"}
        assert result["family"] in (4, 6)
        assert result["observed"] in ("allowed", "blocked", "diverted", "banned", "error")
    suites = ET.parse(xml).getroot()
    assert [s.get("name") for s in suites] == ["seed-screened-block", "fixed-screened-block"]
    assert suites[0].find("testcase[@name='policy loads']/failure") is not None
    for p in prefixes(done.stderr):
        assert leftovers(p) == []


def _saved_v4(script: Path) -> str:
    """iptables-save of a script's IPv4 rules, as an auditor would pull it from a gateway."""
    scratch = f"p25-{secrets.token_hex(3)}-save"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        for command in read_policy(script).only(4).commands:
            subprocess.run(["ip", "netns", "exec", scratch, command.argv[0], "-w",
                            *command.argv[1:]], check=True)
        return subprocess.run(["ip", "netns", "exec", scratch, "iptables-save"],
                              capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", scratch], check=True)


def test_rules_override_with_save_and_script_files(tmp_path: Path) -> None:
    save = tmp_path / "gw.rules.v4"
    save.write_text(_saved_v4(PROJECT / "scenarios/fixed-screened-block/rules.sh"))
    # The seed's v4 part (with the broken Teredo line) is replaced; its v6 part stays.
    done = _cli("verify", "seed-screened-block", "--rules-v4", str(save), "-q")
    assert done.returncode == 0, done.stdout
    assert "load error" not in done.stdout
    # Only the seed's IPv6 rules replaced by an empty-of-blocking script: v6 leaks.
    script = tmp_path / "v6.sh"
    script.write_text("ip6tables -A FORWARD -i eth0 -p tcp --dport 80 -j DROP\n")
    done = _cli("verify", "fixed-screened-block", "--rules-v6", str(script), "-q")
    assert done.returncode == 1
    rows = {tuple(ln.split()[:3]): ln for ln in done.stdout.splitlines()
            if ln.strip().startswith("client1    remote-mx")}
    # IPv4 still blocked by the fixed rules; IPv6 leaks, and the spambot's mail arrives
    for probe in ("smtp", "smtps", "spam"):
        assert "blocked [1]  allowed ✗ (want blocked)" in rows["client1", "remote-mx", probe]
    assert "delivered into remote-mx's mailbox" in done.stdout


@pytest.mark.parametrize("args, message", [
    ((), "no command given"),
    (("verify",), "no scenario given"),
    (("verify", "no-such-scenario"), "unknown scenario 'no-such-scenario'"),
    (("verify", "--all", "seed-dmz-block"), "not both"),
    (("verify", "fixed-dmz-block", "--json", "/nonexistent/dir/out.json"), "does not exist"),
    (("verify", "fixed-dmz-block", "--rules-v4", "/nonexistent.rules"), "no such rules file"),
    (("verify", "fixed-dmz-block", "--rules-v4", "/bin/true"), "binary file"),
    (("verify", "fixed-dmz-block", "--rules-v6", "pyproject.toml"), "not an iptables"),
    (("shell",), "required: SCENARIO"),
    (("suspects",), "required: SCENARIO"),
    (("suspects", "no-such-scenario"), "unknown scenario 'no-such-scenario'"),
    (("suspects", "spambot", "--json", "/nonexistent/dir/s.json"), "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("port25lab: "), done.stderr
    assert message in lines[0]


def test_sigterm_mid_run_tears_everything_down() -> None:
    proc = subprocess.Popen([CLI, "verify", "--all"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT)
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 120
    while "[3/" not in seen and time.monotonic() < deadline:  # mid-run: probes under way
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by signal 15; lab torn down" in rest
    found = prefixes(seen)
    assert found
    for p in found:
        assert leftovers(p) == []


def test_two_runs_side_by_side() -> None:
    procs = [subprocess.Popen([CLI, "verify", name, "-q"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=PROJECT)
             for name in ("fixed-screened-block", "fixed-dmz-block")]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("PASS" in out for out, _ in outputs)


def test_shell_keeps_the_lab_up_until_exit() -> None:
    done = subprocess.run(
        [CLI, "shell", "fixed-screened-block"], text=True, capture_output=True, timeout=120,
        cwd=PROJECT, check=False,
        input="client1 ping -c1 -W1 2001:db8:ffff:1::25\n"
              "client1 ping -c1 -W1 remote-mx\n"  # Mininet puts in remote-mx's address
              "remote-mx ping -c1 -W1 mx\n"  # a role with a dash is a node name too
              "gw iptables -L FORWARD -n\nexit\n")
    assert done.returncode == 0, done.stderr
    assert "fixed-screened-block is up" in done.stderr
    shown = done.stdout + done.stderr  # Mininet's CLI prints through its log (stderr)
    assert shown.count("1 packets transmitted, 1 received") == 3
    assert "multiport dports 25,465" in shown  # the policy is loaded on gw
    found = prefixes(done.stderr)
    assert len(found) == 1
    assert leftovers(found.pop()) == []


def test_not_root_is_bad_input() -> None:
    # The checkout may sit where `nobody` cannot read (a 0700 temporary folder), so the
    # program's modules are loaded as root, then the process becomes nobody and runs
    # the command on a scenario folder that nobody can read.
    folder = Path(tempfile.mkdtemp(prefix="p25-notroot-"))
    try:
        folder.chmod(0o755)
        for name in ("scenario.yaml", "rules.sh"):
            shutil.copy(PROJECT / "scenarios/fixed-dmz-block" / name, folder / name)
            (folder / name).chmod(0o644)
        code = ("import os, sys\n"
                "import lab.cli, lab.runtime.lifecycle, lab.netfilter.policy, lab.report\n"
                "import lab.model.scenario, lab.engine.verify\n"
                "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
                f"sys.exit(lab.cli.main(['verify', {str(folder)!r}]))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, cwd="/", check=False)
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "port25lab: `port25lab verify` needs root " \
                          "(it creates network namespaces)\n"


def test_mininet_missing_is_bad_input() -> None:
    # Mininet hidden from the import system (`list` needs none: tests/unit/test_import_guard.py)
    done = without_mininet("from lab.cli import main; sys.exit(main(['verify', "
                           "'fixed-screened-block']))")
    assert done.returncode == 2
    assert done.stderr.startswith("port25lab: Mininet is not importable")
    assert len(done.stderr.splitlines()) == 1


# --- Report files, closed and full outputs, odd file names (issue 10: items 4, 5, 10) ---

LONG = "a" * 300  # one name over the 255 bytes every Linux file system allows
EARLIER = "the last run's report\n"


def _small_scenario(folder: Path) -> Path:
    """Three probes on the fixed screened-host rules: a real lab, up and down in seconds."""
    folder.mkdir()
    shutil.copy(PROJECT / "scenarios/fixed-screened-block/rules.sh", folder / "rules.sh")
    (folder / "scenario.yaml").write_text(
        "summary: three probes\ntopology: screened-host\npolicy:\n  gw: [rules.sh]\nexpect:\n"
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4, 6], "
        "verdict: blocked}\n"
        "  - {from: client1, to: remote-mx, probes: [web], families: [4], verdict: allowed}\n")
    return folder


@pytest.fixture
def immutable(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """An earlier report that not even root may change (chattr +i)."""
    path = tmp_path / "immutable.json"
    path.write_text(EARLIER)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(path)], check=True))
    return path


def _one_line(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("port25lab: "), done.stderr
    assert message in lines[0]
    assert prefixes(done.stderr) == set()  # no lab booted


@pytest.mark.parametrize("args, message", [
    (("verify", "{small}", "--json", "/proc/p25-report.json"),
     "--json /proc/p25-report.json: cannot write there (No such file or directory)"),
    (("verify", "{small}", "--junit", "{tmp}/small/rules.sh/out.xml"), "is not a folder"),
    (("verify", "{small}", "--json", "{immutable}"),
     "cannot write there (Operation not permitted)"),
    (("suspects", "{small}", "--json", "{immutable}"), "(Operation not permitted)"),
    (("audit", "ssh://root@gw", "--junit", "{immutable}"), "(Operation not permitted)"),
    (("verify", "{small}", "--json", "{tmp}/out", "--junit", "{tmp}/../{tmpname}/out"),
     "are the same file"),
    (("audit", "ssh://root@gw", "--json", "{tmp}/out", "--junit", "{tmp}/./out"),
     "are the same file"),
    (("verify", "{small}", "--json", f"{{tmp}}/{LONG}.json"),
     "argument --json: '"),
    (("verify", f"{{tmp}}/{LONG}"), "a name in it is 300 bytes long; file systems allow 255"),
    (("suspects", f"{{tmp}}/{LONG}/"), "argument SCENARIO: "),
    (("audit", "ssh://root@gw", "-i", f"{{tmp}}/{LONG}"), "argument -i/--identity: "),
])
def test_reports_and_names_that_cannot_be_are_one_line_and_exit_2(
        tmp_path: Path, immutable: Path, args: tuple[str, ...], message: str) -> None:
    small = _small_scenario(tmp_path / "small")
    names = {"small": str(small), "tmp": str(tmp_path), "tmpname": tmp_path.name,
             "immutable": str(immutable)}
    done = _cli(*(a.format(**names) for a in args))
    _one_line(done, message)
    assert immutable.read_text() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["immutable.json", "small"]


@pytest.mark.parametrize("report", ["new.json", "earlier.json"])
def test_a_report_on_a_read_only_file_system(tmp_path: Path, report: str) -> None:
    # A private mount namespace: the read-only bind mount ends with the command.
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "earlier.json").write_text(EARLIER)
    small = _small_scenario(tmp_path / "small")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"',
         "sh", str(folder), CLI, "verify", str(small), "--json", str(folder / report)],
        capture_output=True, text=True, timeout=120, check=False)
    _one_line(done, f"--json {folder / report}: cannot write there (Read-only file system)")
    assert sorted(p.name for p in folder.iterdir()) == ["earlier.json"]
    assert (folder / "earlier.json").read_text() == EARLIER


@pytest.mark.parametrize("command", ["verify", "suspects"])
def test_a_report_that_fails_at_the_end_keeps_the_terminal_report(
        tmp_path: Path, command: str) -> None:
    # /dev/full passes the check before the run (it opens for writing) and fails the write.
    small = _small_scenario(tmp_path / "small")
    done = _cli(command, str(small), "--json", "/dev/full")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"== small [screened-host]{' PASS' if command == 'verify' else ''}" in done.stdout
    assert "client1 (203.0.113.10): 1 attempts, ports 25" in done.stdout
    assert done.stderr.splitlines()[-1] == (
        "port25lab: --json /dev/full: the report could not be written (No space left on "
        "device); the run's results are the terminal report above")
    found = prefixes(done.stderr) if command == "verify" else set()
    for p in found:
        assert leftovers(p) == []


def _closed_pipe() -> int:
    """The writing end of a pipe whose reader is gone (as when `head` has exited)."""
    import os  # here, so that this block only adds to the end of the file

    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("args", [("list",), ("list", "--probes"), ("--help",),
                                  ("verify", "--help"), ("audit", "--help"), ("--version",)])
def test_output_into_a_closed_pipe_ends_quietly(args: tuple[str, ...]) -> None:
    with open(_closed_pipe(), "w") as closed:
        done = subprocess.run([CLI, *args], stdout=closed, stderr=subprocess.PIPE, text=True,
                              timeout=60, cwd=PROJECT, check=False)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


def test_a_reader_that_goes_away_mid_run(tmp_path: Path) -> None:
    # `port25lab verify … 2>&1 | head -1`: the lab is torn down, then a quiet exit
    small = _small_scenario(tmp_path / "small")
    proc = subprocess.Popen([CLI, "verify", str(small)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stderr.readline()
    assert "booting screened-host as p25-" in first  # the lab boots now; nobody reads on
    proc.stderr.close()
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert out == ""
    (prefix,) = prefixes(first)
    assert leftovers(prefix) == []


@pytest.mark.parametrize("args", [("list",), ("list", "--probes"), ("verify", "--help"),
                                  ("--version",)])
def test_output_into_a_full_device_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([CLI, *args], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60, cwd=PROJECT, check=False)
    assert done.returncode == 2
    assert done.stderr == "port25lab: cannot write the output: No space left on device\n"


def test_reports_into_standard_output(tmp_path: Path) -> None:
    small = _small_scenario(tmp_path / "small")
    # Into a pipe: the check before the run opens /dev/stdout as the kernel links it.
    done = _cli("verify", str(small), "-q", "--json", "/dev/stdout")
    assert done.returncode == 0, done.stderr
    matrix, _, report = done.stdout.partition("1 of 1 scenarios pass\n")
    assert "== small [screened-host] PASS" in matrix
    assert json.loads(report)["scenarios"][0]["passed"] is True
    # Into a file, twice: the JUnit report would replace the JSON one.
    with (tmp_path / "out").open("w") as out:
        both = subprocess.run([CLI, "verify", str(small), "--json", "/dev/stdout",
                               "--junit", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert both.returncode == 2
    assert both.stderr.startswith("port25lab: --json /dev/stdout and --junit /dev/stdout "
                                  "are the same file")
    assert (tmp_path / "out").read_text() == ""


# --- issue 10: reading policies (empty, mixed, wrong family, bad input, planted programs) --
# (imports local to this block, so that it merges apart from the file's head)

def _rows(stdout: str) -> dict[tuple[str, ...], str]:
    """The terminal matrix's rows by (source, target, probe)."""
    return {tuple(ln.split()[:3]): ln for ln in stdout.splitlines()
            if ln.startswith("   ") and len(ln.split()) >= 5}


def test_an_empty_ipv6_policy_lets_every_clients_ipv6_smtp_through(tmp_path: Path) -> None:
    import re

    from lab.model.scenario import load

    fixed = PROJECT / "scenarios/fixed-screened-block/rules.sh"  # the OK IPv4 rules
    empty = tmp_path / "empty.rules"  # what ip6tables-save prints without IPv6 rules
    empty.write_text("# Generated by ip6tables-save v1.8.9 (nf_tables) on Mon Jan  1 2024\n")
    done = _cli("verify", "fixed-screened-block", "--rules-v4", str(fixed),
                "--rules-v6", str(empty), "-q")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "== fixed-screened-block [screened-host] FAIL" in done.stdout
    assert "load error" not in done.stdout
    rows = _rows(done.stdout)
    clients = load("fixed-screened-block").site.clients
    assert clients
    for client in clients:
        for target, probe in (("remote-mx", "smtp"), ("remote-mx", "smtps"), ("sink", "smtp")):
            cells = rows[client, target, probe].split(None, 3)[3]
            assert re.fullmatch(r"blocked \[\d+\]\s+allowed ✗ \(want blocked\)", cells), cells
    # the fixed file's ip6tables lines were left out, and the note says which
    v6_lines = [c.line for c in read_policy(fixed).commands if c.family == 6]
    named = ", ".join(f"scenarios/fixed-screened-block/rules.sh:{n}" for n in v6_lines)
    assert (f"note: --rules-v4 scenarios/fixed-screened-block/rules.sh: its 3 IPv6 command(s) "
            f"are left out ({named}): the IPv6 rules come from {empty}") in done.stderr
    for p in prefixes(done.stderr):
        assert leftovers(p) == []


@pytest.mark.parametrize(("text", "rule_line", "commit_line"), [
    # the shape: the bad rule on line 3, COMMIT on line 4
    ("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -s 203.0.113.0/24 -p tcp --dport 25 -j NOPE\n"
     "COMMIT\n", 3, 4),
    # in a second table, after good rules, with a user chain
    ("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j ACCEPT\nCOMMIT\n"
     "*filter\n:FORWARD ACCEPT [0:0]\n:mine - [0:0]\n-A FORWARD -j mine\n"
     "-A FORWARD -p tcp --dport 25 -j DROP\n-A FORWARD -p tcp --dport 465 -j NOPE\n"
     "-A FORWARD -j ACCEPT\n-A mine -j RETURN\nCOMMIT\n", 10, 13),
])
def test_a_save_files_load_error_names_the_rule_line(tmp_path: Path, text: str,
                                                     rule_line: int, commit_line: int) -> None:
    from lab.netfilter.policy import apply_policy, shown

    bad = tmp_path / "bad.v4"
    bad.write_text(text)
    scratch = f"p25-{secrets.token_hex(3)}-restore"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        def run(argv: list[str], stdin: str | None) -> tuple[int, str]:
            done = subprocess.run(["ip", "netns", "exec", scratch, *argv], input=stdin,
                                  capture_output=True, text=True, timeout=30, check=False)
            return done.returncode, done.stderr

        status, err = run(["iptables-restore", "-w"], text)  # what the tool itself says
        assert status != 0 and f"line: {commit_line}" in err
        errors = apply_policy(read_policy(bad, 4), run)
        left = subprocess.run(["ip", "netns", "exec", scratch, "iptables-save"],
                              capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", scratch], check=True)
    assert [(e.file, e.line) for e in errors] == [(shown(bad), rule_line)]
    assert errors[0].message.endswith("Chain 'NOPE' does not exist")
    # the trials ran apart: the router's filter table holds none of their rules
    assert "-A FORWARD" not in left


PLANTED = "#!/bin/sh\n# a program named like iptables: it must never run\ntouch {trace}\n"


def test_a_planted_iptables_never_runs(tmp_path: Path) -> None:
    import re

    trace = tmp_path / "trace"
    for folder in (tmp_path / "bin", tmp_path):
        folder.mkdir(exist_ok=True)
        (folder / "iptables").write_text(PLANTED.format(trace=f"{trace}-{folder.name}"))
        (folder / "iptables").chmod(0o755)
    scenario = tmp_path / "planted"
    scenario.mkdir()
    (scenario / "rules.sh").write_text(
        f"{tmp_path}/bin/iptables -A FORWARD -i eth0 -p tcp -s 203.0.113.0/24 --dport 25 -j DROP\n"
        "./iptables -A FORWARD -i eth0 -p tcp -s 203.0.113.0/24 --dport 465 -j DROP\n"
        f"iptables -A FORWARD -p tcp --dport 26 -j DROP; touch {trace}-semicolon\n"
        f"iptables -A FORWARD -p tcp --dport 27 -j DROP $(touch {trace}-dollar) "
        f"`touch {trace}-backtick`\n")
    (scenario / "scenario.yaml").write_text(
        "topology: screened-host\npolicy: {gw: [rules.sh]}\nexpect:\n"
        "  - {from: client1, to: remote-mx, probes: [smtp, smtps], families: [4], "
        "verdict: blocked}\n")
    # run from tmp_path, where ./iptables is the planted one
    done = _cli("verify", str(scenario), cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("trace*")) == []
    assert done.returncode == 1, done.stdout + done.stderr  # the last two lines do not load
    load_errors = [ln.strip() for ln in done.stdout.splitlines() if "load error:" in ln]
    assert [ln.split(":")[2] for ln in load_errors] == ["3", "4"], load_errors
    # the first two lines loaded as the lab's iptables loads them, and decide
    rows = _rows(done.stdout)
    assert rows["client1", "remote-mx", "smtp"].split()[3:5] == ["blocked", "[1]"]
    assert rows["client1", "remote-mx", "smtps"].split()[3:5] == ["blocked", "[2]"]
    assert re.search(r"\[1\] gw: iptables -t filter FORWARD#1: .*--dport 25 -j DROP", done.stdout)
    assert re.search(r"\[2\] gw: iptables -t filter FORWARD#2: .*--dport 465 -j DROP",
                     done.stdout)
    for p in prefixes(done.stderr):
        assert leftovers(p) == []


SHADOW_LIKE = ("root:$y$j9T$QmVyc2lvbjE$0abcDEFghiJKLmnoPQRstuVWXyz1234567890:19700:0:99999:7:::\n"
               "daemon:*:19700:0:99999:7:::\n")


def _bad_rules(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """The command line of one bad-input case, and what its one line must say."""
    import os

    path = tmp_path / "rules"
    save = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -s 203.0.113.0/24 -j DROP\n"
    if case == "fifo":
        os.mkfifo(path)
        return ["--rules-v4", str(path)], "not a regular file"
    if case in ("/dev/zero", "/dev/urandom"):
        return ["--rules-v4", case], "not a regular file"
    texts = {"quote": (save + '-A FORWARD -j DROP "\nCOMMIT\n', "4: cannot parse the rule"),
             "no-commit": (save, "table filter (line 1) is not committed"),
             "long-line": ("A" * 2**20 + "\n", "1: longer than"),
             "nft-header": ("# Generated by iptables-nft-save v1.8.9 (nf_tables)\n"
                            "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
                            "holds IPv4 rules, given as IPv6"),
             "shadow": (SHADOW_LIKE, "1: not an iptables/ip6tables command")}
    text, message = texts[case]
    path.write_text(text)
    if case == "shadow":  # the shape: a scenario naming it as a policy
        (tmp_path / "scenario.yaml").write_text(
            "topology: screened-host\npolicy: {gw: [rules]}\nexpect:\n"
            "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], "
            "verdict: blocked}\n")
        return [str(tmp_path)], message
    return ["--rules-v6" if case == "nft-header" else "--rules-v4", str(path)], message


@pytest.mark.parametrize("case", ["/dev/zero", "/dev/urandom", "fifo", "quote", "no-commit",
                                  "long-line", "nft-header", "shadow"])
def test_bad_rules_are_one_line_before_any_lab(tmp_path: Path, case: str) -> None:
    args, message = _bad_rules(tmp_path, case)
    scenario = [] if case == "shadow" else ["fixed-screened-block"]
    done = subprocess.run([CLI, "verify", *scenario, *args], capture_output=True, text=True,
                          timeout=60, cwd=PROJECT, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("port25lab: "), done.stderr
    assert message in lines[0]
    assert not prefixes(done.stderr)
    for secret in ("root", "daemon", "$y$", "19700", "99999"):  # nothing of the file is quoted
        assert secret not in lines[0].replace(str(tmp_path), "")


# -- signals at any point of a run, and what their message says (issue 10) ----------------

def _run_folder_of(pid: int) -> Path | None:
    """The run folder that process `pid` made (its owner.json names it), if any yet."""
    for folder in lifecycle.RUN_ROOT.glob(lifecycle.PREFIX_HEAD + "*"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads((folder / "owner.json").read_text())["pid"] == pid:
                return folder
    return None


def _node_shells(pid: int) -> int:
    """How many Mininet node shells (`mininet:NAME`) process `pid` has started."""
    count = 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if (entry.name.isdigit()
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
                    and b"mininet:" in (entry / "cmdline").read_bytes()):
                count += 1
    return count


def _named(folder: Path) -> int:
    return sum(1 for n in os.listdir(lifecycle.NETNS_ROOT) if n.startswith(folder.name + "-"))


# Points of a screened-host run (9 nodes), in order, as seen from outside.
RUN_EVENTS: dict[str, Callable[[Path, int], bool]] = {
    "run folder made": lambda folder, pid: True,
    "first node shell": lambda folder, pid: _node_shells(pid) >= 1,
    "half the node shells": lambda folder, pid: _node_shells(pid) >= 5,
    "all node shells (links next)": lambda folder, pid: _node_shells(pid) >= 9,
    "first namespace named": lambda folder, pid: _named(folder) >= 1,
    "all namespaces named (bridges start)": lambda folder, pid: _named(folder) >= 9,
    "recorders started": lambda folder, pid: any(folder.glob("*.packets.jsonl")),
    "Dovecot started": lambda folder, pid: (folder / "mx/dovecot/run/master.pid").exists(),
    # the probes are done and the teardown deletes the namespaces
    "a namespace deleted": lambda folder, pid: (any(folder.glob("*.packets.jsonl"))
                                                and _named(folder) < 9),
}


def _signal_at(event: str, signum: int) -> tuple[int, str, str]:
    """`verify fixed-proxy`, sent `signum` at a RUN_EVENTS event: (status, stderr, prefix)."""
    proc = subprocess.Popen([CLI, "verify", "fixed-proxy"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT)
    folder = None
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        folder = folder or _run_folder_of(proc.pid)
        if folder is not None and RUN_EVENTS[event](folder, proc.pid):
            break
        time.sleep(0.002)
    reached = proc.poll() is None and folder is not None
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert reached and folder is not None, f"{event} never came: {err}"
    return proc.returncode, err, folder.name


@pytest.mark.parametrize("event", list(RUN_EVENTS))
def test_sigterm_at_any_point_of_a_run_tears_everything_down(event: str) -> None:
    status, err, prefix = _signal_at(event, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] in (
        f"port25lab: interrupted by signal 15; lab torn down ({prefix})",
        "port25lab: interrupted by signal 15 while no lab was up"), err
    if any(word in event for word in ("named", "started", "deleted")):  # a lab was up
        assert err.splitlines()[-1].endswith(f"torn down ({prefix})")
    assert leftovers(prefix) == []


@pytest.mark.parametrize("event", ["all namespaces named (bridges start)", "Dovecot started"])
def test_sighup_tears_everything_down(event: str) -> None:
    status, err, prefix = _signal_at(event, signal.SIGHUP)
    assert status == 128 + signal.SIGHUP, err
    assert err.splitlines()[-1] == f"port25lab: interrupted by signal 1; lab torn down ({prefix})"
    assert leftovers(prefix) == []


def test_a_closed_terminal_tears_everything_down() -> None:
    # The CLI's own terminal: closing its master side hangs it up (SIGHUP to the session,
    # and every later write to it fails), as when a terminal window is closed.
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [CLI, "verify", "fixed-proxy"], stdin=slave, stdout=slave, stderr=slave, cwd=PROJECT,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    with contextlib.suppress(OSError):  # EIO: the CLI ended (too early; asserted below)
        while b"[3/" not in shown and time.monotonic() < deadline:  # probes under way
            if select.select([master], [], [], 1)[0]:
                shown += os.read(master, 4096)
    os.close(master)
    assert proc.wait(timeout=60) == 128 + signal.SIGHUP, shown.decode()
    found = prefixes(shown.decode())
    assert len(found) == 1
    assert leftovers(found.pop()) == []


def test_a_signal_before_any_lab_says_none_was_torn_down() -> None:
    # A twin audit waiting for its password: no lab can boot before it has one.
    proc = subprocess.Popen([CLI, "audit", "ssh://root@192.0.2.1", "--password-prompt",
                             "--twin", "fixed-proxy"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PROJECT)
    deadline = time.monotonic() + 30
    caught = 0
    while not caught & (1 << (signal.SIGTERM - 1)) and time.monotonic() < deadline:
        time.sleep(0.01)  # until the CLI's handler is installed (SigCgt: caught signals)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err == "port25lab: interrupted by signal 15 while no lab was up\n"
    assert _run_folder_of(proc.pid) is None


def test_sigterm_during_a_shell_command_tears_everything_down() -> None:
    # Mininet's CLI waits on the node's shell; cut short, the node stays "waiting" and
    # Mininet's own stop asserts on it. The lab's teardown must not depend on it.
    proc = subprocess.Popen([CLI, "shell", "fixed-proxy"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PROJECT)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write("client1 sleep 30\n")
    proc.stdin.flush()
    seen = ""
    deadline = time.monotonic() + 60
    while " is up " not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    prefix = prefixes(seen).pop()
    client1 = os.stat(lifecycle.NETNS_ROOT / f"{prefix}-client1").st_ino
    while time.monotonic() < deadline and not any(  # until the command runs in client1
            p != os.getpid() and b"sleep\x0030" in _cmdline(p) for p in _pids_in(client1)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert rest.splitlines()[-1] == f"port25lab: interrupted by signal 15; lab torn down ({prefix})"
    assert leftovers(prefix) == []


def _pids_in(inode: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.stat(entry / "ns/net").st_ino == inode:
                pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
