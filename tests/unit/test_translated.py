"""The translated scenarios' rulesets are what iptables-restore-translate makes of their saves.

seed-translated and fixed-screened-block-translated carry the output of
`iptables-restore-translate` and `ip6tables-restore-translate` (their READMEs
give the commands); this runs the translation again, so that the committed
ruleset cannot drift from what the tools make. (That the saves are what the
scripts load: tests/lab/test_translated.py.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.model import scenario

# scenario → the scenario whose rules.sh it translates
TRANSLATED = {"seed-translated": "seed-screened-block",
              "fixed-screened-block-translated": "fixed-screened-block"}
TOOLS = (("iptables-restore-translate", "rules.v4.save"),
         ("ip6tables-restore-translate", "rules.v6.save"))
DATED = ("# Translated by", "# Completed on")  # the two lines that carry the date


def translate(folder: Path) -> str:
    """What the README's commands write to ruleset.nft, from the folder's saves."""
    out: list[str] = []
    for tool, save in TOOLS:
        done = subprocess.run([tool, "-f", str(folder / save)], capture_output=True,
                              text=True, timeout=30, check=True)
        assert done.stderr == ""  # the translation says nothing of what it drops
        out += [ln for ln in done.stdout.splitlines(keepends=True) if not ln.startswith(DATED)]
    return "".join(out)


@pytest.mark.parametrize("name", sorted(TRANSLATED))
def test_the_committed_ruleset_is_the_translation_of_the_committed_saves(name: str) -> None:
    folder = scenario.BUILTIN / name
    assert (folder / "ruleset.nft").read_text() == translate(folder)


@pytest.mark.parametrize("name", sorted(TRANSLATED))
def test_the_readme_gives_the_commands_for_its_own_files(name: str) -> None:
    readme = (scenario.BUILTIN / name / "README.md").read_text()
    assert f"sh scenarios/{TRANSLATED[name]}/rules.sh;" in readme
    for tool, save in TOOLS:
        assert f"{tool} -f scenarios/{name}/{save}" in readme
    assert f"> scenarios/{name}/ruleset.nft" in readme


def test_the_published_teredo_line_leaves_no_trace() -> None:
    ruleset = (scenario.BUILTIN / "seed-translated" / "ruleset.nft").read_text()
    assert "u32" not in ruleset and "udp" not in ruleset and "3544" not in ruleset
    assert "#" not in ruleset  # not even a comment: the line never loaded
    assert ruleset.count("tcp dport { 25, 465 } counter drop") == 2


def test_every_u32_rule_of_the_corrected_rules_becomes_a_comment() -> None:
    ruleset = (scenario.BUILTIN / "fixed-screened-block-translated" / "ruleset.nft").read_text()
    comments = [ln for ln in ruleset.splitlines() if ln.startswith("#")]
    assert len(comments) == 5 and all("-m u32 --u32" in c for c in comments)
    assert [c.split(" -p ")[1].split()[0] for c in comments] == ["udp"] * 4 + ["ipv6"]
    assert "u32" not in "".join(ln for ln in ruleset.splitlines() if not ln.startswith("#"))
    assert 'add rule ip filter FORWARD iifname "eth0" ct state invalid counter drop' in ruleset
