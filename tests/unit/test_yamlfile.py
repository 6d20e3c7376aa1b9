"""Reading a user's YAML file: safe, capped, one line per mistake with its line number."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import yamlfile


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "site.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _refused(path: Path, **options: int) -> str:
    with pytest.raises(BadInput) as caught:
        yamlfile.load(path, "site file", **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_data_and_the_lines_it_came_from(tmp_path: Path) -> None:
    path = _write(tmp_path, "# a comment\nsegments:\n  lan:\n    prefixes:\n"
                            "      - 192.0.2.0/24\n      - 198.51.100.0/24\n")
    data = yamlfile.load(path, "site file")
    assert data == {"segments": {"lan": {"prefixes": ["192.0.2.0/24", "198.51.100.0/24"]}}}
    assert yamlfile.line_of(data, "segments") == 2
    assert yamlfile.line_of(data["segments"], "lan") == 3
    prefixes = data["segments"]["lan"]["prefixes"]
    assert [yamlfile.line_of(prefixes, i) for i in range(2)] == [5, 6]
    assert yamlfile.line_of("not from a file") is None


@pytest.mark.parametrize("text, line, said", [
    ("base: &b {a: 1}\nother: *b\n", 2, "alias *b: a site file takes no anchors or aliases"),
    ("a: &b 1\n", 1, "anchor &b"),
    ("a: 1\nb: *nowhere\n", 2, "alias *nowhere"),
    ("name: x\nhosts: {}\nname: y\n", 3, "duplicate key 'name' (first on line 1)"),
    ("a: [1, 2\nb: 3\n", 2, "expected ',' or ']'"),
    ("a: 1\n---\nb: 2\n", 2, "expected a single document in the stream, but found another"),
    ("a:" + " [" * 20 + "1" + "]" * 20 + "\n", 1, "nested deeper than 16 levels"),
])
def test_refused_yaml_names_the_line(tmp_path: Path, text: str, line: int, said: str) -> None:
    path = _write(tmp_path, text)
    message = _refused(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert said in message


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, b"a: 1\nb: caf\xe9\n")
    assert _refused(path) == f"{path}:2: not UTF-8 text (save the site file as UTF-8)"


def test_larger_than_the_cap(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: " + "x" * 100 + "\n")
    assert _refused(path, max_bytes=64) == f"{path}: larger than 64 bytes: not a site file"
    assert yamlfile.load(path, "site file", max_bytes=200) == {"a": "x" * 100}


def test_regular_files_only(tmp_path: Path) -> None:
    assert _refused(tmp_path).endswith("not a regular file (give the site file as a text file)")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: reading must not wait
    assert "not a regular file" in _refused(fifo)
    assert _refused(Path("/dev/zero")).startswith("/dev/zero: not a regular file")
    assert _refused(tmp_path / "missing.yaml").endswith(
        "cannot read the site file: No such file or directory")


def test_a_name_with_a_nul_is_one_line() -> None:
    # os.open raised ValueError ("embedded null byte"): a traceback
    assert _refused(Path("site\0.yaml")) == ("'site\\x00.yaml': a file name cannot hold a NUL "
                                             "character")


@pytest.mark.parametrize("text, line, said", [
    # a lone surrogate: open() and print() raised UnicodeEncodeError later
    ('name: x\ndescription: "a\\ud800b"\n', 2,
     "'\\ud800' is half a character (a lone surrogate): remove it"),
    ('name: x\n"\\udfff": 1\n', 2, "'\\udfff' is half a character (a lone surrogate)"),
    # a character YAML forbids: PyYAML's ReaderError has no mark, and was several lines
    ('name: x\ndescription: "a\0b"\n', 2,
     "character #x0000 is not allowed in YAML (remove it)"),
    ("name: x\ndescription: a\x07b\n", 2, "character #x0007 is not allowed in YAML"),
    # keys as YAML writes them, and a long one shortened
    ("1: a\ntrue: b\n", 2, "duplicate key true (first on line 1): give each key once"),
    ("a: 1\nnull: 2\n~: 3\n", 3, "duplicate key null (first on line 2)"),
])
def test_what_python_would_raise_later_is_refused_now(tmp_path: Path, text: str, line: int,
                                                      said: str) -> None:
    path = _write(tmp_path, text)
    message = _refused(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert said in message


def test_a_long_key_is_quoted_shortened(tmp_path: Path) -> None:
    key = "k" * 1000  # YAML allows 1024 characters in a plain key
    message = _refused(_write(tmp_path, f"{key}: 1\n{key}: 2\n"))
    assert "duplicate key 'kkk" in message and "k...k" in message and len(message) < 500


def test_shown_quotes_loaded_data_like_plain_data(tmp_path: Path) -> None:
    data = yamlfile.load(_write(tmp_path, "b: [1, 'x']\na: {c: " + "y" * 500 + "}\n"),
                         "site file")
    assert isinstance(data, yamlfile.LocatedDict)
    plain = {"b": [1, "x"], "a": {"c": "y" * 500}}
    assert yamlfile.shown(data) == yamlfile.shown(plain)
    assert yamlfile.shown(data).startswith("{'a': {'c': 'yyy") and len(yamlfile.shown(data)) < 200
    assert [yamlfile.shown(v) for v in (None, True, False, 4)] == ["null", "true", "false", "4"]


def test_parse_names_the_file_as_its_kind_does(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    with pytest.raises(BadInput) as caught:
        yamlfile.parse(path, "a: &x 1\n", "scenario.yaml")
    assert str(caught.value) == (f"{path}:1: anchor &x: scenario.yaml takes no anchors or "
                                 "aliases (write the value out)")
    with pytest.raises(BadInput) as caught:
        yamlfile.parse(path, "a: " + "[" * 20 + "]" * 20 + "\n", "scenario.yaml",
                       needs="a scenario needs five")
    assert str(caught.value) == (f"{path}:1: nested deeper than {yamlfile.MAX_DEPTH} levels "
                                 "(a scenario needs five)")
    assert yamlfile.parse(path, "a: [1, {b: c}]\n", "scenario.yaml") == {"a": [1, {"b": "c"}]}
