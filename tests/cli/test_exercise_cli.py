"""`port25lab exercise` end to end: start, a check that fails on the starting rules and
explains, a check that passes on a correct solution, hints one at a time."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import CLI, PROJECT, leftovers, prefixes

pytestmark = pytest.mark.lab

SOLUTION = PROJECT / "exercises" / "01-dport" / "scenario" / "solution.sh"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL")}
    return subprocess.run([CLI, "exercise", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, check=False, env=env)


def test_exercise_1_fails_on_the_published_rules_and_passes_once_fixed(tmp_path: Path) -> None:
    started = _cli("start", "1", "--lang", "pt-BR", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    work = tmp_path / "port25lab-exercise-1"
    rules = work / "rules.sh"
    assert "Objetivo:" in started.stdout and str(rules) in started.stdout
    assert rules.read_text() == (PROJECT / "scenarios/seed-screened-block/rules.sh").read_text()

    wrong = _cli("check", "--lang", "pt-BR", cwd=work)
    assert wrong.returncode == 1, wrong.stderr
    assert "FAIL — exercício 1: ainda falha:" in wrong.stdout
    assert "rules.sh:14 não carregou: Bad argument `3544'" in wrong.stdout
    assert "PASS" not in wrong.stdout.splitlines()[-3:]

    rules.write_text(SOLUTION.read_text())
    right = _cli("check", "--lang", "pt-BR", cwd=work)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "== 01-dport [screened-host] PASS" in right.stdout
    assert "PASS — exercício 1: todas as expectativas valem." in right.stdout
    assert "load error" not in right.stdout
    for p in prefixes(wrong.stderr + right.stderr):
        assert leftovers(p) == []


def test_exercise_2_names_each_ipv6_row_that_still_fails(tmp_path: Path) -> None:
    assert _cli("start", "2", cwd=tmp_path).returncode == 0
    done = _cli("check", cwd=tmp_path / "port25lab-exercise-2")
    assert done.returncode == 1, done.stderr
    assert "FAIL — exercise 2: still failing:" in done.stdout  # LANG unset: English
    assert "client1 → remote-mx smtp over IPv6: should be blocked, is allowed" in done.stdout
    assert "over IPv4" not in done.stdout  # the IPv4 block holds


@pytest.mark.parametrize("name", ["01-dport", "02-ipv6", "03-teredo"])
def test_the_solution_each_exercise_folder_carries_passes(name: str) -> None:
    done = subprocess.run([CLI, "verify", "-q", f"exercises/{name}/scenario"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("1 of 1 scenarios pass")


def test_exercise_3_says_the_teredo_rows_still_pass_through(tmp_path: Path) -> None:
    assert _cli("start", "3", cwd=tmp_path).returncode == 0
    done = _cli("check", cwd=tmp_path / "port25lab-exercise-3")
    assert done.returncode == 1, done.stderr
    assert "client1 → remote-mx teredo:plain over IPv4: should be blocked, is allowed" \
        in done.stdout
    said = done.stdout.split("FAIL — exercise 3: still failing:")[1]  # after the matrix
    assert "did not load" not in said  # exercise 1's fix is in: every line loads
    assert "teredo:plain over" in said and "control-80" not in said  # the control row holds


def test_exercise_4_checks_the_builtin_divert_scenario_on_the_students_rules(
        tmp_path: Path) -> None:
    assert _cli("start", "4", cwd=tmp_path).returncode == 0
    work = tmp_path / "port25lab-exercise-4"
    wrong = _cli("check", cwd=work)
    assert wrong.returncode == 1, wrong.stderr
    assert "mx → remote-mx smtp over IPv4: should be allowed" in wrong.stdout
    assert "client1 → remote-mx smtps over IPv6: should be blocked, is allowed" in wrong.stdout
    (work / "rules.sh").write_text((PROJECT / "scenarios/fixed-proxy/rules.sh").read_text())
    right = _cli("check", cwd=work)
    assert right.returncode == 0, right.stdout
    assert "PASS — exercise 4: every expectation holds." in right.stdout


def test_exercise_5_puts_the_students_jail_in_the_trap(tmp_path: Path) -> None:
    assert _cli("start", "5", cwd=tmp_path).returncode == 0
    work = tmp_path / "port25lab-exercise-5"
    wrong = _cli("check", cwd=work)  # the stock ban: INPUT, 25/465 only
    assert wrong.returncode == 1, wrong.stderr
    assert "client2 → sink web over IPv4: should be banned, is allowed" in wrong.stdout
    (work / "jail.local").write_text((PROJECT / "scenarios/fixed-trap/jail.local").read_text())
    right = _cli("check", cwd=work)
    assert right.returncode == 0, right.stdout
    assert "PASS — exercise 5: every expectation holds." in right.stdout


def test_exercise_6_bans_the_guessers_only_with_a_strict_jail(tmp_path: Path) -> None:
    assert _cli("start", "6", "--lang", "en", cwd=tmp_path).returncode == 0
    work = tmp_path / "port25lab-exercise-6"
    wrong = _cli("check", cwd=work)  # maxretry = 20: the guesser finds the weak password
    assert wrong.returncode == 1, wrong.stderr
    assert "remote-mx → mx guessing over IPv4: should be banned, is allowed (the guesser " \
        "got in as " in wrong.stdout
    (work / "jail.local").write_text((PROJECT / "scenarios/guessing/jail.local").read_text())
    right = _cli("check", cwd=work)
    assert right.returncode == 0, right.stdout
    assert "PASS — exercise 6: every expectation holds." in right.stdout


def test_start_keeps_the_students_edits_and_hints_cycle(tmp_path: Path) -> None:
    assert _cli("start", "1", cwd=tmp_path).returncode == 0
    work = tmp_path / "port25lab-exercise-1"
    (work / "rules.sh").write_text("# mine\n")
    again = _cli("start", "1", "--lang", "en", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "kept your edits" in again.stdout
    assert (work / "rules.sh").read_text() == "# mine\n"
    shown = [_cli("hint", "--lang", "en", cwd=work).stdout.strip() for _ in range(4)]
    assert [s.split(":")[0] for s in shown] == ["hint 1 of 3", "hint 2 of 3", "hint 3 of 3",
                                              "hint 1 of 3"]
    assert shown[0] == shown[3] and len(set(shown)) == 3
    state = json.loads((work / ".port25lab-exercise.json").read_text())
    assert state["hints"] == 1  # the next one is the second again


def test_check_outside_a_work_folder_is_one_line(tmp_path: Path) -> None:
    done = _cli("check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not an exercise's work folder" in done.stderr
