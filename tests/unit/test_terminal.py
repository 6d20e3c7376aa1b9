"""The terminal report: a summary line per scenario, the cause a line that did not load
explains, mismatches under the line that decided them, colour only where asked for."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest
from rich.console import Console

from lab import report, terminal
from lab.model import scenario
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Scenario
from lab.model.verdict import Verdict
from lab.netfilter.policy import LoadError
from lab.netfilter.script import Command
from tests.unit.test_report import CITED, DROP_V4, FAILING, PASSING, TUNNELS

SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour or weight escape sequence
SEED = scenario.load("seed-screened-block")
# the published Teredo line, as the lab reads it (`-dport`: what iptables refuses)
TEREDO_LINE = next(c for p in SEED.policies["gw"] for c in p.commands if c.line == 14)
UNLOADED = LoadError(TEREDO_LINE.file, 14, "Bad argument `3544'")


def _tunnel(source: str, probe: str, variant: str, expected: Verdict,
            observed: Verdict) -> Result:
    return Result(source, "remote-mx", probe, 4, expected, observed, None,
                  f"{variant}: relay received it", 3.0, variant=variant)


# The seed's shape: the Teredo line did not load; Teredo and 6in4 probes get through.
SEEDED = ScenarioResult("seed-screened-block", "screened-host", load_errors=(UNLOADED,),
                        results=(
    Result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.BLOCKED, DROP_V4,
           "dropped", 1.0),
    _tunnel("client1", "teredo", "plain", Verdict.BLOCKED, Verdict.ALLOWED),
    _tunnel("client2", "teredo", "other-port", Verdict.BLOCKED, Verdict.ALLOWED),
    _tunnel("client1", "teredo", "control-80", Verdict.ALLOWED, Verdict.ALLOWED),
    _tunnel("client1", "tunnel6in4", "plain", Verdict.BLOCKED, Verdict.ALLOWED),
))


def _last(result: ScenarioResult, spec: Scenario | None = None) -> str:
    return report.matrix(result, spec).splitlines()[-1]


def test_each_scenario_ends_with_its_summary_line() -> None:
    assert _last(PASSING) == "   PASS — 4 of 4 probes as expected"
    assert _last(TUNNELS) == "   FAIL — 1 of 3 probes not as expected"
    # without the scenario as written, the line that did not load is named, not blamed
    assert _last(FAILING) == ("   FAIL — 1 of 3 probes not as expected; "
                              "scenarios/seed-screened-block/rules.sh:14 did not load "
                              "(Bad argument `3544')")
    clean = replace(PASSING, load_errors=(UNLOADED,))
    assert _last(clean).endswith(f"4 of 4 probes as expected, but {TEREDO_LINE.file}:14 did "
                                 "not load (Bad argument `3544')")
    two = replace(SEEDED, load_errors=(UNLOADED, replace(UNLOADED, line=20)))
    assert _last(two, SEED).endswith(f"; 2 policy lines did not load ({TEREDO_LINE.file}:14, "
                                     f"{TEREDO_LINE.file}:20)")
    broken = replace(PASSING, lab_error="gw did not boot", results=PASSING.results[:1])
    assert _last(broken) == "   FAIL — the lab failed (gw did not boot) after 1 probes"
    assert _last(ScenarioResult("empty", "dmz")) == "   FAIL — no probe ran"
    caught = replace(PASSING, expected_suspects=("client2",))
    assert _last(caught).endswith("; the firewall logs name nobody, expected client2")


def test_a_line_that_did_not_load_is_the_cause_of_the_failing_rows_of_its_kind() -> None:
    assert _last(SEEDED, SEED) == (
        "   FAIL — 3 of 5 probes not as expected; cause of 2 (IPv4 udp to be blocked): "
        f"{TEREDO_LINE.file}:14 did not load (Bad argument `3544'); 1 others "
        "(tunnel6in4:plain)")
    found = report.cause(SEEDED, SEED)
    assert found is not None and found.error == UNLOADED
    assert [(r.probe, r.variant) for r in found.explains] == [("teredo", "plain"),
                                                             ("teredo", "other-port")]
    # every failing row of its kind: the cause, whole
    only_teredo = replace(SEEDED, results=SEEDED.results[:4])
    assert _last(only_teredo, SEED).endswith(
        f"2 of 4 probes not as expected; cause: {TEREDO_LINE.file}:14 did not load "
        "(Bad argument `3544')")


def test_the_cause_is_claimed_only_where_it_is_the_one_error() -> None:
    assert report.cause(replace(SEEDED, lab_error="relay died"), SEED) is None
    assert report.cause(replace(SEEDED, load_errors=(UNLOADED, UNLOADED)), SEED) is None
    # a line of no policy file of the scenario (a fail2ban jail: line 0)
    assert report.cause(replace(SEEDED, load_errors=(replace(UNLOADED, line=0),)), SEED) is None
    # no failing row of its kind: named, not blamed
    assert report.cause(replace(SEEDED, results=SEEDED.results[4:]), SEED) is None
    assert _last(replace(SEEDED, results=SEEDED.results[4:]), SEED).endswith(
        f"1 of 1 probes not as expected; {TEREDO_LINE.file}:14 did not load "
        "(Bad argument `3544')")


def _aim(line: str, family: int = 4) -> report.Aim | None:
    argv = tuple(line.split())
    return report.aim(Command("rules.sh", 1, line, argv, family))


def test_what_a_line_was_written_for_is_read_from_its_words() -> None:
    teredo = report.aim(TEREDO_LINE)
    assert teredo == report.Aim(4, Verdict.BLOCKED, "udp", None, ("203.0.113.0/24",))
    assert str(teredo) == "IPv4 udp to be blocked"
    drop = _aim("ip6tables -A FORWARD -p tcp -m multiport --dports 25,465:466 -j REJECT", 6)
    assert drop == report.Aim(6, Verdict.BLOCKED, "tcp", ((25, 25), (465, 466)), None)
    assert str(drop) == "IPv6 tcp port 25,465:466 to be blocked"
    assert _aim("iptables -P FORWARD DROP") == report.Aim(4, Verdict.BLOCKED, None, None, None)
    assert _aim("iptables -t nat -A PREROUTING -p tcp --dport 25 -j DNAT "
                "--to-destination 203.0.113.25:587") == report.Aim(
        4, Verdict.DIVERTED, "tcp", ((25, 25),), None)
    for unread in ("iptables -A FORWARD ! -s 203.0.113.25 -p tcp --dport 25 -j DROP",
                   "iptables -A FORWARD -p tcp --sport 25 -j DROP",
                   "iptables -A FORWARD -p sctp -j DROP",
                   "iptables -A FORWARD -p tcp --dport smtp -j DROP",
                   "iptables -A FORWARD -s mx.example.org -j DROP",
                   "iptables -A FORWARD -p tcp -j LOG",
                   "iptables -A FORWARD -p tcp -j mine",
                   "iptables -A INPUT -p tcp --dport 25 -j DROP",  # not what crosses a router
                   "iptables -A mine -p tcp --dport 25 -j DROP",  # what jumps there: unknown
                   "iptables -t nat -A PREROUTING -p tcp -j ACCEPT"):
        assert _aim(unread) is None, unread


def test_a_row_is_of_a_lines_kind_by_family_verdict_protocol_port_and_source() -> None:
    site = SEED.site
    smtp = Result("client1", "remote-mx", "smtp", 4, Verdict.BLOCKED, Verdict.ALLOWED, None,
                  "reached", 1.0)
    aim = report.Aim(4, Verdict.BLOCKED, "tcp", ((25, 25),), ("203.0.113.0/24",))
    assert aim.takes(smtp, site)
    assert not aim.takes(replace(smtp, family=6), site)
    assert not aim.takes(replace(smtp, expected=Verdict.ALLOWED, observed=Verdict.BLOCKED), site)
    assert not aim.takes(replace(smtp, probe="smtps"), site)  # port 465
    assert not aim.takes(replace(smtp, probe="dns"), site)  # udp
    assert not aim.takes(replace(smtp, source="remote-mx", target="sink"), site)  # outside
    assert not aim.takes(replace(smtp, observed=Verdict.BLOCKED), site)  # it passed
    # the mail's leg through the router starts at the submission server, not the client
    assert replace(aim, ports=None).takes(replace(smtp, probe="spam"), site)
    assert not replace(aim, ports=None).takes(replace(smtp, probe="mail"), site)
    # a Teredo probe is udp to its relay's port: 3545 for that variant
    other = _tunnel("client1", "teredo", "other-port", Verdict.BLOCKED, Verdict.ALLOWED)
    assert report.Aim(4, Verdict.BLOCKED, "udp", ((3545, 3545),), None).takes(other, site)
    assert not report.Aim(4, Verdict.BLOCKED, "udp", ((3544, 3544),), None).takes(other, site)


def test_mismatches_are_shown_under_the_line_that_decided_them() -> None:
    lines = report.matrix(CITED).splitlines()
    at = lines.index("   evidence of mismatches:")
    assert lines[at + 1:at + 3] == [
        "     decided by rules.sh:17 [1]:",
        "       mx → remote-mx mail/v4: not delivered"]
    text = report.matrix(FAILING)
    assert ("     decided by [2], a rule of no policy file:\n"
            "       client1 → mx smtps/v6: dropped before mx:465") in text
    seeded = report.matrix(SEEDED, SEED)
    assert (f"     no rule decided; {TEREDO_LINE.file}:14, written for them, did not load:\n"
            "       client1 → remote-mx teredo:plain/v4: plain: relay received it\n"
            "       client2 → remote-mx teredo:other-port/v4: other-port: relay received it\n"
            "     no rule decided:\n"
            "       client1 → remote-mx tunnel6in4:plain/v4: plain: relay received it") in seeded


def test_the_total_line() -> None:
    assert report.totals([PASSING, SEEDED]) == (
        "total: 9 probes in 2 scenarios, 3 not as expected, 1 policy line did not load")
    broken = replace(PASSING, lab_error="gw did not boot")
    assert report.totals([broken], 12.345) == (
        "total: 4 probes in 1 scenario, 0 not as expected, 1 lab failed, 12.3 s")


def _rendered(text: object, colour: bool) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=colour, no_color=not colour, soft_wrap=True,
            highlight=False).print(text)
    return out.getvalue()


def test_the_styled_matrix_is_the_plain_one_in_colour() -> None:
    for result, spec in ((PASSING, None), (FAILING, None), (SEEDED, SEED), (CITED, None)):
        styled = report.styled(result, spec)
        shown = _rendered(styled, colour=True)
        assert SGR.search(shown), "no colour on a terminal"
        assert SGR.sub("", shown) == report.matrix(result, spec) + "\n"
    shown = _rendered(report.styled(FAILING), colour=True)
    header, *_ = shown.splitlines()
    assert "\x1b[1;31mFAIL" in header  # a failing scenario's status: bold red
    assert "\x1b[1;31m ✗ (want allowed)" in shown
    assert "\x1b[32mPASS" in _rendered(report.styled(PASSING), colour=True)


# --- the terminal's printer and progress, and the command line's options ------------

class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("tty", "env", "color", "coloured"), [
    (True, {}, "auto", True),
    (False, {}, "auto", False),  # a pipe or a file: the plain text
    (True, {"NO_COLOR": "1"}, "auto", False),
    (True, {"NO_COLOR": ""}, "auto", True),  # set but empty: not asked for (no-color.org)
    (True, {"TERM": "dumb"}, "auto", False),
    (False, {}, "always", True),
    (True, {"NO_COLOR": "1"}, "always", True),  # the option wins over the environment
    (True, {}, "never", False),
])
def test_the_report_is_coloured_only_where_asked(
        monkeypatch: pytest.MonkeyPatch, tty: bool, env: dict[str, str], color: str,
        coloured: bool) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = _Stream(tty)
    monkeypatch.setattr("sys.stdout", out)
    terminal.printer(color)(report.styled(FAILING))
    shown = out.getvalue()
    assert bool(SGR.search(shown)) is coloured, shown
    assert SGR.sub("", shown) == report.matrix(FAILING) + "\n"


def test_progress_is_one_updating_line_on_a_terminal_and_lines_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    messages = ["x: booting screened-host as p25-000000", "x: [1/2] a", "x: [2/2] b"]
    for tty, verbose, quiet in ((False, False, False), (True, True, False),
                                (True, False, False), (True, False, True)):
        err = _Stream(tty)
        monkeypatch.setattr("sys.stderr", err)
        with terminal.Progress(quiet, verbose) as say:
            for message in messages:
                say(message)
        shown = err.getvalue()
        if quiet:
            assert shown == ""
        elif not tty or verbose:  # a line per step, as programs reading stderr expect
            assert shown == "".join(f"  … {m}\n" for m in messages)
        else:  # one line, replaced at each step, and taken away at the end
            assert "\n  … " not in shown
            assert all(f"  … {m}" in shown for m in messages)
            assert shown.count("\r\x1b[2K") >= 2
            assert shown.endswith("\x1b[2K")  # erased: the report goes where it was


def test_a_closed_terminal_stops_the_progress_line_and_nothing_else(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(_Stream):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")  # EIO: the terminal hung up

    err = Closed(True)
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("TERM", "xterm")
    for verbose in (False, True):
        with terminal.Progress(False, verbose) as say:
            say("x: [1/2] a")
            assert say.gone
            say("x: [2/2] b")  # not written: the SIGHUP that follows ends the run


def test_quiet_and_verbose_together_are_bad_input() -> None:
    from lab import cli
    from lab.errors import BadInput

    with pytest.raises(BadInput, match="not allowed with argument"):
        cli._parser().parse_args(["verify", "x", "-q", "-v"])
    args = cli._parser().parse_args(["verify", "x", "-v", "--color", "never"])
    assert (args.verbose, args.quiet, args.color) == (True, False, "never")
    with pytest.raises(BadInput, match="invalid choice: 'sometimes'"):
        cli._parser().parse_args(["verify", "x", "--color", "sometimes"])
