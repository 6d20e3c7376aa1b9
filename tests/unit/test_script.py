"""The script dialect: commands, their lines and families, and the lab's own tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.netfilter.script import PROGRAMS, Command, netfilter_tool, parse_script

SCRIPT = """\
#!/bin/sh
# a published script
iptables -A FORWARD -p tcp \\
    --dport 25 -j DROP   # the second line continues the first

/sbin/ip6tables -A FORWARD -m comment --comment "no mail" -j DROP
"""


def test_commands_keep_the_line_they_start_on_and_their_family(tmp_path: Path) -> None:
    path = tmp_path / "rules.sh"
    commands = list(parse_script(path, SCRIPT))
    assert commands == [
        Command(str(path), 3, "iptables -A FORWARD -p tcp --dport 25 -j DROP   # the second "
                "line continues the first",
                ("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP"), 4),
        Command(str(path), 6, '/sbin/ip6tables -A FORWARD -m comment --comment "no mail" -j DROP',
                ("/sbin/ip6tables", "-A", "FORWARD", "-m", "comment", "--comment", "no mail",
                 "-j", "DROP"), 6)]


def test_the_file_is_named_as_reports_show_it(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (command,) = parse_script(tmp_path / "rules.sh", "iptables -P FORWARD DROP\n")
    assert command.file == "rules.sh"


@pytest.mark.parametrize(("text", "line"), [
    ("echo hi\n", 1),
    ("iptables -A FORWARD -j DROP\n'sh' -c id\n", 2),  # quoting hides the program
    ('iptables -A FORWARD -j "LOG\n', 1),
])
def test_anything_else_is_refused_by_its_line(text: str, line: int) -> None:
    with pytest.raises(BadInput) as caught:
        list(parse_script(Path("rules.sh"), text))
    assert str(caught.value).startswith(f"rules.sh:{line}: ")
    assert "hi" not in str(caught.value) and " id" not in str(caught.value)


def test_the_programs_are_the_families_tools_under_every_backend() -> None:
    assert PROGRAMS == {"iptables": 4, "iptables-legacy": 4, "iptables-nft": 4,
                        "ip6tables": 6, "ip6tables-legacy": 6, "ip6tables-nft": 6}


def test_a_line_names_a_tool_by_name_only() -> None:
    assert netfilter_tool("/tmp/planted/iptables") == netfilter_tool("iptables")
    assert netfilter_tool("iptables-restore") is None and netfilter_tool("sh") is None
