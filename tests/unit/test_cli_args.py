"""The command line's bad-input paths: exit status 2 and one line on stderr, before any lab."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import cli
from lab.audit import remote
from lab.model.verdict import Verdict
from probes.registry import PROBES
from tests.support import PROJECT

BUILTIN = {"false-alarm": "screened-host", "fixed-dmz-block": "dmz",
           "fixed-dmz-block-nft": "dmz", "fixed-proxy": "screened-host",
           "fixed-proxy-dmz": "dmz", "fixed-proxy-nft": "screened-host",
           "fixed-screened-block": "screened-host",
           "fixed-screened-block-nft": "screened-host",
           "fixed-screened-block-translated": "screened-host", "fixed-trap": "screened-host",
           "fixed-trap-nft": "screened-host", "guessing": "screened-host",
           "seed-dmz-block": "dmz", "seed-proxy": "screened-host",
           "seed-screened-block": "screened-host", "seed-teredo-syntax": "screened-host",
           "seed-translated": "screened-host", "seed-trap": "screened-host",
           "seed-trap-nft": "screened-host", "spambot": "screened-host",
           "teredo-payload-nft": "screened-host", "weak-password": "screened-host"}


class ReachedTheLab(Exception):
    """The command got past every input check: it would now boot namespaces."""


@pytest.fixture(autouse=True)
def _no_lab_and_signals_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # These tests run as root: should a check be missing, stop before a lab boots
    # (and fail loudly: main() does not catch this exception).
    def refuse(command: str) -> None:
        raise ReachedTheLab(command)

    def no_connection(*_: object, **__: object) -> None:
        raise ReachedTheLab("audit: connect")

    monkeypatch.setattr(cli, "_require_root", refuse)
    monkeypatch.setattr(remote, "connect", no_connection)  # nor a packet to a gateway
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _bad(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("port25lab: ")
    return lines[0]


def test_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert "no command given" in _bad(capsys, [])


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert "bogus" in _bad(capsys, ["bogus"])


def test_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    line = _bad(capsys, ["verify", "no-such-scenario"])
    assert "no-such-scenario" in line and "port25lab list" in line


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--bogus" in _bad(capsys, ["verify", "--bogus", "seed-dmz-block"])


def test_unknown_top_level_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--bogus" in _bad(capsys, ["--bogus", "list"])


def test_verify_without_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert "no scenario given" in _bad(capsys, ["verify"])


def test_all_and_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--all" in _bad(capsys, ["verify", "--all", "seed-dmz-block"])


def test_json_into_a_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.json"
    line = _bad(capsys, ["verify", "seed-dmz-block", "--json", str(target)])
    assert str(target) in line and "does not exist" in line


def test_junit_into_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _bad(capsys, ["verify", "seed-dmz-block", "--junit", str(tmp_path)])
    assert "--junit" in line and "is a folder" in line


def test_rules_v4_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.rules"
    line = _bad(capsys, ["verify", "seed-screened-block", "--rules-v4", str(missing)])
    assert str(missing) in line and "no such rules file" in line


def test_rules_v4_with_only_ip6tables_lines(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    rules = tmp_path / "v6-only.sh"
    rules.write_text("ip6tables -A FORWARD -i eth0 -p tcp --dport 25 -j DROP\n")
    line = _bad(capsys, ["verify", "seed-screened-block", "--rules-v4", str(rules)])
    assert str(rules) in line and "has no iptables rules for --rules-v4" in line


def test_rules_v6_given_an_ipv4_save_file(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    rules = tmp_path / "v4.save"
    rules.write_text("# Generated by iptables-save v1.8.9\n*filter\n:FORWARD ACCEPT [0:0]\n"
                     "-A FORWARD -s 203.0.113.0/24 -j DROP\nCOMMIT\n")
    line = _bad(capsys, ["verify", "seed-screened-block", "--rules-v6", str(rules)])
    assert "holds IPv4 rules, given as IPv6" in line


def test_bad_scenario_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text("topology: star\nexpect: []\n")
    assert "topology 'star'" in _bad(capsys, ["verify", str(tmp_path)])


def test_shell_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert "port25lab list" in _bad(capsys, ["shell", "no-such-scenario"])


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(BUILTIN)
    topologies = {ln.split()[0]: ln.split()[1] for ln in lines}
    assert topologies == BUILTIN


def test_list_probes_says_guessing_stays_in_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--probes"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    names = [ln.split()[0] for ln in out.splitlines() if not ln.startswith(" ")]
    assert names == list(PROBES)
    guessing = next(ln for ln in out.splitlines() if ln.startswith("guessing "))
    assert "refuses any target outside the lab" in guessing
    assert "variants: plain, plain-465," in out


def test_scenario_with_a_list_for_topology(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text(
        "topology: [dmz]\n"
        "expect:\n"
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n")
    assert "topology" in _bad(capsys, ["verify", str(tmp_path)])


TEREDO_EXPECTATION = ("  - {from: client1, to: remote-mx, probes: [teredo], variants: [plain], "
                      "families: [4], verdict: blocked}\n")


def _tunnel_scenario(folder: Path, expectation: str) -> Path:
    (folder / "scenario.yaml").write_text("topology: screened-host\nexpect:\n" + expectation)
    return folder


def test_unknown_tunnel_variant(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = _tunnel_scenario(tmp_path, TEREDO_EXPECTATION.replace("[plain]", "[plane]"))
    line = _bad(capsys, ["verify", str(folder)])
    assert str(folder / "scenario.yaml") in line
    assert "unknown teredo variant 'plane'" in line and "plain, plain-465," in line


def test_variants_on_a_probe_without_any(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    folder = _tunnel_scenario(tmp_path, TEREDO_EXPECTATION.replace("[teredo]", "[smtp]"))
    assert "probe 'smtp' has no variants" in _bad(capsys, ["verify", str(folder)])


def test_tunnel_probe_over_ipv6(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = _tunnel_scenario(tmp_path, TEREDO_EXPECTATION.replace("[4]", "[4, 6]"))
    assert "teredo travels in IPv4: family must be 4" in _bad(capsys, ["verify", str(folder)])


def test_a_good_tunnel_scenario_gets_past_the_checks(tmp_path: Path) -> None:
    folder = _tunnel_scenario(tmp_path, TEREDO_EXPECTATION)
    with pytest.raises(ReachedTheLab):
        cli.main(["verify", str(folder)])


LONG = "a" * 300  # one name over the 255 bytes every Linux file system allows


@pytest.mark.parametrize("argv, option", [
    (["verify", "fixed-dmz-block", "--json", "out\0.json"], "--json"),
    (["verify", "fixed-dmz-block", "--junit", "out\0.xml"], "--junit"),
    (["verify", "fixed-dmz-block", "--rules-v4", "gw\0.rules"], "--rules-v4"),
    (["verify", "fixed-dmz-block", "--rules-v6", "gw\0.rules"], "--rules-v6"),
    (["verify", "scenarios/fixed-dmz\0-block"], "SCENARIO"),
    (["suspects", "spambot", "--json", "s\0.json"], "--json"),
    (["shell", "fixed\0"], "SCENARIO"),
    (["audit", "ssh://root@192.0.2.1", "--json", "a\0.json"], "--json"),
    (["audit", "ssh://root@192.0.2.1", "--junit", "a\0.xml"], "--junit"),
    (["audit", "ssh://root@192.0.2.1", "-i", "key\0"], "-i/--identity"),
    (["audit", "ssh://root@192.0.2.1", "--known-hosts", "known\0"], "--known-hosts"),
    (["audit", "ssh://root@192.0.2.1", "--twin", "fixed\0"], "--twin"),
])
def test_a_nul_in_a_file_name(capsys: pytest.CaptureFixture[str], argv: list[str],
                              option: str) -> None:
    # Not from a shell (argv cannot carry a NUL), but from a program calling main().
    line = _bad(capsys, argv)
    assert f"argument {option}" in line and "cannot hold a NUL character" in line


@pytest.mark.parametrize("argv, option", [
    (["verify", "fixed-dmz-block", "--json", f"/tmp/{LONG}.json"], "--json"),
    (["verify", "fixed-dmz-block", "--junit", f"/tmp/{LONG}/out.xml"], "--junit"),
    (["verify", f"/tmp/{LONG}"], "SCENARIO"),
    (["verify", f"scenarios/{LONG}/"], "SCENARIO"),
    (["suspects", "spambot", "--json", f"{LONG}.json"], "--json"),
    (["audit", "ssh://root@192.0.2.1", "--json", f"/tmp/{LONG}"], "--json"),
    (["audit", "ssh://root@192.0.2.1", "--twin", f"/tmp/{LONG}"], "--twin"),
    (["verify", "fixed-dmz-block", "--json", "/tmp/" + "d/" * 2100 + "x.json"], "--json"),
])
def test_a_name_too_long_for_the_file_system(capsys: pytest.CaptureFixture[str],
                                             argv: list[str], option: str) -> None:
    line = _bad(capsys, argv)
    assert f"argument {option}" in line
    assert "file systems allow 255" in line or "a path may have 4095" in line
    assert len(line) < 200  # the name is quoted shortened


@pytest.mark.parametrize("command", [["verify", "fixed-dmz-block"],
                                     ["audit", "ssh://root@192.0.2.1"]])
@pytest.mark.parametrize("json, junit", [
    ("out", "out"), ("out", "./out"), ("out", "{tmp}/sub/../out"), ("link", "out")])
def test_json_and_junit_into_one_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, command: list[str],
                                      json: str, junit: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("out")  # dangling: out is not written yet
    line = _bad(capsys, [*command, "--json", json, "--junit", junit.format(tmp=tmp_path)])
    assert "are the same file" in line and "give two file names" in line
    assert not (tmp_path / "out").exists()


def test_json_and_junit_hard_linked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a").write_text("earlier report\n")
    (tmp_path / "b").hardlink_to(tmp_path / "a")
    line = _bad(capsys, ["verify", "fixed-dmz-block", "--json", str(tmp_path / "a"),
                         "--junit", str(tmp_path / "b")])
    assert "are the same file" in line
    assert (tmp_path / "a").read_text() == "earlier report\n"


@pytest.mark.parametrize("where, message", [
    ("/proc/p25-report.json", "cannot write there (No such file or directory)"),
    ("{tmp}/file/report.json", "is not a folder"),
    ("{tmp}/no-reader.fifo", "cannot write there (No such device or address)"),
])
@pytest.mark.parametrize("command, option", [
    (["verify", "fixed-dmz-block"], "--json"), (["verify", "fixed-dmz-block"], "--junit"),
    (["suspects", "spambot"], "--json"), (["audit", "ssh://root@192.0.2.1"], "--junit")])
def test_a_report_where_nothing_can_be_written(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, where: str, message: str,
                                               command: list[str], option: str) -> None:
    (tmp_path / "file").write_text("a file, not a folder\n")
    os.mkfifo(tmp_path / "no-reader.fifo")
    target = where.format(tmp=tmp_path)
    line = _bad(capsys, [*command, option, target])
    assert f"{option} {target}: " in line and message in line
    assert (tmp_path / "file").read_text() == "a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "no-reader.fifo"]


def _fake_runs(monkeypatch: pytest.MonkeyPatch, folder: Path,
               during: Callable[[], None]) -> None:
    """Past the checks, a run that boots nothing: the end-of-run report writing is the test."""
    from lab.audit import gateway as audit
    from lab.audit.facts import Facts
    from lab.compliance.addressing import Addressing
    from lab.engine import verify as engine
    from lab.model import results
    from lab.runtime import lifecycle

    def verify(s: Any, run: Any, progress: Any) -> results.ScenarioResult:
        during()
        return results.ScenarioResult(s.name, s.topology, results=(results.Result(
            "client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, None,
            "dropped before remote-mx:25", 1.0),))

    def read_gateway(access: audit.Access, addressing: object) -> audit.AuditResult:
        during()  # nothing read: nothing is taken from the gateway
        return audit.AuditResult(Facts(str(access.gateway), {}), Addressing((), (), ""), (), 1.0)

    monkeypatch.setattr(cli, "_require_root", lambda command: None)
    monkeypatch.setattr(engine, "verify", verify)
    monkeypatch.setattr(audit, "audit", read_gateway)
    monkeypatch.setattr(lifecycle, "remove_stale", lambda: [])
    monkeypatch.setattr(lifecycle, "new_run", lambda: lifecycle.Run("p25-000000", folder))
    monkeypatch.setattr(lifecycle, "destroy", lambda run: None)


@pytest.mark.parametrize("late", ["/dev/full", "/proc/version"])  # ENOSPC, EIO on writing
@pytest.mark.parametrize("command, shown", [
    (["verify", "fixed-dmz-block"], "== fixed-dmz-block [dmz] PASS"),
    (["suspects", "spambot"], "== spambot [screened-host]"),
    (["audit", "ssh://root@192.0.2.1"], "== audit ssh://root@192.0.2.1 PASS")])
def test_a_report_that_fails_at_the_end(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        late: str, command: list[str], shown: str) -> None:
    # The check before the run passes (both open for appending); writing fails at the end.
    earlier = tmp_path / "earlier.xml"
    earlier.write_text("the last run's report\n")
    junit = [] if command[0] == "suspects" else ["--junit", str(earlier)]

    def during_the_run() -> None:  # the check before the run did not clobber it
        assert earlier.read_text() == "the last run's report\n"

    _fake_runs(monkeypatch, tmp_path / "run", during_the_run)
    status = cli.main([*command, "--json", late, *junit])
    out, err = capsys.readouterr()
    assert status == 2, err
    assert shown in out  # the terminal report is there
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"port25lab: --json {late}: the report could not be written (")
    assert "the run's results are the terminal report above" in lines[0]
    if junit:  # the other report is written all the same
        assert ET.parse(earlier).getroot().tag == "testsuites"



def test_version_is_the_installed_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    out, err = capsys.readouterr()
    assert (exited.value.code, err) == (0, "")
    installed = importlib.metadata.version("port25lab")
    declared = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    assert out == f"port25lab {installed}\n"
    assert installed == declared


def test_the_license_pyproject_names_is_in_the_repository() -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (PROJECT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The port25lab authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_the_readme_points_only_at_files_the_repository_has() -> None:
    # A clone has nothing beside it: `../shared/…` was a pointer out of the repository.
    text = (PROJECT / "README.md").read_text()
    top = {p.name for p in PROJECT.iterdir()}
    named = re.findall(r"`((?:\.\.?/)?[\w.-]+/[^`\s]*)`", text)
    assert named
    for path in named:
        assert not path.startswith("../"), path
        if path.split("/")[0] not in top:
            continue  # a path on the host (/etc, /run) or a URL scheme (ssh://)
        pattern = "/".join("*" if part.isupper() else part for part in path.split("/") if part)
        assert any(PROJECT.glob(pattern)), path  # NAME, PREFIX: any one
    assert "Gerenciamento da porta 25 — uma revisão" in " ".join(text.split())
    for seed in ("seed-screened-block", "seed-dmz-block", "seed-proxy"):
        assert f"`scenarios/{seed}/rules.sh`" in text
