"""What the documentation promises: the English and Portuguese user guides match section by
section and command by command, the commands they show exist with the options they show,
the Layout names real folders, and every scenario has its Portuguese README."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lab import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_PT = ROOT / "README.pt-BR.md"
SCENARIOS = sorted(p.parent for p in (ROOT / "scenarios").glob("*/scenario.yaml"))
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"^(?:\.venv/bin/)?(?:port25lab|make|pytest)\b")


def _sections(text: str) -> list[str]:
    outside = FENCE.sub("", text)  # a `# comment` in a code block is no heading
    return re.findall(r"^## .*$", outside, re.M)


def _commands(text: str) -> list[str]:
    """The command lines of the code blocks, continuations joined, in order."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if COMMAND.match(line.strip()):
                found.append(" ".join(line.split()))
    return found


def _code_spans(text: str) -> set[str]:
    return {" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCE.sub("", text))}


def test_both_guides_exist_and_link_to_each_other_at_the_top() -> None:
    head_en = README.read_text(encoding="utf-8").splitlines()[:5]
    head_pt = README_PT.read_text(encoding="utf-8").splitlines()[:5]
    assert any("(README.pt-BR.md)" in line for line in head_en)
    assert any("(README.md)" in line for line in head_pt)


def test_the_portuguese_guide_has_the_english_sections() -> None:
    en = _sections(README.read_text(encoding="utf-8"))
    pt = _sections(README_PT.read_text(encoding="utf-8"))
    assert len(en) == len(pt), (en, pt)
    assert en[0] == "## Quick start" and pt[0] == "## Início rápido"


def test_the_portuguese_guide_shows_the_same_commands_and_code() -> None:
    en = README.read_text(encoding="utf-8")
    pt = README_PT.read_text(encoding="utf-8")
    assert _commands(en) == _commands(pt)
    assert len(FENCE.findall(en)) == len(FENCE.findall(pt))
    # file names, options, rule text and CLI messages stay verbatim
    assert _code_spans(en) - _code_spans(pt) == set()


def test_the_portuguese_guide_says_cli_messages_stay_english() -> None:
    assert "mensagens da linha de comando" in README_PT.read_text(encoding="utf-8")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_every_port25lab_command_shown_exists_with_its_options() -> None:
    parser = cli._parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = 0
    for text in (README.read_text(encoding="utf-8"), README_PT.read_text(encoding="utf-8")):
        for block in FENCE.findall(text):
            current: argparse.ArgumentParser | None = None
            for line in block.replace("\\\n", " ").splitlines():
                words = line.split()
                if words and re.fullmatch(r"(?:\.venv/bin/)?port25lab", words[0]):
                    if words[1].startswith("-"):
                        current = parser
                    else:
                        assert words[1] in subs.choices, line
                        current = subs.choices[words[1]]
                    rest = words[2:]
                    nested = [a for a in current._actions
                              if isinstance(a, argparse._SubParsersAction)]
                    # `port25lab exercise start …`: the options of the action named
                    if nested and current is not parser:
                        assert rest and rest[0] in nested[0].choices, line
                        current, rest = nested[0].choices[rest[0]], rest[1:]
                    options = re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", " ".join(rest))
                elif current is not None and line[:1].isspace() and words[:1] != [] \
                        and words[0].startswith("-"):
                    options = re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", line)
                else:
                    continue
                shown += 1
                for option in options:
                    assert option in _options(current), f"{option} in: {line}"
    assert shown > 20  # the guide's commands were found at all


def test_the_make_targets_shown_exist() -> None:
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    for text in (README.read_text(encoding="utf-8"), README_PT.read_text(encoding="utf-8")):
        for target in re.findall(r"`make (\w+)`|^make (\w+)", text, re.M):
            assert (target[0] or target[1]) in targets


def test_the_layout_names_real_paths() -> None:
    text = README.read_text(encoding="utf-8")
    layout = FENCE.findall(text.split("## Layout", 1)[1])[0]
    for line in layout.splitlines():
        for path in re.findall(r"^(\S+/|\S+\.py)\s", line) + re.findall(r"\s(lab/\S+\.py)\s", line):
            assert (ROOT / path).exists(), path
    named = set(re.findall(r"^(\w+)/\s", layout, re.M))
    assert {"docs", "examples", "scenarios", "tests", "bench", "probes", "topologies"} <= named
    for folder in (ROOT / "lab").iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            assert f"lab/{folder.name}/" in layout


def test_the_implementation_notes_have_their_own_page() -> None:
    notes = (ROOT / "docs" / "implementation.md").read_text(encoding="utf-8")
    for fact in ("nf_log_all_netns", "bridge-nf-call-iptables", "duplicate address detection",
                 "in_flow_delay", "AF_PACKET", "iptables-save -c"):
        assert fact in notes
        assert fact not in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("folder", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_scenario_has_a_faithful_portuguese_readme(folder: Path) -> None:
    en = (folder / "README.md").read_text(encoding="utf-8")
    pt = (folder / "README.pt-BR.md").read_text(encoding="utf-8")
    assert FENCE.findall(en) == FENCE.findall(pt)  # rule lines verbatim
    quoted = re.compile(r"^    \S.*$", re.M)  # an indented block: a log line, a u32 expression
    assert quoted.findall(en) == quoted.findall(pt)
    assert _code_spans(en) - _code_spans(pt) == set()
    assert "(README.md)" in pt.splitlines()[2]


def test_there_are_twenty_two_scenarios() -> None:
    assert len(SCENARIOS) == 22
