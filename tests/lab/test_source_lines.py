"""A blocked verdict cites the policy file and line of its deciding rule, on the real kernel.

The lab tags each rule it loads with its line (lab.netfilter.origin); these tests
check, against the kernel and its iptables (nf_tables backend here), that the tag
survives, that the text read back is the kernel's own rendering without it, and
that verdicts name the user's lines.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import report
from lab.model import scenario
from lab.model.verdict import Verdict
from lab.netfilter import save
from lab.netfilter.policy import PolicyFile, apply_policy, read_policy
from lab.netfilter.rules import Rule
from lab.userfiles import shown
from tests.lab.test_evidence import _scenario, _verify  # a scenario folder, run
from tests.support import leftovers

pytestmark = pytest.mark.lab

# Rules the built-in scenarios lack: the rule's own comments (quoted, with quotes inside),
# -I with and without a number, -R, -D and -C by the rule's words (spelt as loaded or
# otherwise), a user chain.
EXTRA = """\
iptables -N mine
iptables -A FORWARD -i eth0 -p tcp --dport 25 -m comment --comment "no direct SMTP" -j DROP
iptables -A FORWARD -m comment --comment "say \\"hi\\", it's" -p udp --dport 53 -j mine
iptables -I FORWARD -s 203.0.113.9 -j REJECT
iptables -I FORWARD 2 -s 203.0.113.8 -j REJECT
iptables -R FORWARD 1 -s 203.0.113.7 -j REJECT
iptables -A mine -p tcp --dport 2525 -j DROP
iptables -C mine -p tcp --dport 2525 -j DROP
iptables -D mine -p tcp --dport 2525 -j DROP
iptables -A mine -p tcp -m multiport --dports 2525,2526 -j DROP
ip6tables -A FORWARD -p tcp --dport 25 -m comment --comment "v6 too" -j DROP
iptables -A mine -p tcp --dport 2527 -j DROP
iptables -A mine -j RETURN
iptables -A mine -p tcp --dport 2527 -j DROP
iptables -D mine -p tcp -m tcp --destination-port 2527 -j DROP
"""


class Scratch:
    """An empty network namespace of the test's own, to load policies into."""

    def __init__(self) -> None:
        self.name = f"p25-{secrets.token_hex(3)}-src"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def run(self, argv: list[str], stdin: str | None) -> tuple[int, str]:
        done = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)
        return done.returncode, done.stderr

    def rules(self, family: int) -> list[Rule]:
        tool = "iptables-save" if family == 4 else "ip6tables-save"
        out = subprocess.run(["ip", "netns", "exec", self.name, tool, "-c"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return list(save.read(out, family, "gw").rules)

    def raw(self, family: int) -> str:
        tool = "iptables-save" if family == 4 else "ip6tables-save"
        return subprocess.run(["ip", "netns", "exec", self.name, tool], capture_output=True,
                              text=True, timeout=60, check=True).stdout

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=True)


@pytest.fixture
def scratch() -> Iterator[Callable[[], Scratch]]:
    """Makes empty namespaces; removes them all at the end."""
    made: list[Scratch] = []

    def new() -> Scratch:
        made.append(Scratch())
        return made[-1]
    try:
        yield new
    finally:
        for one in made:
            one.delete()
        for one in made:
            assert leftovers(one.name) == []


def _policies(tmp_path: Path) -> list[PolicyFile]:
    """Every built-in scenario's policy files as verify loads them (LOG run as NFLOG)."""
    extra = tmp_path / "extra rules.sh"  # a space in its name, too
    extra.write_text(EXTRA)
    found: dict[Path, PolicyFile] = {}
    for name in scenario.builtin_names():
        loaded, _ = scenario.load(name).with_nflog()
        for files in loaded.policies.values():
            found.update((p.path, p) for p in files)
    return [*found.values(), read_policy(extra)]


def test_tagged_rules_read_back_as_the_kernel_prints_them_untagged(
        tmp_path: Path, scratch: Callable[[], Scratch]) -> None:
    policies = _policies(tmp_path)
    assert len(policies) >= 10  # every built-in scenario's, and the extra rules
    for policy in policies:
        plain, tagged = scratch(), scratch()
        errors = apply_policy(policy, plain.run)
        assert apply_policy(policy, tagged.run, tag_sources=True) == errors, policy.path
        file = shown(policy.path)
        lines = {c.line for c in policy.commands}
        for family in (4, 6):
            as_written, read_back = plain.rules(family), tagged.rules(family)
            # the same rules, the same texts, in the same places: only the source is new
            assert [(r.table, r.chain, r.position, r.text) for r in read_back] == [
                (r.table, r.chain, r.position, r.text) for r in as_written], policy.path
            assert all(r.source == "" for r in as_written)
            for rule in read_back:
                source_file, _, line = rule.source.rpartition(":")
                assert source_file == file, rule
                assert int(line) in lines if policy.kind == "script" else int(line) > 0
            assert "p25:" not in " ".join(r.text for r in read_back)
            assert ("p25:" in tagged.raw(family)) == bool(read_back)  # in the kernel itself


def test_the_kernel_keeps_the_rules_own_comment_beside_the_tag(
        tmp_path: Path, scratch: Callable[[], Scratch]) -> None:
    script = tmp_path / "extra.sh"
    script.write_text(EXTRA)
    kernel = scratch()
    assert apply_policy(read_policy(script), kernel.run, tag_sources=True) == []
    file = shown(script)
    by_source = {r.source: r for r in kernel.rules(4)}
    smtp = by_source[f"{file}:2"]
    assert smtp.text == ('-i eth0 -p tcp -m tcp --dport 25 -m comment --comment '
                         '"no direct SMTP" -j DROP')
    assert by_source[f"{file}:3"].words[:5] == ("-p", "udp", "-m", "comment", "--comment")
    assert by_source[f"{file}:3"].words[5] == 'say "hi", it\\\'s'  # as iptables-save escapes
    # -I 1, -I 2 and -R 1: each rule where its command put it, cited by that command's line
    assert [(r.position, r.source) for r in kernel.rules(4) if r.target == "REJECT"] == [
        (1, f"{file}:6"), (2, f"{file}:5")]
    # -C and -D found the tagged rule by its words: no error, and the rule is gone
    # ... and, spelt otherwise, the first of two such rules in the chain, as iptables does
    assert [r.source for r in kernel.rules(4) if r.chain == "mine"] == [
        f"{file}:10", f"{file}:13", f"{file}:14"]
    (v6,) = kernel.rules(6)
    assert v6.source == f"{file}:11" and '--comment "v6 too"' in v6.text
    # the user's file is untouched
    assert script.read_text() == EXTRA


def test_a_long_file_name_keeps_its_end_and_line_in_the_kernel(
        tmp_path: Path, scratch: Callable[[], Scratch]) -> None:
    folder = tmp_path.joinpath(*["a-folder-of-the-admins"] * 14)  # over 300 characters
    folder.mkdir(parents=True)
    script = folder / "rules.sh"
    script.write_text("iptables -A FORWARD -p tcp --dport 25 -j DROP\n")
    assert len(shown(script)) > 300
    kernel = scratch()
    assert apply_policy(read_policy(script), kernel.run, tag_sources=True) == []
    (rule,) = kernel.rules(4)
    # iptables would cut a comment over 255 bytes silently: the tag fits, the line is whole
    file, _, line = rule.source.rpartition(":")
    assert line == "1" and file.startswith("…") and shown(script).endswith(file[1:])
    assert file.endswith("a-folder-of-the-admins/rules.sh") and len(file) > 200
    assert rule.text == "-p tcp -m tcp --dport 25 -j DROP"


def test_a_save_file_restored_tagged_cites_its_own_lines(
        tmp_path: Path, scratch: Callable[[], Scratch]) -> None:
    plain, tagged = scratch(), scratch()
    script = tmp_path / "extra.sh"
    script.write_text(EXTRA)
    assert apply_policy(read_policy(script).only(4), plain.run) == []
    saved = plain.raw(4)
    mine = tmp_path / "my.rules"
    mine.write_text(saved)
    assert apply_policy(read_policy(mine, 4), tagged.run, tag_sources=True) == []
    lines = saved.splitlines()
    read_back = tagged.rules(4)
    assert [r.text for r in read_back] == [r.text for r in plain.rules(4)]
    for rule in read_back:
        file, _, line = rule.source.rpartition(":")
        assert file == shown(mine)
        # the line it names is that rule's line in the file she gave
        assert lines[int(line) - 1] == f"-A {rule.chain} {rule.text}"
    assert mine.read_text() == saved


ADMINS_SCRIPT = """\
# gw: outbound mail, as the admin wrote it
#
# the mail server may send
iptables -I FORWARD 1 -i eth0 -s 203.0.113.25 -p tcp \\
    -m multiport --dports 25,465 -j ACCEPT

# a rule tried and taken back
iptables -A FORWARD -i eth0 -p tcp --dport 2525 -j DROP
iptables -D FORWARD -i eth0 -p tcp --dport 2525 -j DROP

# client1's SMTP goes to the sink first (a DNAT), and FORWARD drops it there
iptables -t nat -A PREROUTING -i eth0 -s 203.0.113.10 -p tcp --dport 25 \\
    -j DNAT --to-destination 198.51.100.80:25
iptables -A FORWARD -i eth0 -d 198.51.100.80 -p tcp --dport 25 -j DROP

# everyone else's SMTP is dropped here, with the admin's own comment
iptables -A FORWARD -i eth0 -p tcp --dport 25 -m comment --comment "no direct SMTP" -j DROP
# submission over TLS: first a REJECT, then replaced by a DROP
iptables -A FORWARD -i eth0 -p tcp --dport 465 -j REJECT
iptables -R FORWARD 4 -i eth0 -p tcp --dport 465 -j DROP
ip6tables -A FORWARD -i eth0 -p tcp --dport 25 -j DROP
"""


def test_a_blocked_row_cites_the_line_of_the_users_script(tmp_path: Path) -> None:
    folder = _scenario(tmp_path / "mine", "screened-host", "gw", ADMINS_SCRIPT, (
        "  - {from: client2, to: remote-mx, probes: [smtp], families: [4, 6], "
        "verdict: blocked}\n"
        "  - {from: client1, to: remote-mx, probes: [smtp, smtps], families: [4], "
        "verdict: blocked}\n"
        "  - {from: mx, to: remote-mx, probes: [smtp], families: [4], verdict: allowed}\n"))
    assert ADMINS_SCRIPT.splitlines()[16].startswith("iptables -A FORWARD -i eth0 -p tcp --dport "
                                                     "25 -m comment")  # line 17
    result = _verify(folder)
    assert result.load_errors == ()  # the -D found its tagged rule
    assert result.passed, [r.detail for r in result.results]
    file = shown(folder / "rules.sh")
    by = {(r.source, r.probe, r.family): r for r in result.results}
    smtp = by["client2", "smtp", 4]
    assert smtp.rule_source == f"{file}:17"
    # the kernel's rendering stays as it was, the rule's own comment in it, no tag
    assert smtp.rule == ('gw: iptables -t filter FORWARD#3: -A FORWARD -i eth0 -p tcp -m tcp '
                         '--dport 25 -m comment --comment "no direct SMTP" -j DROP')
    assert by["client2", "smtp", 6].rule_source == f"{file}:21"
    assert by["client1", "smtps", 4].rule_source == f"{file}:20"  # -R's line, not -A's
    # a DNAT then a drop: the drop decides, and both lines are named
    rewritten = by["client1", "smtp", 4]
    assert rewritten.observed == Verdict.BLOCKED and rewritten.rule_source == f"{file}:14"
    assert ("rewritten to 198.51.100.80:25 by gw: iptables -t nat PREROUTING#1: -A PREROUTING "
            "-s 203.0.113.10/32 -i eth0 -p tcp -m tcp --dport 25 -j DNAT --to-destination "
            f"198.51.100.80:25 (from {file}:12), then dropped" in rewritten.detail), (
        rewritten.detail)
    assert by["mx", "smtp", 4].rule is None and by["mx", "smtp", 4].rule_source == ""
    # the reports: the terminal names the line under the rule, JSON beside it
    text = report.matrix(result).splitlines()
    at = text.index(f"     [1] {smtp.rule}")
    assert text[at + 1] == f"         from {file}:17"
    (data,) = report.as_json([result])["scenarios"]
    row = next(r for r in data["results"] if (r["source"], r["probe"], r["family"]) == (
        "client1", "smtp", 4))
    assert row["rule_source"] == f"{file}:14"
    assert sorted((h["target"], h["source"]) for h in row["evidence"]["rule_hits"]
                  if h["target"] in ("DNAT", "DROP")) == [("DNAT", f"{file}:12"),
                                                          ("DROP", f"{file}:14")]
