"""Guided exercises: folders of data, like scenarios.

An exercise is a folder `NN-name/` with `exercise.yaml`:

    title: {en: ..., pt-BR: ...}
    goal: {en: ..., pt-BR: ...}
    scenario: scenario      # a scenario folder inside the exercise, or a built-in name
    rules: rules.sh         # the starting rules the student edits (a file of the folder)
    trap: gw                # optional: the file is a fail2ban jail for this node's trap,
                            # not the policy router's rules
    hints:                  # shown one at a time
      - {en: ..., pt-BR: ...}

The scenario's expectations are what `check` runs, with the policy router's rules
replaced by the student's file (as `verify --rules` does). A teacher adds an exercise by
adding a folder; no Python. Every mistake in one is a one-line `BadInput`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lab.errors import BadInput
from lab.model import scenario, yamlfile
from lab.userfiles import shown

BUILTIN = Path(str(resources.files("exercises")))
SPEC = "exercise.yaml"
LANGS = ("en", "pt-BR")
_KEYS = {"title", "goal", "scenario", "rules", "hints"}
_OPTIONAL = {"trap"}
_FOLDER = re.compile(r"^(\d{1,3})-[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Exercise:
    number: int
    name: str  # the folder's name, `NN-name`
    folder: Path
    title: dict[str, str]  # language → text
    goal: dict[str, str]
    scenario: str  # a folder path or a built-in scenario name, as scenario.load takes it
    rules: Path  # the starting rules
    hints: tuple[dict[str, str], ...]
    trap: str = ""  # the node whose trap (jail) the student edits; "": the policy's rules

    def text(self, key: str, lang: str) -> str:
        value: dict[str, str] = getattr(self, key)
        return value[lang]


def language(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """The default language: pt-BR where LANG says Portuguese (pt*), else English."""
    value = (os.environ if env is None else env).get("LANG", "")
    return "pt-BR" if value.lower().startswith("pt") else "en"


def builtin() -> list[Exercise]:
    """Every built-in exercise, by number."""
    folders = sorted(p.parent for p in BUILTIN.glob(f"*/{SPEC}"))
    return sorted((load(f) for f in folders), key=lambda e: e.number)


def find(number_or_path: str) -> Exercise:
    """A built-in exercise by its number (`1`, `01`) or an exercise folder's path."""
    if number_or_path.isdigit():
        wanted = int(number_or_path)
        for e in builtin():
            if e.number == wanted:
                return e
        known = ", ".join(str(e.number) for e in builtin())
        raise BadInput(f"exercise {number_or_path}: no such exercise (there are {known}; "
                       "see `port25lab exercise list`)")
    path = Path(number_or_path)
    if not (path / SPEC).is_file():
        raise BadInput(f"exercise {shown(path)}: not an exercise folder (no {SPEC}; give a "
                       "number from `port25lab exercise list` or a folder with one)")
    return load(path)


def load(folder: Path) -> Exercise:
    """The exercise in `folder`, checked whole (its scenario too)."""
    spec = folder / SPEC
    match = _FOLDER.match(folder.resolve().name)
    if match is None:
        raise BadInput(f"{shown(folder)}: an exercise folder is named NN-name (a number, a "
                       "dash, lower-case words: 01-dport)")
    data = yamlfile.load(spec, "exercise file")

    def fail(key: str | None, message: str) -> BadInput:
        line = yamlfile.line_of(data, key) if key is not None else None
        return BadInput(f"{shown(spec)}{f':{line}' if line else ''}: {message}")

    if not isinstance(data, dict):
        raise fail(None, f"an exercise is a mapping of {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(data) - _KEYS - _OPTIONAL, key=str)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r} (known: "
                               f"{', '.join(sorted(_KEYS | _OPTIONAL))})")
    missing = sorted(_KEYS - set(data))
    if missing:
        raise fail(None, f"missing key {missing[0]!r} (an exercise needs "
                         f"{', '.join(sorted(_KEYS))})")

    def texts(value: Any, key: str, where: Any, at: Any) -> dict[str, str]:
        if not isinstance(value, dict) or set(value) != set(LANGS) or not all(
                isinstance(v, str) and v.strip() for v in value.values()):
            line = yamlfile.line_of(where, at)
            raise BadInput(f"{shown(spec)}{f':{line}' if line else ''}: {key}: give the text "
                           f"in both languages, {' and '.join(LANGS)} (non-empty strings)")
        return {lang: " ".join(value[lang].split()) for lang in LANGS}

    hints = data["hints"]
    if not isinstance(hints, list) or not hints:
        raise fail("hints", "hints: a list of at least one hint, each in en and pt-BR")
    rules = data["rules"]
    if not isinstance(rules, str) or "/" in rules or rules in ("", ".", ".."):
        raise fail("rules", "rules: the name of the starting rules file, in the exercise folder")
    if not (folder / rules).is_file():
        raise fail("rules", f"rules: {rules} is not a file of the exercise folder")
    named = data["scenario"]
    if not isinstance(named, str) or not named:
        raise fail("scenario", "scenario: a scenario folder inside the exercise, or a "
                               "built-in scenario's name")
    if "/" not in named and (folder / named).is_dir():
        target = str(folder / named)
    elif named in scenario.builtin_names():
        target = named
    else:
        raise fail("scenario", f"scenario: {named!r} is neither a folder of the exercise nor "
                               "a built-in scenario (see `port25lab list`)")
    try:
        checked = scenario.load(target)
    except BadInput as exc:
        raise fail("scenario", f"scenario: {exc}") from None
    trap = data.get("trap", "")
    if "trap" in data and (not isinstance(trap, str) or trap not in checked.traps):
        raise fail("trap", f"trap: {trap!r} is not a node with a trap in the scenario (it "
                           f"has: {', '.join(sorted(checked.traps)) or 'none'})")
    return Exercise(
        number=int(match.group(1)), name=folder.resolve().name, folder=folder,
        title=texts(data["title"], "title", data, "title"),
        goal=texts(data["goal"], "goal", data, "goal"),
        scenario=target, rules=folder / rules,
        hints=tuple(texts(h, f"hints[{i}]", hints, i) for i, h in enumerate(hints)),
        trap=trap)
