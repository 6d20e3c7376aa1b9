"""Reading a file a user gives: regular files only, capped, UTF-8, one line naming the file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lab.userfiles import Unreadable, Words, named, read_bytes, read_text, shown


def _refused(path: Path, max_bytes: int = 1024, words: Words | None = None) -> Unreadable:
    with pytest.raises(Unreadable) as caught:
        read_text(path, "site file", max_bytes, words or Words())
    assert "\n" not in str(caught.value)
    assert caught.value.path == path
    return caught.value


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "rules.sh"
    path.write_text("iptables -A FORWARD -j DROP\n# é\n")
    assert read_text(path, "rules file", 1024) == "iptables -A FORWARD -j DROP\n# é\n"
    assert read_bytes(path, "rules file", 1024) == path.read_bytes()


def test_the_cap_counts_bytes_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"x" * 64)
    assert read_bytes(path, "site file", 64) == b"x" * 64  # just at the cap
    assert str(_refused(path, 63)) == f"{path}: larger than 63 bytes: not a site file"
    big = tmp_path / "big.yaml"
    with big.open("wb") as file:
        file.truncate((1 << 20) + 1)  # sparse: nothing is written
    assert str(_refused(big, 1 << 20)) == f"{big}: larger than 1 MiB: not a site file"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused(device: str) -> None:
    # /dev/zero was read until memory ran out
    refused = _refused(Path(device))
    assert str(refused) == (f"{device}: not a regular file (a device, FIFO or socket): "
                            "give a site file")
    assert refused.problem == "not a regular file (a device, FIFO or socket): give a site file"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    assert str(_refused(tmp_path)) == (f"{tmp_path}: a folder, not a regular file "
                                       "(give the site file as a text file)")


def _without_blocking(work: object) -> BaseException | None:
    """What a call raised, failing the test should it block for more than 10 s."""
    raised: list[BaseException | None] = []

    def call() -> None:
        try:
            work()  # type: ignore[operator]
            raised.append(None)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(10)
    assert raised, "still blocked after 10 s"
    return raised[0]


def test_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "rules"
    os.mkfifo(fifo)  # nobody writes to it: opening it to read would wait
    raised = _without_blocking(lambda: read_text(fifo, "rules file", 1024))
    assert isinstance(raised, Unreadable)
    assert raised.problem == "not a regular file (a device, FIFO or socket): give a rules file"


def test_a_fifo_put_in_the_files_place_after_the_look_is_refused_once_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the file looked regular when it was stat'ed, and is a FIFO by the time it is opened
    regular = tmp_path / "regular"
    regular.write_text("x")
    fifo = tmp_path / "rules"
    os.mkfifo(fifo)
    real_stat = os.stat

    def stat_then_swap(path: object, *args: object, **kwargs: object) -> os.stat_result:
        return real_stat(regular if path == fifo else path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat_then_swap)
    raised = _without_blocking(lambda: read_text(fifo, "rules file", 1024))
    assert isinstance(raised, Unreadable)
    assert raised.problem == "not a regular file (a device, FIFO or socket): give a rules file"


def test_a_missing_file_and_a_system_error_say_the_systems_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert str(_refused(missing)) == (f"{missing}: cannot read the site file: "
                                      "No such file or directory")
    (tmp_path / "file").write_text("x")
    under_a_file = tmp_path / "file" / "site.yaml"
    assert str(_refused(under_a_file)) == (f"{under_a_file}: cannot read the site file: "
                                           "Not a directory")


def test_not_utf8_names_the_line_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    refused = _refused(path)
    assert str(refused) == f"{path}:2: not UTF-8 text (save the site file as UTF-8)"
    assert refused.line == 2
    by_byte = Words(not_utf8="not UTF-8 text (byte {byte})")
    assert _refused(path, words=by_byte).problem == "not UTF-8 text (byte 12)"


def test_a_nul_byte_is_refused_only_where_the_kind_says_so(tmp_path: Path) -> None:
    path = tmp_path / "rules"
    path.write_bytes(b"iptables -A FORWARD -j DROP\n\0\1\2")
    assert read_text(path, "rules file", 1024).endswith("\0\1\2")  # left to a parser
    binary = Words(binary="binary file, not a {what}")
    with pytest.raises(Unreadable) as caught:
        read_text(path, "rules file", 1024, binary)
    assert str(caught.value) == f"{path}: binary file, not a rules file"


def test_each_kind_words_its_refusals(tmp_path: Path) -> None:
    words = Words(missing="no such {what}", special="not a regular file ({limit} at most)",
                  too_big="over {limit}, too big for a {what}")
    assert _refused(tmp_path / "nope", words=words).problem == "no such site file"
    assert _refused(Path("/dev/zero"), 2 << 20, words).problem == \
        "not a regular file (2 MiB at most)"
    path = tmp_path / "big"
    path.write_bytes(b"x" * 2000)
    assert _refused(path, words=words).problem == "over 1024 bytes, too big for a site file"


@pytest.mark.parametrize(("name", "said"), [
    ("rules\0.sh", "'rules\\x00.sh': a file name cannot hold a NUL character"),
    ("rules\ud800.sh", "rules\ud800.sh: a file name cannot hold half a character "
                       "(a lone surrogate)"),
])
def test_a_name_no_file_can_have(name: str, said: str) -> None:
    assert str(_refused(Path(name))) == said


def test_names_with_control_characters_are_shown_escaped() -> None:
    assert named(Path("/tmp/rules.sh")) == "/tmp/rules.sh"
    assert named(Path("rules\n.sh")) == "'rules\\n.sh'"
    assert named(Path("rules\x1b[2J.sh")) == "'rules\\x1b[2J.sh'"  # not sent to the terminal


def test_shown_is_relative_to_the_working_folder_inside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scenario").mkdir()
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "scenario" / "rules.sh") == "scenario/rules.sh"
    assert shown(Path("scenario/rules.sh")) == "scenario/rules.sh"
    assert shown(Path("/etc/iptables/rules.v4")) == "/etc/iptables/rules.v4"
