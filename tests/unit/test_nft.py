"""nft rulesets as policies: detection, includes, the rule scanner, the tags, nft's own check.

The check runs the real nft (`nft -c`) in a throwaway network namespace; nothing
here touches a router.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.netfilter import nft, origin
from lab.netfilter.policy import LoadError, Runner, apply_policy, override, read_policy
from lab.netfilter.script import BOTH, read_script
from lab.userfiles import shown

RULESET = """\
#!/usr/sbin/nft -f
define mx = 192.0.2.10
flush ruleset
table inet filter {
  set blocked { type ipv4_addr; elements = { 192.0.2.66,
     192.0.2.67 } }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "ens18" ip saddr 192.0.2.0/24 tcp dport { 25,
       465 } drop
    ip daddr $mx tcp dport 25 accept comment "the mail server"   # ours
    tcp dport 587 \\
      counter accept; tcp dport 80 accept
    ip saddr @blocked drop
  }
}
add rule inet filter forward tcp dport 2525 drop
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_ruleset_is_told_from_a_script_and_a_save_file(tmp_path: Path) -> None:
    policy = read_policy(write(tmp_path, "gw.nft", RULESET))
    assert policy.kind == "nft" and policy.families == {4, 6} and not policy.empty
    for text in ("table ip filter {\n}\n", "add table ip6 t\n", "# rules\nflush ruleset\n"):
        assert read_policy(write(tmp_path, "x.nft", text)).kind == "nft"
    assert read_policy(write(tmp_path, "x.sh", "iptables -A FORWARD -j DROP\n")).kind == "script"
    # a shell script that starts with a command of the same name as an nft one
    assert read_policy(write(tmp_path, "y.sh", "reset\niptables -A FORWARD -j DROP\n")
                       ).kind == "script"


@pytest.mark.parametrize(("text", "families"), [
    ("table ip t {\n}\n", {4}), ("table ip6 t {\n}\n", {6}), ("add table t\n", {4}),
    ("table inet t {\n}\n", {4, 6}), ("table ip a {\n}\ntable ip6 b {\n}\n", {4, 6}),
    ("flush ruleset\ntable ip t {\n}\n", {4}), ("define x = 1\n", set()),
])
def test_families_of_a_ruleset(text: str, families: set[int]) -> None:
    assert nft.families(text) == families


def test_the_scanner_finds_each_rule_its_line_and_its_own_comment() -> None:
    found = nft.rules(RULESET)
    assert [(r.line, r.commented) for r in found] == [
        (9, False), (11, True), (12, False), (13, False), (14, False), (17, False)]
    # each ends where its last word does (a set over two lines, a `\\` continuation)
    assert [RULESET[:r.end].rsplit("\n", 1)[-1].strip() for r in found] == [
        "465 } drop", 'ip daddr $mx tcp dport 25 accept comment "the mail server"',
        "counter accept", "counter accept; tcp dport 80 accept", "ip saddr @blocked drop",
        "add rule inet filter forward tcp dport 2525 drop"]


def test_set_map_and_flowtable_bodies_and_chain_headers_are_not_rules() -> None:
    text = ("table inet t {\n  map m { type inet_service : verdict; elements = { 25 : drop } }\n"
            "  flowtable f { hook ingress priority 0; devices = { lo } }\n"
            "  chain c { type filter hook forward priority 0; policy drop;\n"
            '    comment "a chain"\n    tcp dport vmap @m\n  }\n}\n'
            "add element inet t m { 465 : drop }\ndelete rule inet t c handle 3\n")
    assert [r.line for r in nft.rules(text)] == [6]


def test_tags_name_the_file_and_line_and_a_rules_own_comment_stays(tmp_path: Path) -> None:
    ruleset = nft.read(write(tmp_path, "gw.nft", RULESET))
    tagged = nft.tagged(ruleset)
    file = shown(tmp_path / "gw.nft")
    assert f'465 }} drop comment "{origin.tag(file, 9)}";' in tagged
    assert f'counter accept comment "{origin.tag(file, 12)}";; tcp dport 80' in tagged
    assert tagged.count("comment") == RULESET.count("comment") + 5
    assert tagged.count("\n") == ruleset.text.count("\n")  # the lines stay where nft names them
    assert nft.source(origin.tag(file, 9)) == f"{file}:9"
    assert nft.source("the mail server") == ""


def test_a_tag_fits_an_nft_comment() -> None:
    said = origin.tag("/" + "long-folder/" * 30 + "gw.nft", 12, nft.COMMENT_LIMIT)
    assert len(said.encode()) <= nft.COMMENT_LIMIT and said.endswith("gw.nft:12")


def test_includes_beside_the_policy_are_inlined_with_their_lines(tmp_path: Path) -> None:
    write(tmp_path, "sets.nft", 'include "deep/ports.nft"\ntable inet filter {\n'
                                "  set ports { type inet_service; elements = $ports }\n}\n")
    write(tmp_path, "deep/ports.nft", "define ports = { 25, 465 }\n")
    main = write(tmp_path, "gw.nft", 'flush ruleset\ninclude "./sets.nft"\n'
                                     "table inet filter {\n  chain forward {\n"
                                     "    tcp dport @ports drop\n  }\n}\n")
    policy = read_policy(main)
    assert policy.ruleset is not None
    ruleset = policy.ruleset
    assert "include" not in ruleset.text
    line = next(n for n, t in enumerate(ruleset.text.split("\n"), 1) if "define ports" in t)
    assert ruleset.where(line) == (shown(tmp_path / "deep/ports.nft"), 1)
    rule = nft.rules(ruleset.text)[0]
    assert ruleset.where(rule.line) == (shown(main), 5)


@pytest.mark.parametrize(("name", "why"), [
    ("/etc/nftables.conf", "beside the policy"), ("../x.nft", "beside the policy"),
    ("sub/../../x.nft", "beside the policy"), ("*.nft", "a glob is not followed"),
    ("missing.nft", "no such file beside the policy"), ("", "names no file"),
])
def test_an_include_the_lab_does_not_read_is_one_line(tmp_path: Path, name: str,
                                                      why: str) -> None:
    main = write(tmp_path / "p", "gw.nft", f'table ip t {{\n}}\ninclude "{name}"\n')
    write(tmp_path, "x.nft", "table ip x {\n}\n")
    with pytest.raises(BadInput) as failed:
        read_policy(main)
    said = str(failed.value)
    assert said.startswith(f'{main}:3: include "{name}"'.replace(str(main), shown(main)))
    assert why in said and "\n" not in said


def test_a_host_include_is_refused_without_being_opened(tmp_path: Path) -> None:
    planted = tmp_path / "fifo"
    os.mkfifo(planted)  # opening it would block the test: it is never opened
    main = write(tmp_path / "p", "gw.nft", f'include "{planted}"\n')
    with pytest.raises(BadInput, match="not read, the lab reads only files beside"):
        read_policy(main)


def test_a_link_out_of_the_folder_and_a_cycle_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "outside.nft", "table ip x {\n}\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p/link.nft").symlink_to(tmp_path / "outside.nft")
    with pytest.raises(BadInput, match="a link out of the policy's folder"):
        read_policy(write(tmp_path / "p", "gw.nft", 'include "link.nft"\n'))
    write(tmp_path / "p", "a.nft", 'include "b.nft"\n')
    write(tmp_path / "p", "b.nft", 'table ip t {\n}\ninclude "a.nft"\n')
    with pytest.raises(BadInput, match=r"b\.nft:3: include \"a\.nft\": includes itself"):
        read_policy(tmp_path / "p/a.nft")


def test_a_syntax_error_names_the_included_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "rules.nft", "table inet filter {\n  chain forward {\n"
                                 "    tcp dport 25 bogus\n  }\n}\n")
    main = write(tmp_path, "gw.nft", 'define x = 1\nflush ruleset\ninclude "rules.nft"\n')
    with pytest.raises(BadInput) as failed:
        read_policy(main)
    assert str(failed.value) == (f"{shown(tmp_path / 'rules.nft')}:3: syntax error, "
                                 "unexpected newline")


def test_an_unknown_table_family_is_a_syntax_error_on_its_line(tmp_path: Path) -> None:
    main = write(tmp_path, "gw.nft", "flush ruleset\n\ntable ipx filter {\n}\n")
    with pytest.raises(BadInput, match=r"gw\.nft:3: syntax error"):
        read_policy(main)


def test_a_table_the_router_may_have_is_left_to_the_load(tmp_path: Path) -> None:
    # iptables makes `ip filter` on the router; a fresh namespace lacks it
    main = write(tmp_path, "gw.nft", "add rule ip filter FORWARD tcp dport 25 drop\n")
    assert read_policy(main).kind == "nft"


def runner(answers: list[tuple[int, str]]) -> tuple[list[tuple[list[str], str | None]],
                                                    Runner]:
    calls: list[tuple[list[str], str | None]] = []

    def run(argv: list[str], stdin: str | None) -> tuple[int, str]:
        calls.append((argv, stdin))
        return answers.pop(0) if answers else (0, "")
    return calls, run


def test_loading_is_one_nft_f_tagged_and_as_written_when_tagged_fails(tmp_path: Path) -> None:
    policy = read_policy(write(tmp_path, "gw.nft", RULESET))
    assert policy.ruleset is not None
    calls, run = runner([])
    assert apply_policy(policy, run, tag_sources=True) == []
    assert [c[0][1:] for c in calls] == [["-f", "-"]]
    assert calls[0][1] == nft.tagged(policy.ruleset)
    calls, run = runner([(1, "/dev/stdin:9:1-2: Error: comment too long"), (0, "")])
    assert apply_policy(policy, run, tag_sources=True) == []
    assert calls[1][1] == policy.ruleset.text


def test_a_load_error_names_the_line_and_says_nothing_loaded(tmp_path: Path) -> None:
    write(tmp_path, "rules.nft", "table ip filter {\n  chain x {\n    jump nowhere\n  }\n}\n")
    policy = read_policy(write(tmp_path, "gw.nft", 'include "rules.nft"\n'))
    assert policy.ruleset is not None
    at = policy.ruleset.text.split("\n").index("    jump nowhere") + 1
    error = f"/dev/stdin:{at}:5-16: Error: Could not process rule: No such file or directory\n"
    _, run = runner([(1, error), (1, error)])
    assert apply_policy(policy, run, tag_sources=True) == [
        LoadError(shown(tmp_path / "rules.nft"), 3, "Could not process rule: No such file or "
                  f"directory (nft -f loads a file whole: nothing of {shown(policy.path)} "
                  "loaded)")]


def test_a_replay_leaves_out_the_rules_nft_refuses_and_loads_the_rest(tmp_path: Path) -> None:
    policy = read_policy(write(tmp_path, "gw.nft", RULESET))
    policy = replace(policy, replay=True)
    calls, run = runner([(1, "/dev/stdin:14:5-9: Error: Could not process rule: No such file"
                             " or directory")])
    errors = apply_policy(policy, run)
    assert errors == [LoadError(shown(policy.path), 14, "Could not process rule: No such file "
                                "or directory (left out of the replay)")]
    assert "@blocked" not in (calls[-1][1] or "") and "tcp dport 2525" in (calls[-1][1] or "")


def test_only_keeps_a_ruleset_whole_for_either_of_its_families(tmp_path: Path) -> None:
    both = read_policy(write(tmp_path, "gw.nft", RULESET))
    assert both.only(4) == both and both.only(6) == both
    v4 = read_policy(write(tmp_path, "v4.nft", "table ip t {\n}\n"))
    assert v4.only(6).empty and v4.only(4) == v4


def test_rules_v4_with_an_inet_ruleset_is_one_line_naming_rules(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="give the file with --rules FILE"):
        override(write(tmp_path, "gw.nft", RULESET), 4, None)
    own, notes = override(write(tmp_path, "v4.nft", "table ip t {\n}\n"), 4, None)
    assert own.kind == "nft" and notes == []


def test_a_script_calling_nft_loads_its_calls_and_files_in_order(tmp_path: Path) -> None:
    write(tmp_path, "rules.nft", "table inet filter {\n  chain forward {\n"
                                 "    type filter hook forward priority 0;\n"
                                 "    tcp dport 465 drop\n  }\n}\n")
    script = write(tmp_path, "gw.sh", "#!/bin/sh\nnft -f rules.nft\n"
                                      "nft add rule inet filter forward tcp dport 25 drop\n"
                                      "iptables -A FORWARD -p tcp --dport 465 -j DROP\n"
                                      "ip6tables -A FORWARD -p tcp --dport 465 -j DROP\n")
    policy = read_policy(script)
    assert [(c.line, c.family, c.ruleset is not None) for c in policy.commands] == [
        (2, BOTH, True), (3, BOTH, False), (4, 4, False), (5, 6, False)]
    assert policy.families == {4, 6}
    calls, run = runner([])
    assert apply_policy(policy, run, tag_sources=True) == []
    assert calls[0][0][1:] == ["-f", "-"] and "comment \"p25:" in (calls[0][1] or "")
    assert calls[1][0][1:] == ["add", "rule", "inet", "filter", "forward", "tcp", "dport", "25",
                               "drop", "comment", f'"{origin.tag(shown(script), 3)}"']
    assert calls[2][0][-1] == "DROP" and calls[3][0][-1] == "DROP"


def test_a_script_expanded_by_the_shell_calls_nft_too(tmp_path: Path) -> None:
    write(tmp_path, "rules.nft", "table ip t {\n}\n")
    text = ('RULES=rules.nft\nfor p in 25 465; do\n  nft add rule ip t c tcp dport "$p" drop\n'
            'done\nnft -f "$RULES"\n')
    read = read_script(write(tmp_path, "gw.sh", text), text)
    assert [(c.line, c.argv[-1], c.family) for c in read.commands] == [
        (3, "drop", 4), (3, "drop", 4), (5, "rules.nft", 4)]


@pytest.mark.parametrize(("line", "why"), [
    ("nft -f /etc/nftables.conf", "not read, the lab reads only files beside"),
    ("nft -f ../x.nft", "not read, the lab reads only files beside"),
    ("nft -f -", "standard input is not read"),
    ("nft -I /etc -f x.nft", "nft -I: an option the lab does not run"),
])
def test_an_nft_call_the_lab_does_not_read_is_one_line(tmp_path: Path, line: str,
                                                       why: str) -> None:
    write(tmp_path, "x.nft", "table ip t {\n}\n")
    script = write(tmp_path / "p", "gw.sh", f"iptables -P FORWARD DROP\n{line}\n")
    with pytest.raises(BadInput, match=why) as failed:
        read_policy(script)
    assert str(failed.value).startswith(f"{script}:2: ")


@pytest.mark.parametrize("text", [
    'table ip t {\n}\n$include "/etc/shadow"\n', 'define x = a,include "/etc/shadow"\n',
    'table ip t {\n}\n5include "/etc/shadow"\n',
])
def test_an_include_hidden_in_a_word_is_refused_before_nft_sees_it(tmp_path: Path,
                                                                   text: str) -> None:
    with pytest.raises(BadInput, match=r"gw\.nft:\d: `include` inside a word"):
        read_policy(write(tmp_path, "gw.nft", text))
    # a word that only contains the letters is no include, nor is a string
    assert read_policy(write(tmp_path, "ok.nft", 'table ip includes {\n  comment "include x"\n'
                                                 "}\n")).kind == "nft"


def test_an_include_in_a_scripts_nft_command_is_refused(tmp_path: Path) -> None:
    script = write(tmp_path, "gw.sh", "nft 'include \"/etc/shadow\"'\n")
    with pytest.raises(BadInput, match=r"gw\.sh:1: an include in an nft command is not run"):
        read_policy(script)


def test_a_scenarios_inet_ruleset_is_not_split_by_a_rules_option(tmp_path: Path) -> None:
    from lab.model import scenario

    folder = tmp_path / "nft-scenario"
    folder.mkdir()
    write(folder, "gw.nft", RULESET)
    write(folder, "scenario.yaml", "topology: screened-host\npolicy:\n  gw: [gw.nft]\nexpect:\n"
          "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], "
          "verdict: blocked}\n")
    loaded = scenario.load(str(folder))
    assert [p.kind for p in loaded.policies["gw"]] == ["nft"]
    v6 = read_policy(write(tmp_path, "v6.sh", "ip6tables -A FORWARD -j DROP\n"))
    with pytest.raises(BadInput, match="an nft ruleset for both families: replace it whole "
                                       "with --rules FILE, not --rules-v6"):
        loaded.with_rules(6, v6)


def test_log_statements_go_to_the_routers_ulogd_and_keep_their_lines(tmp_path: Path) -> None:
    from lab.netfilter.nflog import GROUP, as_nflog

    text = ("table inet t {\n  chain c {\n    type filter hook forward priority 0;\n"
            '    tcp dport 25 log prefix "SMTP " level warn flags tcp sequence,options drop\n'
            "    tcp dport 465 log \\\n      level info drop\n"
            "    tcp dport 587 log group 7 drop\n"
            "  }\n}\n")
    policy = read_policy(write(tmp_path, "gw.nft", text))
    translated, notes = as_nflog(policy)
    assert translated.ruleset is not None
    lines = translated.ruleset.text.split("\n")
    assert lines[3].split() == ["tcp", "dport", "25", "log", "group", str(GROUP), "prefix",
                                '"SMTP', '"', "drop"]
    assert lines[4].split() == ["tcp", "dport", "465", "log", "group", str(GROUP), "\\"]
    assert lines[5].split() == ["drop"]
    assert lines[6].split()[-3:] == ["group", "7", "drop"]  # its own group stays
    assert notes == [f"{shown(policy.path)}:4: log run as log group {GROUP} (log is silent in "
                     "a namespace)", f"{shown(policy.path)}:5: log run as log group "
                     f"{GROUP} (log is silent in a namespace)"]
    nft.check(translated.ruleset)  # nft takes it


def test_a_script_calling_nft_by_its_own_path_runs_the_labs_nft(tmp_path: Path) -> None:
    text = 'NFT=/usr/local/sbin/nft\n"$NFT" add rule ip t c tcp dport 25 drop\n'
    read = read_script(write(tmp_path, "gw.sh", text), text)
    assert [(c.line, c.argv[0]) for c in read.commands] == [(2, "/usr/local/sbin/nft")]


def test_a_scripts_nft_log_rule_goes_to_the_routers_ulogd(tmp_path: Path) -> None:
    from lab.netfilter.nflog import GROUP, as_nflog

    script = write(tmp_path, "gw.sh", "nft add rule inet t c tcp dport 25 log prefix "
                                      "'\"SMTP \"' level warn drop\nnft add rule inet t c drop\n")
    translated, notes = as_nflog(read_policy(script))
    first, second = translated.commands
    assert first.argv == ("nft", f'add rule inet t c tcp dport 25 log group {GROUP} prefix '
                                 '"SMTP "  drop')
    assert second.argv == ("nft", "add", "rule", "inet", "t", "c", "drop")
    assert notes == [f"{shown(script)}:1: log run as log group {GROUP} (log is silent in a "
                     "namespace)"]


def test_a_ruleset_for_one_family_must_not_flush_the_others_rules(tmp_path: Path) -> None:
    v4 = write(tmp_path, "v4.nft", "flush ruleset\ntable ip t {\n}\n")
    with pytest.raises(BadInput) as failed:
        override(v4, 4, None)
    assert str(failed.value) == (f"{shown(v4)}:1: `flush ruleset` also removes the IPv6 rules "
                                 "that load with --rules-v4: write `flush ruleset ip`, or give "
                                 "the whole policy with --rules FILE")
    own, _ = override(write(tmp_path, "ok.nft", "flush ruleset ip\ntable ip t {\n}\n"), 4, None)
    assert own.kind == "nft"
    script = write(tmp_path, "v6.sh", "nft flush ruleset\nip6tables -P FORWARD DROP\n")
    with pytest.raises(BadInput, match=r"v6\.sh:1: `nft flush ruleset` also removes the IPv4"):
        override(script, 6, None)
