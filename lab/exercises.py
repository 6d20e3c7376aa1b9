"""`port25lab exercise list|start N|check|hint`: the guided exercises (lab.model.exercise).

`start N` makes a work folder `./port25lab-exercise-N/` with the starting rules and a
small state file; `check` and `hint` are run inside it. `check` runs the exercise's
scenario in a real lab with the student's rules as the policy router's whole policy
(as `verify --rules` does) and says, row by row, what still fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from lab.errors import BadInput
from lab.model import exercise as model
from lab.model.exercise import Exercise
from lab.model.results import ScenarioResult

STATE = ".port25lab-exercise.json"

# the verdicts in plain words (the matrix keeps the report's own words)
_VERDICT = {
    "en": {"allowed": "allowed", "blocked": "blocked", "diverted": "diverted",
           "refused": "refused by the server", "banned": "banned",
           "error": "undecided (the lab could not tell)"},
    "pt-BR": {"allowed": "liberado", "blocked": "bloqueado", "diverted": "desviado",
              "refused": "recusado pelo servidor", "banned": "banido",
              "error": "indecidido (o laboratório não conseguiu dizer)"},
}
_SAY = {
    "en": {
        "exercise": "Exercise", "goal": "Goal", "edit": "Edit the rules in",
        "then": "Then, in that folder: `port25lab exercise check` (a hint: "
                "`port25lab exercise hint`)",
        "kept": "kept your edits: {file} is already there (delete it to start over)",
        "pass": "PASS — exercise {n}: every expectation holds. Well done.",
        "fail": "FAIL — exercise {n}: still failing:",
        "unloaded": "  {where} did not load: {message}",
        "row": "  {source} → {target} {probe} over IPv{family}: should be {want}, is {got}",
        "lab": "  the lab could not run: {error}",
        "more": "Stuck? `port25lab exercise hint`",
        "hint": "hint {i} of {n}: {text}",
        "weak": " (the guesser got in as {account})",
    },
    "pt-BR": {
        "exercise": "Exercício", "goal": "Objetivo", "edit": "Edite as regras em",
        "then": "Depois, nessa pasta: `port25lab exercise check` (uma dica: "
                "`port25lab exercise hint`)",
        "kept": "suas edições foram mantidas: {file} já existe (apague-o para recomeçar)",
        "pass": "PASS — exercício {n}: todas as expectativas valem. Muito bem.",
        "fail": "FAIL — exercício {n}: ainda falha:",
        "unloaded": "  {where} não carregou: {message}",
        "row": "  {source} → {target} {probe} em IPv{family}: deveria estar {want}, "
               "está {got}",
        "lab": "  o laboratório não pôde rodar: {error}",
        "more": "Travou? `port25lab exercise hint`",
        "hint": "dica {i} de {n}: {text}",
        "weak": " (quem tentava adivinhar entrou como {account})",
    },
}


def work_folder(e: Exercise, base: Path) -> Path:
    return base / f"port25lab-exercise-{e.number}"


def cmd_list(lang: str) -> int:
    for e in model.builtin():
        print(f"{e.number:>2}  {e.text('title', lang)}")
    return 0


def cmd_start(which: str, lang: str, base: Path) -> int:
    e = model.find(which)
    say = _SAY[lang]
    work = work_folder(e, base)
    rules = work / e.rules.name
    state = _read_state(work) if (work / STATE).exists() else None
    if state is not None and Path(state["exercise"]).resolve() != e.folder.resolve():
        raise BadInput(f"{work}: the work folder of another exercise ({state['exercise']}): "
                       "move it away or start this one elsewhere")
    if work.exists() and not work.is_dir():
        raise BadInput(f"{work}: exists and is not a folder (move it away)")
    work.mkdir(exist_ok=True)
    kept = rules.exists()
    if not kept:
        shutil.copyfile(e.rules, rules)
    if state is None:
        _write_state(work, {"exercise": str(e.folder.resolve()), "hints": 0})
    print(f"{say['exercise']} {e.number} — {e.text('title', lang)}\n")
    print(f"{say['goal']}: {e.text('goal', lang)}\n")
    if kept:
        print(say["kept"].format(file=rules))
    print(f"{say['edit']} {rules}")
    print(say["then"])
    return 0


def cmd_hint(lang: str, work: Path) -> int:
    state = _read_state(work)
    e = model.load(Path(state["exercise"]))
    shown = state["hints"] % len(e.hints)  # after the last, the first again
    print(_SAY[lang]["hint"].format(i=shown + 1, n=len(e.hints),
                                    text=e.hints[shown][lang]))
    _write_state(work, {**state, "hints": shown + 1})
    return 0


def cmd_check(lang: str, work: Path, color: str) -> int:
    from lab import report
    from lab.model import scenario
    from lab.netfilter.policy import read_policy
    from lab.terminal import Progress, printer

    state = _read_state(work)
    e = model.load(Path(state["exercise"]))
    rules = work / e.rules.name
    if not rules.is_file():
        raise BadInput(f"{rules}: the rules you edit are gone (run `port25lab exercise start "
                       f"{e.number}` again in the folder above to get the starting ones)")
    s = scenario.load(e.scenario)
    if e.trap:  # the student's jail in place of the scenario's on that node
        s = dataclasses.replace(s, traps={**s.traps, e.trap: (rules,)})
    else:  # the student's rules as the policy router's whole policy, as verify --rules
        s = s.with_policy((read_policy(rules),))
    s = dataclasses.replace(s, name=e.name)
    _require_root()
    from lab.engine.verify import verify
    from lab.runtime import lifecycle

    with Progress(False) as progress, lifecycle.opened() as run:
        result = verify(s, run, progress)
        progress.clear()
    printer(color)(report.styled(result, s))
    for line in verdict_lines(result, e, lang):
        print(line)
    return 0 if result.passed else 1


def verdict_lines(result: ScenarioResult, e: Exercise, lang: str) -> list[str]:
    """PASS, or what still fails in plain words: each line that did not load, each row."""
    say, words = _SAY[lang], _VERDICT[lang]
    if result.passed:
        return ["", say["pass"].format(n=e.number)]
    lines = ["", say["fail"].format(n=e.number)]
    if result.lab_error:
        lines.append(say["lab"].format(error=result.lab_error))
    for error in result.load_errors:
        where = f"{Path(error.file).name}:{error.line}" if error.line else Path(error.file).name
        lines.append(say["unloaded"].format(where=where, message=error.message))
    for r in result.results:
        if r.failed:
            probe = f"{r.probe}:{r.variant}" if r.variant else r.probe
            lines.append(say["row"].format(
                source=r.source, target=r.target, probe=probe, family=r.family,
                want=words.get(r.expected, r.expected), got=words.get(r.observed, r.observed))
                + (say["weak"].format(account=r.weak_account) if r.weak_account else ""))
    lines.append(say["more"])
    return lines


def _require_root() -> None:
    if os.geteuid() != 0:
        raise BadInput("exercise check boots a lab of network namespaces: run it as root")


def _read_state(work: Path) -> dict[str, Any]:
    path = work / STATE
    hint = ("run `port25lab exercise start N` and, in the folder it makes, "
            "`port25lab exercise check` or `hint`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{work}: not an exercise's work folder (no {STATE}): {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: unreadable ({exc}): {hint}") from None
    if not (isinstance(data, dict) and isinstance(data.get("exercise"), str)
            and isinstance(data.get("hints"), int)):
        raise BadInput(f"{path}: not an exercise's state: {hint}")
    return data


def _write_state(work: Path, state: dict[str, object]) -> None:
    (work / STATE).write_text(json.dumps(state) + "\n", encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    """The `exercise` command's dispatch (args from lab.cli's parser)."""
    lang = args.lang or model.language()
    action = args.action
    if action == "list":
        return cmd_list(lang)
    if action == "start":
        return cmd_start(args.number, lang, Path.cwd())
    if action == "hint":
        return cmd_hint(lang, Path.cwd())
    if action == "check":
        return cmd_check(lang, Path.cwd(), args.color)
    raise BadInput("exercise: give list, start N, check or hint "
                   "(see `port25lab exercise --help`)")
