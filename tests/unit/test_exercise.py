"""Exercises are folders of data: the built-in ones load; a bad folder is one line."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.exercises import verdict_lines
from lab.model import exercise
from lab.model.results import Result, ScenarioResult
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError

ROOT = Path(__file__).resolve().parents[2]
ONE = ROOT / "exercises" / "01-dport"


def test_the_builtin_exercises_follow_the_talk_in_both_languages() -> None:
    found = exercise.builtin()
    assert [e.number for e in found] == [1, 2, 3, 4, 5, 6]
    assert [e.name for e in found] == ["01-dport", "02-ipv6", "03-teredo", "04-divert",
                                       "05-trap", "06-passwords"]
    for e in found:
        assert set(e.title) == set(e.goal) == {"en", "pt-BR"}
        assert e.hints and all(set(h) == {"en", "pt-BR"} for h in e.hints)
        assert e.rules.is_file() and (ROOT / "exercises" / e.name / "README.md").is_file()
        assert (ROOT / "exercises" / e.name / "README.pt-BR.md").is_file()
    assert "-dport 3544" in found[0].rules.read_text()  # the published line, as published
    assert "ip6tables" not in found[1].rules.read_text()  # IPv6 forgotten
    assert exercise.find("01") == exercise.find("1") == found[0]
    assert found[3].scenario == "fixed-proxy"  # a built-in scenario, by name
    assert found[3].rules.read_text() == (ROOT / "scenarios/seed-proxy/rules.sh").read_text()
    assert (found[4].trap, found[4].scenario) == ("gw", "fixed-trap")  # a jail to edit
    assert found[4].rules.read_text() == (ROOT / "scenarios/seed-trap/jail.local").read_text()
    assert all(not e.trap for e in found[:4])
    assert (found[5].trap, found[5].scenario) == ("mx", "guessing")


@pytest.mark.parametrize(("value", "lang"), [
    ("pt_BR.UTF-8", "pt-BR"), ("pt_PT", "pt-BR"), ("en_US.UTF-8", "en"), ("C", "en"), ("", "en")])
def test_the_default_language_comes_from_lang(value: str, lang: str) -> None:
    assert exercise.language({"LANG": value}) == lang
    assert exercise.language({}) == "en"


def _copy(tmp_path: Path, name: str = "07-mine") -> Path:
    folder = tmp_path / name
    shutil.copytree(ONE, folder)
    return folder


def _bad(folder: Path) -> str:
    with pytest.raises(BadInput) as caught:
        exercise.load(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_teachers_folder_loads_as_a_built_in_one(tmp_path: Path) -> None:
    e = exercise.find(str(_copy(tmp_path)))
    assert (e.number, e.name) == (7, "07-mine")
    assert e.scenario == str(tmp_path / "07-mine" / "scenario")


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t.replace("rules: rules.sh", "rules: nothere.sh"),
     "exercise.yaml:16: rules: nothere.sh is not a file of the exercise folder"),
    (lambda t: t.replace("rules: rules.sh", "rules: ../rules.sh"),
     "rules: the name of the starting rules file"),
    (lambda t: t.replace("scenario: scenario", "scenario: nowhere"),
     "scenario: 'nowhere' is neither a folder of the exercise nor a built-in scenario"),
    (lambda t: t + "extra: 1\n", "unknown key 'extra'"),
    (lambda t: t.replace("hints:", "tips:"), "unknown key 'tips'"),
    (lambda t: t.replace('  pt-BR: "As regras', '  fr: "As regras'),
     "title: give the text in both languages, en and pt-BR"),
    (lambda t: t.split("hints:")[0] + "hints: []\n", "hints: a list of at least one hint"),
    (lambda t: "- a list\n", "an exercise is a mapping"),
    (lambda t: t + "goal: again\n", "goal"),
    (lambda t: t + "trap: gw\n", "trap: 'gw' is not a node with a trap in the scenario (it has: "
                                  "none)"),
])
def test_a_bad_exercise_file_is_one_line(tmp_path: Path, edit: object, said: str) -> None:
    folder = _copy(tmp_path)
    spec = folder / "exercise.yaml"
    spec.write_text(edit(spec.read_text()))  # type: ignore[operator]
    message = _bad(folder)
    assert said in message and str(spec) in message


def test_a_bad_scenario_inside_is_one_line_naming_both(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "scenario" / "scenario.yaml").write_text("topology: nowhere\nexpect: []\n")
    message = _bad(folder)
    assert "exercise.yaml" in message and "scenario.yaml" in message


@pytest.mark.parametrize("name", ["mine", "1_dport", "01-Dport"])
def test_an_exercise_folder_is_named_with_its_number(tmp_path: Path, name: str) -> None:
    assert "NN-name" in _bad(_copy(tmp_path, name))


def test_an_unknown_number_or_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such exercise"):
        exercise.find("42")
    with pytest.raises(BadInput, match="not an exercise folder"):
        exercise.find(str(tmp_path))


def _row(expected: Verdict, observed: Verdict, family: int = 6) -> Result:
    return Result("client1", "remote-mx", "smtp", family, expected, observed, None, "", 1.0)


def test_check_says_what_still_fails_in_plain_words() -> None:
    e = exercise.find("1")
    failing = ScenarioResult(
        "01-dport", "screened-host",
        load_errors=(LoadError("/tmp/w/rules.sh", 14, "Bad argument `3544'"),),
        results=(_row(Verdict.BLOCKED, Verdict.ALLOWED), _row(Verdict.BLOCKED, Verdict.BLOCKED)))
    assert verdict_lines(failing, e, "pt-BR")[1:] == [
        "FAIL — exercício 1: ainda falha:",
        "  rules.sh:14 não carregou: Bad argument `3544'",
        "  client1 → remote-mx smtp em IPv6: deveria estar bloqueado, está liberado",
        "Travou? `port25lab exercise hint`"]
    assert "  client1 → remote-mx smtp over IPv6: should be blocked, is allowed" in \
        verdict_lines(failing, e, "en")
    guessed = dataclasses.replace(_row(Verdict.BANNED, Verdict.ALLOWED), weak_account="carol")
    assert verdict_lines(ScenarioResult("g", "screened-host", results=(guessed,)), e,
                         "pt-BR")[2].endswith(", está liberado (quem tentava adivinhar entrou "
                                               "como carol)")
    passing = ScenarioResult("01-dport", "screened-host",
                             results=(_row(Verdict.BLOCKED, Verdict.BLOCKED),))
    assert verdict_lines(passing, e, "en")[-1].startswith("PASS — exercise 1")


def test_start_and_hint_keep_their_state_in_the_work_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab import exercises

    assert exercises.cmd_start("2", "pt-BR", tmp_path) == 0
    work = tmp_path / "port25lab-exercise-2"
    assert "Objetivo:" in capsys.readouterr().out
    for expected in ("dica 1 de 3", "dica 2 de 3", "dica 3 de 3", "dica 1 de 3"):
        exercises.cmd_hint("pt-BR", work)
        assert capsys.readouterr().out.startswith(expected)
    # another exercise's folder by that name, or a broken state: one line, nothing changed
    (tmp_path / "port25lab-exercise-1").mkdir()
    (tmp_path / "port25lab-exercise-1" / exercises.STATE).write_text(
        (work / exercises.STATE).read_text())
    with pytest.raises(BadInput, match="the work folder of another exercise"):
        exercises.cmd_start("1", "en", tmp_path)
    assert not (tmp_path / "port25lab-exercise-1" / "rules.sh").exists()
    (work / exercises.STATE).write_text("{not json")
    with pytest.raises(BadInput, match="unreadable") as caught:
        exercises.cmd_hint("en", work)
    assert "\n" not in str(caught.value)
