"""verify()'s loop over a fake lab: policy loaded, agents started, one probe per
expectation with its own source port, verdicts with their evidence."""

from __future__ import annotations

from pathlib import Path

from lab.engine.labview import PacketWatch
from lab.engine.verify import verify
from lab.model import scenario
from lab.model.evidence import Sighting
from lab.model.scenario import Scenario
from lab.model.verdict import Verdict
from lab.netfilter import origin
from lab.netfilter.script import netfilter_tool
from lab.runtime.lifecycle import Run
from lab.userfiles import shown
from probes.requests import PacketAnswer
from tests.unit.fake_lab import FakeLab, Reply, rule, wire

REMOTE_MX, SINK = "198.51.100.25", "198.51.100.80"
DROP = rule("gw", "FORWARD", 1, "-s 203.0.113.0/24 -i eth0 -p tcp -m tcp --dport 25 -j DROP")
RULES = "iptables -A FORWARD -s 203.0.113.0/24 -i eth0 -p tcp --dport 25 -j DROP\n"
EXPECT = ("  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n"
          "  - {from: mx, to: sink, probes: [web], families: [4], verdict: allowed}\n"
          "  - {from: client2, to: sink, probes: [web], families: [4], verdict: blocked}\n")


def _scenario(tmp_path: Path) -> Scenario:
    folder = tmp_path / "drop-25"
    folder.mkdir()
    (folder / "rules.sh").write_text(RULES)
    (folder / "scenario.yaml").write_text(
        f"topology: screened-host\npolicy:\n  gw: [rules.sh]\nexpect:\n{EXPECT}")
    return scenario.load(str(folder))


def _answering(lab: FakeLab) -> None:
    """client1's SMTP is dropped; mx's and client2's web reach the sink."""
    lab.answers("client1", Reply(PacketAnswer("none", 20000, 25.1), counted=(DROP,)))
    lab.answers("mx", Reply(PacketAnswer("synack", 20001, 0.3, SINK, 80, 62),
                            seen=(Sighting("sink", SINK, 80),)))
    lab.answers("client2", Reply(PacketAnswer("synack", 20002, 0.3, SINK, 80, 62),
                                 seen=(Sighting("sink", SINK, 80),)))


def test_verify_probes_every_expectation_over_a_fake_lab(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path / "run", rules=(DROP,))
    _answering(lab)  # client2's web is not blocked: the sink answers, the expectation fails
    said: list[str] = []
    run = Run("p25-fa4e00", tmp_path / "run")

    outcome = verify(_scenario(tmp_path), run, said.append, boot=lambda _t, _r: lab)

    assert outcome.lab_error is None and outcome.load_errors == ()
    # the policy went to gw as the admin wrote it, run by the lab's own tool (with -w:
    # wait for the xtables lock), its rule tagged with its line (lab.netfilter.origin)
    tag = origin.tag(shown(tmp_path / "drop-25" / "rules.sh"), 1)
    assert ("gw", [netfilter_tool("iptables"), "-w", "-A", "FORWARD",
                   "-m", "comment", "--comment", tag, "-s", "203.0.113.0/24",
                   "-i", "eth0", "-p", "tcp", "--dport", "25", "-j", "DROP"]) in lab.executed
    assert lab.started == ["client1", "client2", "mx"]
    # one source port per probe, in order
    assert [(role, wire(r)["sport"]) for role, r in lab.asked] == [
        ("client1", 20000), ("mx", 20001), ("client2", 20002)]
    smtp, web, leak = outcome.results
    assert (smtp.observed, smtp.rule) == (Verdict.BLOCKED, DROP.cite())
    assert smtp.detail == "dropped before remote-mx:25; sender: no answer"
    assert smtp.evidence.sender is not None and smtp.evidence.sender.reply == "none"
    assert (web.observed, web.passed) == (Verdict.ALLOWED, True)
    assert web.evidence.far_side == (Sighting("sink", SINK, 80),)
    assert (leak.observed, leak.expected, leak.passed) == (Verdict.ALLOWED, Verdict.BLOCKED,
                                                          False)
    assert not outcome.passed
    assert "drop-25: [3/3] client2 → sink web/v4: allowed (expected blocked)" in said
    assert all(r.wall_ms > 0 for r in outcome.results)


def test_a_lab_failure_mid_run_is_reported_with_the_results_so_far(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path / "run", rules=(DROP,))
    lab.answers("client1", Reply(PacketAnswer("none", 20000, 25.1), counted=(DROP,)))
    # mx's agent never answers
    outcome = verify(_scenario(tmp_path), Run("p25-fa4e00", tmp_path / "run"),
                     lambda _: None, boot=lambda _t, _r: lab)
    assert outcome.lab_error == "probe agent on mx did not answer"
    assert [r.probe for r in outcome.results] == ["smtp"]
    assert not outcome.passed


def test_the_tracers_start_before_the_first_probe_once_the_policy_is_in(
        tmp_path: Path) -> None:
    # started lazily, the routers' tracers cost the first probe 60 ms of its verdict
    events: list[str] = []

    class Watched(FakeLab):
        def packet_evidence(self, tag: int) -> PacketWatch | None:
            events.append(f"tracers for {tag}")
            return super().packet_evidence(tag)

        def start_agents(self, roles: list[str]) -> None:
            events.append("agents")
            super().start_agents(roles)

        def exec(self, role: str, argv: list[str], stdin: str | None = None,
                 timeout: float = 30) -> tuple[int, str, str]:
            events.append(f"exec on {role}")
            return super().exec(role, argv, stdin, timeout)

    lab = Watched(tmp_path / "run", rules=(DROP,))
    _answering(lab)
    outcome = verify(_scenario(tmp_path), Run("p25-fa4e00", tmp_path / "run"),
                     lambda _: None, boot=lambda _t, _r: lab)
    assert outcome.lab_error is None
    # the policy came first (the tracers see its tables), then tracers and agents at once
    assert events[0] == "exec on gw"
    assert set(events[1:3]) == {"tracers for 0", "agents"}
    assert events[3:] == ["tracers for 20000", "tracers for 20001", "tracers for 20002"]
