"""The peers a user would pick, on the same rows of the same lab: `nmap -sS` for the SYN
rows, `swaks` for the mail rows.

The scenario runs through `lab.engine.verify` with a boot that hands it the real lab
and, once its matrix is probed (and its firewall logs read), runs each peer from the
row's own source node to the row's own address and port, one peer command per row.
Each peer's answer is set beside the lab's verdict: where they differ, the line says why.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bench.table import table
from lab.engine.labview import LabView
from lab.engine.mailflow import dialogue_for
from lab.engine.verify import verify
from lab.errors import LabFailure
from lab.model.results import Result, ScenarioResult
from lab.model.scenario import Expectation, Scenario
from lab.model.site import Site
from lab.model.verdict import Verdict
from lab.runtime.lab import Lab
from lab.runtime.lifecycle import Run
from probes.dialogue import EHLO_NAME, Dialogue
from probes.registry import CONNECT, PROBES, SYN

Say = Callable[[str], None]

# `-n`: the lab has no DNS, and a reverse lookup would only wait for nothing.
# Host discovery stays as a user runs it (on this lab it makes nmap faster, not slower).
NMAP_TIMINGS = (("nmap -sS", ()), ("nmap -sS -T5", ("-T5",)))
SWAKS = "swaks"
# as the lab's own dialogue waits per SMTP command (lab.engine.probing.DIALOGUE_TIMEOUT)
SWAKS_TIMEOUT_S = 5
PEER_TIMEOUT_S = 120.0
PACKAGES = {"nmap": "nmap", "swaks": "swaks"}


@dataclass(frozen=True)
class Row:
    """One row of the matrix as a peer sees it: from a node to an address and port."""

    source: str
    target: str
    probe: str
    family: int
    role: str  # the role connected to (the submission server for `mail`)
    port: int

    def key(self) -> tuple[str, str, str, int]:
        return (self.source, self.target, self.probe, self.family)


@dataclass(frozen=True)
class PeerRun:
    """One peer command on one row, timed around the command in the source node."""

    peer: str
    row: Row
    seconds: float
    got: str  # nmap: the port's state; swaks: accepted, blocked, refused or error
    said: str  # nmap: the state and its reason; swaks: exit status and the last error reply

    def agrees(self, verdict: Verdict) -> tuple[bool, str]:
        """Whether the peer says what the lab's verdict says, and why not (or what else)."""
        if self.peer == SWAKS:
            return swaks_agrees(verdict, self.got, PROBES[self.row.probe].sends_mail)
        return nmap_agrees(verdict, self.got)


def is_syn_probe(probe: str) -> bool:
    """A probe whose first packet is a plain SYN and that sends no mail."""
    kind = PROBES[probe].kind
    return kind is CONNECT or kind is SYN


def is_syn_row(e: Expectation) -> bool:
    """nmap's rows: a SYN probe, not after a ban (nmap knows no bans)."""
    return is_syn_probe(e.probe) and not e.after


def is_mail_row(e: Expectation) -> bool:
    """A row that holds an SMTP dialogue beyond the banner (swaks's rows)."""
    kind = PROBES[e.probe].kind
    return kind.dialogue and not kind.identifies_only and not e.after


def row_of(lab: LabView, e: Expectation) -> Row:
    probe = PROBES[e.probe]
    role = lab.submission_server() if probe.via_submission_server else e.target
    return Row(e.source, e.target, e.probe, e.family, role, probe.port)


# -- nmap ------------------------------------------------------------------------------
def nmap_argv(address: str, port: int, family: int, timing: Sequence[str]) -> list[str]:
    return ["nmap", "-sS", "-n", *timing, *(["-6"] if family == 6 else []), "-p", str(port),
            "-oX", "-", address]


def nmap_state(xml_text: str, port: int) -> tuple[str, str]:
    """The port's state and nmap's reason for it, from nmap's XML (`-oX -`)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise LabFailure(f"nmap printed no readable XML ({exc})") from None
    for element in root.iter("port"):
        if element.get("portid") == str(port):
            state = element.find("state")
            if state is not None:
                ttl = state.get("reason_ttl")
                reason = state.get("reason", "?") + (f" ttl {ttl}" if ttl not in (None, "0")
                                                    else "")
                return state.get("state", "?"), reason
    hosts = root.find("runstats/hosts")
    if hosts is not None and hosts.get("up") == "0":
        return "host down", "no answer to nmap's host discovery"
    return "?", "port not in nmap's report"


def nmap_agrees(verdict: Verdict, state: str) -> tuple[bool, str]:
    """Whether nmap's port state says what the lab's verdict says, and why not."""
    if verdict == Verdict.ALLOWED:
        if state == "open":
            return True, ""
        return False, "the lab saw the far side answer; nmap did not"
    if verdict == Verdict.DIVERTED:
        return state == "open", ("nmap cannot tell who answered: another host or port took "
                                 "the connection (the lab's far side knows)")
    if verdict in (Verdict.BLOCKED, Verdict.BANNED):
        if state == "filtered":
            return True, ""
        if state == "closed":
            return True, ("a reset from a REJECT rule: nmap cannot tell the router's reset "
                          "from the target's; the lab names the rule")
        if state == "host down":
            return True, "the router drops nmap's host discovery too (the lab needs none)"
        return False, "nmap reached a listening port the lab saw stopped"
    return False, f"nmap has no state for the lab's `{verdict}`"


# -- swaks -----------------------------------------------------------------------------
def swaks_argv(address: str, port: int, family: int, talk: Dialogue) -> list[str]:
    """swaks holding the lab's dialogue: the same TLS, account, envelope and message."""
    argv = ["swaks", f"-{family}", "--server", f"{address}/{port}", "--ehlo", EHLO_NAME,
            "--timeout", f"{SWAKS_TIMEOUT_S}s"]
    if talk.tls == "implicit":
        argv.append("--tls-on-connect")
    elif talk.tls == "starttls":
        argv.append("--tls-optional-strict")  # as the lab: STARTTLS when offered
    if talk.user and talk.password:
        argv += ["--auth", "PLAIN,LOGIN", "--auth-user", talk.user,
                 "--auth-password", talk.password]
    argv += ["--from", talk.mail_from or "<>", "--to", ",".join(talk.rcpts)]
    # the message on stdin (`--data -`); without one the lab stops after RCPT
    argv += ["--data", "-"] if talk.message is not None else ["--quit-after", "RCPT"]
    return argv


def swaks_refusals(output: str) -> list[str]:
    """The server's error replies in swaks's transcript (its `<**` lines)."""
    return [line[3:].strip() for line in output.splitlines() if line.startswith("<**")]


def swaks_outcome(status: int, output: str) -> str:
    """swaks's exit status and transcript in the lab's words."""
    if status == 2:  # could not connect (its connect timeout)
        return "blocked"
    if swaks_refusals(output) or 21 <= status <= 32:
        return "refused"
    return "accepted" if status == 0 else "error"


def swaks_agrees(verdict: Verdict, got: str, sends_mail: bool) -> tuple[bool, str]:
    if verdict == Verdict.BLOCKED and got == "accepted":
        return False, ("swaks sees the message accepted by the first server; the lab "
                       "follows it to the target's mailbox, and a rule stopped it on the way")
    if verdict == Verdict.ALLOWED and got == "accepted":
        return True, ("swaks stops at the server's 250; the lab also awaited the delivery"
                      if sends_mail else "")
    same = {Verdict.BLOCKED: "blocked", Verdict.BANNED: "blocked", Verdict.REFUSED: "refused"}
    if same.get(verdict) == got:
        return True, ("swaks waits out its connect timeout; the lab names the rule"
                      if got == "blocked" else "")
    return False, f"swaks: {got}, the lab: {verdict}"


def _said_by_swaks(status: int, output: str, err: str) -> str:
    refused = swaks_refusals(output)
    last = refused[-1] if refused else (err.strip().splitlines() or [""])[-1]
    last = " ".join(last.replace("***", "").split())
    return f"exit {status}" + (f": {last[:60]}" if last else "")


# -- the run -----------------------------------------------------------------------------
def _timed(lab: LabView, role: str, argv: list[str],
           stdin: str | None = None) -> tuple[float, int, str, str]:
    started = time.perf_counter()
    status, out, err = lab.exec(role, argv, stdin=stdin, timeout=PEER_TIMEOUT_S)
    return time.perf_counter() - started, status, out, err


def nmap_rows(lab: LabView, rows: Sequence[Row], say: Say) -> list[PeerRun]:
    runs: list[PeerRun] = []
    for label, timing in NMAP_TIMINGS:
        say(f"{label}: {len(rows)} rows")
        for row in rows:
            address = lab.site.role(row.role).address(row.family)
            seconds, status, out, err = _timed(
                lab, row.source, nmap_argv(address, row.port, row.family, timing))
            if status != 0:
                raise LabFailure(f"{label} in {row.source} exited {status}: "
                                 f"{(err.strip().splitlines() or ['(no message)'])[-1]}")
            state, reason = nmap_state(out, row.port)
            runs.append(PeerRun(label, row, seconds, state, f"{state} ({reason})"))
    return runs


def swaks_rows(lab: LabView, rows: Sequence[Row], say: Say) -> list[PeerRun]:
    say(f"swaks: {len(rows)} rows")
    runs: list[PeerRun] = []
    for number, row in enumerate(rows, 1):
        token = f"port25lab-{lab.run.prefix}-swaks-{number}"
        talk = dialogue_for(PROBES[row.probe], lab, row.target, row.family, token)
        address = lab.site.role(row.role).address(row.family)
        seconds, status, out, err = _timed(lab, row.source,
                                           swaks_argv(address, row.port, row.family, talk),
                                           stdin=talk.message)
        if status in (1, 10):  # our command line or swaks's missing modules: not a result
            raise LabFailure(f"swaks in {row.source} exited {status}: "
                             f"{(err.strip().splitlines() or ['(no message)'])[-1]}")
        runs.append(PeerRun(SWAKS, row, seconds, swaks_outcome(status, out),
                            _said_by_swaks(status, out, err)))
    return runs


def check_installed() -> None:
    missing = [package for tool, package in PACKAGES.items() if shutil.which(tool) is None]
    if missing:
        raise LabFailure(f"{', '.join(missing)} not installed (Debian packages): run "
                         "`make bench-deps`")


def side_by_side(s: Scenario, run: Run, say: Say) -> tuple[ScenarioResult, list[PeerRun]]:
    """Verify the scenario, then run the peers on its SYN and mail rows in the same lab."""
    check_installed()
    syn = [e for e in s.expectations if is_syn_row(e)]
    mail = [e for e in s.expectations if is_mail_row(e)]
    runs: list[PeerRun] = []

    @contextlib.contextmanager
    def boot(site: Site, run: Run) -> Iterator[Lab]:
        with Lab(site, run) as lab:
            yield lab
            # verify has its verdicts by now: each peer row beside the lab's verdict
            runs.extend(nmap_rows(lab, [row_of(lab, e) for e in syn], say))
            runs.extend(swaks_rows(lab, [row_of(lab, e) for e in mail], say))

    outcome = verify(s, run, say, boot=boot)
    if outcome.lab_error:
        raise LabFailure(outcome.lab_error)
    return outcome, runs


# -- the side by side, printed ----------------------------------------------------------
@dataclass(frozen=True)
class Ratio:
    """The lab's time and a peer's on the same rows: ratio = port25lab / peer."""

    peer: str
    rows: int
    lab_s: float
    peer_s: float

    @property
    def ratio(self) -> float:
        return self.lab_s / self.peer_s if self.peer_s else float("inf")

    @property
    def faster(self) -> float:
        return self.peer_s / self.lab_s if self.lab_s else float("inf")


def _key(r: Result) -> tuple[str, str, str, int]:
    return (r.source, r.target, r.probe, r.family)


def _label(r: Row) -> str:
    return f"{r.source} → {r.target} {r.probe}/v{r.family}"


def ratios(outcome: ScenarioResult, runs: Sequence[PeerRun]) -> list[Ratio]:
    """Per peer: the lab's wall time on the rows the peer ran, and the peer's."""
    lab_ms = {_key(r): r.wall_ms for r in outcome.results if r.applicable}
    found = []
    for peer in dict.fromkeys(p.peer for p in runs):
        mine = [p for p in runs if p.peer == peer and p.row.key() in lab_ms]
        found.append(Ratio(peer, len(mine), sum(lab_ms[p.row.key()] for p in mine) / 1000,
                           sum(p.seconds for p in mine)))
    return found


def comparison(outcome: ScenarioResult, runs: Sequence[PeerRun]) -> str:
    """Each row: the lab's verdict and time beside each peer's answer and time; then where
    they differ and why, and the totals as ratios."""
    observed = {_key(r): r for r in outcome.results if r.applicable}
    lines = [f"side by side on {outcome.name}, same lab, same rows, from each row's "
             "source node (one peer command per row)",
             "  nmap -sS -n [-T5] [-6] -p PORT -oX - ADDRESS (host discovery as nmap does "
             "it by default)",
             f"  swaks -4|-6 --server ADDRESS/PORT --ehlo {EHLO_NAME} --timeout "
             f"{SWAKS_TIMEOUT_S}s, the row's TLS, AUTH, --from, --to, and --data - (the "
             "row's message) or --quit-after RCPT"]
    notes: dict[str, list[str]] = {}
    for kind in ("nmap", SWAKS):
        group = [p for p in runs if p.peer.startswith(kind) and p.row.key() in observed]
        peers = list(dict.fromkeys(p.peer for p in group))
        if not group:
            continue
        header = ["row", "port25lab", "ms"] + [c for peer in peers for c in (peer, "s")]
        cells = [header]
        for row in dict.fromkeys(p.row for p in group):
            lab = observed[row.key()]
            line = [_label(row), str(lab.observed), f"{lab.wall_ms:.1f}"]
            for peer in peers:
                p = next(x for x in group if x.peer == peer and x.row == row)
                agrees, why = p.agrees(lab.observed)
                line += [p.said + ("" if agrees else "  ≠"), f"{p.seconds:.2f}"]
                if why:
                    mark = "agrees" if agrees else "DIFFERS"
                    notes.setdefault(f"{peer} {mark}: {why}", []).append(_label(row))
            cells.append(line)
        lines += ["", table(cells, frozenset({2} | {4 + 2 * i for i in range(len(peers))}))]
    for note, rows in notes.items():
        lines.append(f"  {note} ({len(rows)} rows: {', '.join(rows[:3])}"
                     f"{', …' if len(rows) > 3 else ''})")
    disagree = sum(not p.agrees(observed[p.row.key()].observed)[0]
                   for p in runs if p.row.key() in observed)
    lines.append(f"  peer answers that differ from the lab's verdict: {disagree} of "
                 f"{sum(p.row.key() in observed for p in runs)}")
    cells = [["peer", "rows", "port25lab", "peer", "ratio port25lab/peer", "port25lab is"]]
    cells += [[r.peer, str(r.rows), f"{r.lab_s:.2f} s", f"{r.peer_s:.2f} s", f"{r.ratio:.3f}",
               f"{r.faster:.1f}x faster" if r.faster >= 1 else f"{1 / r.faster:.1f}x slower"]
              for r in ratios(outcome, runs)]
    lines += ["", table(cells, frozenset({1, 2, 3, 4, 5})),
              "  port25lab's time is each row's whole probe (its evidence from every side; "
              "an allowed SYN row also reads the banner, a mail row awaits the delivery)"]
    return "\n".join(lines)
