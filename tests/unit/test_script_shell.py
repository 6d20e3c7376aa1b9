"""Scripts as admins write them: variables, loops, functions, `set -e`, other programs.

A script that is not plain netfilter commands is expanded by the real bash in a
sandbox (lab.netfilter.shell); these tests pin what comes out of it: the same
Commands the plain reader gives where both can read a script, each call at its
script line, notes for what the lab does not run, and one-line bad input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.netfilter import script, shell
from lab.netfilter.policy import LoadError, apply_policy, read_policy
from lab.netfilter.script import Command, expand_script, parse_script, read_script
from lab.userfiles import shown
from tests.unit.test_policy import FakeRouter

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
BUILTIN_SCRIPTS = sorted(SCENARIOS.glob("*/*.sh"))

# What an admin writes for the screened host (the lab's addressing: 203.0.113.0/24 is
# the LAN, the mail server .25): tests/lab/test_scripts.py verifies it in a lab.
ADMIN = """\
#!/bin/sh
# Outbound mail: only the mail server speaks SMTP to the world.
set -e

LAN_IF=eth0
LAN=203.0.113.0/24
LAN6=2001:db8:b01a:70da::/64
MX=203.0.113.25
MX6=2001:db8:b01a:70da::25
IPT=/sbin/iptables
PORTS="25 465"

modprobe nf_conntrack                       # not in the lab: a note
echo 1 > /proc/sys/net/ipv4/ip_forward      # neither

# the mail server may send
$IPT -A FORWARD -i $LAN_IF -p tcp -s ${MX} -m multiport --dports 25,465 -j ACCEPT
ip6tables -A FORWARD -i "$LAN_IF" -p tcp -s ${MX6} \\
    -m multiport --dports 25,465 -j ACCEPT

block() {   # tool, source, port
    "$1" -A FORWARD -i $LAN_IF -p tcp -s "$2" --dport "$3" -j DROP
}
for port in $PORTS; do
    block iptables-nft $LAN $port
    block ip6tables $LAN6 $port
done
"""
ADMIN_LINES = {"accept4": 17, "accept6": 18, "block": 22}


def _write(folder: Path, text: str, name: str = "rules.sh") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _bad(path: Path) -> str:
    with pytest.raises(BadInput) as exc:
        read_policy(path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# --- the admin's script --------------------------------------------------------------------

def test_an_admins_script_expands_to_its_netfilter_calls(tmp_path: Path) -> None:
    path = _write(tmp_path, ADMIN)
    policy = read_policy(path)
    file = shown(path)
    drop = ("-A", "FORWARD", "-i", "eth0", "-p", "tcp", "-s")
    assert policy.commands == (
        Command(file, ADMIN_LINES["accept4"],
                "$IPT -A FORWARD -i $LAN_IF -p tcp -s ${MX} -m multiport --dports 25,465 "
                "-j ACCEPT",
                ("/sbin/iptables", "-A", "FORWARD", "-i", "eth0", "-p", "tcp", "-s",
                 "203.0.113.25", "-m", "multiport", "--dports", "25,465", "-j", "ACCEPT"), 4),
        Command(file, ADMIN_LINES["accept6"],
                'ip6tables -A FORWARD -i "$LAN_IF" -p tcp -s ${MX6} -m multiport '
                "--dports 25,465 -j ACCEPT",
                ("ip6tables", "-A", "FORWARD", "-i", "eth0", "-p", "tcp", "-s",
                 "2001:db8:b01a:70da::25", "-m", "multiport", "--dports", "25,465", "-j",
                 "ACCEPT"), 6),
        *(Command(file, ADMIN_LINES["block"],
                  '"$1" -A FORWARD -i $LAN_IF -p tcp -s "$2" --dport "$3" -j DROP',
                  (tool, *drop, source, "--dport", port, "-j", "DROP"), family)
          for port in ("25", "465")
          for tool, source, family in (("iptables-nft", "203.0.113.0/24", 4),
                                       ("ip6tables", "2001:db8:b01a:70da::/64", 6))),
    )
    assert policy.notes == (
        f"{file}:13: 'modprobe' is not a netfilter command: not run in the lab",
        f"{file}:14: '/proc/sys/net/ipv4/ip_forward' is not in the lab (no such file or "
        "directory: nothing of the host is): not run, read or written",
    )
    # the notes reach the scenario's report with the LOG translations
    assert policy.only(4).notes == policy.notes


def test_a_failing_call_in_a_loop_is_reported_by_its_script_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "PORTS='25 nosuchport 465'\n"
                            "# one call per port\n"
                            "for p in $PORTS; do iptables -A FORWARD -p tcp --dport $p -j DROP; "
                            "done\n")
    router = FakeRouter({"nosuchport": (2, "iptables v1.8.9 (nf_tables): invalid port/service "
                                           "`nosuchport' specified\n")})
    errors = apply_policy(read_policy(path), router)
    assert errors == [LoadError(shown(path), 3, "iptables v1.8.9 (nf_tables): invalid "
                                                "port/service `nosuchport' specified")]
    assert [argv[-3] for argv, _ in router.calls] == ["25", "nosuchport", "465"]


# --- one reader or the other, chosen by content; both read alike --------------------------

@pytest.mark.parametrize("path", BUILTIN_SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_builtin_script_expands_to_what_the_plain_reader_gives(path: Path) -> None:
    text = path.read_text()
    expanded = expand_script(path, text)
    assert expanded.commands == tuple(parse_script(path, text))
    assert expanded.notes == ()
    assert expanded.commands  # the comparison compares something


@pytest.mark.parametrize("path", BUILTIN_SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plain_scripts_are_read_without_the_shell(path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_shell(*_: object) -> shell.Trace:
        raise AssertionError("the sandbox ran for a plain script")

    monkeypatch.setattr(shell, "expand", no_shell)
    assert read_script(path, path.read_text()).commands == tuple(
        parse_script(path, path.read_text()))


def test_a_script_of_netfilter_commands_only_is_read_word_for_word(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as it always was (tests/cli's planted-program test pins it): shell syntax on such
    # lines is words for iptables, which refuses them at load time
    def no_shell(*_: object) -> shell.Trace:
        raise AssertionError("the sandbox ran for a script of netfilter commands only")

    monkeypatch.setattr(shell, "expand", no_shell)
    path = _write(tmp_path, "iptables -A FORWARD -j DROP; iptables -A FORWARD -j ACCEPT\n"
                            "iptables -A FORWARD -m comment --comment $(id) -j DROP\n")
    assert [c.argv for c in read_policy(path).commands] == [
        ("iptables", "-A", "FORWARD", "-j", "DROP;", "iptables", "-A", "FORWARD", "-j",
         "ACCEPT"),
        ("iptables", "-A", "FORWARD", "-m", "comment", "--comment", "$(id)", "-j", "DROP")]


@pytest.mark.parametrize("line", [
    "IPT=/sbin/iptables", "set -e", "modprobe nf_conntrack", "f() { :; }", "for p in 25; do",
    "done", "if true; then", "fi", "echo 1 > /proc/sys/net/ipv4/ip_forward", "[ -x /sbin/x ]",
    "'iptables' -A FORWARD -j DROP",  # quoted: a shell word, not today's command
])
def test_a_script_with_any_other_line_goes_to_the_shell(tmp_path: Path, line: str) -> None:
    text = f"iptables -A FORWARD -j DROP\n{line}\n"
    called: list[str] = []

    def spy(source: str, *_: object) -> shell.Trace:
        called.append(source)
        return shell.Trace(calls=(shell.Call(1, ("iptables", "-A", "FORWARD", "-j", "DROP")),),
                           finished=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shell, "expand", spy)
        read_script(_write(tmp_path, text), text)
    assert called == [text]


def test_the_shell_reads_words_as_bash_does(tmp_path: Path) -> None:
    # where the plain reader (shlex) would read these otherwise
    path = _write(tmp_path, "set -e\n"
                            "iptables -A FORWARD -m comment --comment x#y -j DR\\\nOP\n"
                            "iptables -A FORWARD -p tcp --dport {25,465} -j DROP\n"
                            "iptables -A FORWARD -j DROP; iptables -A FORWARD -j ACCEPT\n")
    assert [c.argv for c in read_policy(path).commands] == [
        ("iptables", "-A", "FORWARD", "-m", "comment", "--comment", "x#y", "-j", "DROP"),
        ("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "465", "-j", "DROP"),
        ("iptables", "-A", "FORWARD", "-j", "DROP"), ("iptables", "-A", "FORWARD", "-j", "ACCEPT")]


# --- lines ----------------------------------------------------------------------------------

def test_each_call_is_at_its_first_line(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "IPT=iptables\n"                                   # 1
        "iptables \\\n"                                    # 2: bash says 3 (the 2nd word)
        "  -A FORWARD -j DROP\n"
        "$IPT \\\n"                                        # 4
        "  \\\n"
        "  -A FORWARD -j DROP\n"
        "iptables -A FORWARD \\\n"                         # 7
        "  -j DROP\n"
        "iptables -A FORWARD -j DROP; \\\n"                # 9
        "iptables -A FORWARD -j ACCEPT\n"                  # 10: a command of its own
        "# a comment \\\n"                                 # 11: a comment does not go on
        "iptables -A FORWARD -j REJECT\n"                  # 12
        "f() {\n"
        "    ip6tables \\\n"                               # 14: inside a function
        "      -A FORWARD -j DROP\n"
        "}\n"
        "f; f\n"
        "for i in 1 2; do\n"
        "  if true; then\n"
        "    iptables -A FORWARD -j DROP\n"               # 20: inside a loop
        "  fi\n"
        "done\n"
        "command iptables -A FORWARD \\\n"                 # 23: by the stand-in file
        "  -j DROP\n"))
    assert [c.line for c in read_policy(path).commands] == [2, 4, 7, 9, 10, 12, 14, 14, 20,
                                                           20, 23]


def test_a_tool_by_any_path_the_script_spells_is_the_labs(tmp_path: Path) -> None:
    # as in a plain script, only the name counts
    path = _write(tmp_path, "IPT=/usr/local/sbin/iptables\n$IPT -A FORWARD -j DROP\n"
                            "./ip6tables-nft -A FORWARD -j DROP\n")
    assert [(c.argv[0], c.family) for c in read_policy(path).commands] == [
        ("/usr/local/sbin/iptables", 4), ("./ip6tables-nft", 6)]


def test_a_tool_by_a_path_the_script_makes_up(tmp_path: Path) -> None:
    path = _write(tmp_path, "SBIN=/usr/local/sbin\n$SBIN/iptables -A FORWARD -j DROP\n")
    assert _bad(path) == (f"{path}:2: calls iptables by a path where the lab does not have it: "
                          "call it by name or from /sbin, /usr/sbin, /bin, /usr/bin")


def test_exec_and_command_reach_the_stand_ins(tmp_path: Path) -> None:
    path = _write(tmp_path, "set -e\ncommand ip6tables -A FORWARD -j DROP\n"
                            "exec /sbin/iptables-legacy -A FORWARD -j DROP\n"
                            "iptables -A FORWARD -j ACCEPT\n")  # exec ended the script
    assert [(c.line, c.argv[0], c.family) for c in read_policy(path).commands] == [
        (2, "/usr/sbin/ip6tables", 6), (3, "/sbin/iptables-legacy", 4)]


# --- what the expansion assumes ------------------------------------------------------------

def test_a_check_is_answered_no_and_the_rule_is_added(tmp_path: Path) -> None:
    path = _write(tmp_path, "R='FORWARD -p tcp --dport 25 -j DROP'\n"
                            "iptables -C $R 2>/dev/null || iptables -A $R\n"
                            "if iptables -A FORWARD -j LOG; then\n"
                            "  iptables -A FORWARD -j ACCEPT\n"
                            "fi\n")
    policy = read_policy(path)
    assert [c.argv[1] for c in policy.commands] == ["-A", "-A", "-A"]
    assert policy.notes == (f"{shown(path)}:2: iptables -C is answered 'no such rule' (the lab "
                            "reads a script before any rule is loaded): not loaded",)


def test_set_e_does_not_stop_at_what_the_lab_lacks(tmp_path: Path) -> None:
    path = _write(tmp_path, "set -e\nsysctl -w net.ipv4.ip_forward=1\n"
                            "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding\n"
                            "cd /etc/firewall\n"
                            "iptables -A FORWARD -j DROP\n")
    policy = read_policy(path)
    assert [c.line for c in policy.commands] == [5]
    assert [n.split(": ", 1)[0] for n in policy.notes] == [f"{shown(path)}:{n}"
                                                           for n in (2, 3, 4)]


def test_a_script_is_run_with_start(tmp_path: Path) -> None:
    path = _write(tmp_path, 'case "$1" in\n'
                            "  start) iptables -A FORWARD -j DROP ;;\n"
                            "  stop) iptables -F ;;\n"
                            '  *) echo "usage: $0 start|stop"; exit 1 ;;\n'
                            "esac\n")
    assert [c.argv for c in read_policy(path).commands] == [
        ("iptables", "-A", "FORWARD", "-j", "DROP")]


def test_notes_are_bounded(tmp_path: Path) -> None:
    path = _write(tmp_path, "".join(f"tool{n} --help\n" for n in range(1, 15))
                  + "iptables -A FORWARD -j DROP\n" + "tool1 --again\n")
    notes = read_policy(path).notes
    assert len(notes) == script.MAX_NOTES + 1
    assert notes[0] == f"{shown(path)}:1: 'tool1' is not a netfilter command: not run in the lab"
    assert notes[-1] == f"{shown(path)}: 5 more lines are not run in the lab"


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "message"), [
    ("iptables -A FORWARD -j DROP\n[ \"$(id -u)\" = 0 ] || exit 1\n", 2,
     "exits with status 1 here in the lab, where no program but iptables and ip6tables runs: "
     "make the script not depend on others"),
    ("set -u\niptables -A FORWARD -j DROP\niptables -A FORWARD -s $LAN -j DROP\n", 3,
     "uses LAN, which is not set (set -u)"),
    ("iptables -A FORWARD -j DROP\nif true; then\n  iptables -A FORWARD -j ACCEPT\nfi fi\n", 4,
     "cannot parse the script here: a shell syntax error (`bash -n` names it)"),
    ("iptables -A FORWARD -j DROP\n$IPTABLES -A FORWARD -j DROP\n", 2,
     "the command starts with an option, not a program: is a variable that names the program "
     "empty?"),
    ("if [ \"$1\" = stop ]; then\n  iptables -F\nfi\n", 1,
     "calls no iptables/ip6tables command when the lab runs it (with the argument `start`): "
     "not a policy script"),
    ("echo 'iptables -A FORWARD -j DROP' >&99\niptables -A FORWARD -j DROP\n", 0, ""),
])
def test_bad_scripts_are_one_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    if not line:
        assert _bad(path) == (f"{path}: writes to file descriptor 99, on which the lab records "
                              "the script's calls: use another descriptor")
        return
    assert _bad(path) == f"{path}:{line}: {message}"


def test_an_endless_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "TIME_LIMIT", 1.0)  # the real one is 5 s: the CLI test has it
    path = _write(tmp_path, "iptables -A FORWARD -j DROP\nwhile true; do :; done\n")
    assert _bad(path) == (f"{path}: still running after 1 s when the lab expands it "
                          "(an endless loop?): a policy script must end")


@pytest.mark.parametrize(("text", "what"), [
    ("while :; do echo 'all work and no play'; done\n", "prints more than 1 MiB"),
    ("printf -v c '%010000d' 0\nwhile :; do iptables -A FORWARD -m comment --comment $c; done\n",
     "calls iptables with more than 16 MiB"),
])
def test_a_flood(tmp_path: Path, text: str, what: str) -> None:
    path = _write(tmp_path, text)
    assert _bad(path) == (f"{path}: {what} when the lab expands it (a loop that does not "
                          "end?): not a policy script")


def test_the_notes_reach_the_scenario_once(tmp_path: Path) -> None:
    from lab.model import scenario

    path = _write(tmp_path, ADMIN)
    policy = read_policy(path)
    both = scenario.load("fixed-screened-block").with_rules(4, policy).with_rules(6, policy)
    _, notes = both.with_nflog()
    assert [n for n in notes if "modprobe" in n] == [
        f"{shown(path)}:13: 'modprobe' is not a netfilter command: not run in the lab"]
