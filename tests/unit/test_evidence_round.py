"""The evidence round over a fake lab: when it asks again, when the recorders get time,
and what a path probe decides from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lab.engine.probing import FIRST_WAIT, SECOND_WAIT, path_probe
from lab.engine.round import FarSideKey, evidence_round
from lab.model.evidence import Endpoint, Observation, Sighting
from lab.model.verdict import Verdict
from probes.registry import PROBES
from probes.requests import GuessAnswer, GuessRequest, PacketAnswer, SynRequest, TunnelRequest
from tests.unit.fake_lab import FakeLab, Reply, rule, wire

REMOTE_MX = "198.51.100.25"
RELAY = "198.51.100.35"
DROP = rule("gw", "FORWARD", 3, "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport "
            "--dports 25,465 -j DROP")
REJECT = rule("gw", "FORWARD", 1, "-i eth0 -p tcp -m tcp --dport 25 -j REJECT "
              "--reject-with tcp-reset")
LOG = rule("gw", "FORWARD", 2, "-p tcp -m tcp --dport 25 -j NFLOG --nflog-group 25")
SYN = SynRequest(4, REMOTE_MX, 25, 20001)
AT_REMOTE_MX = Sighting("remote-mx", REMOTE_MX, 25)
SILENCE = PacketAnswer("none", 20001, 25.3)


def _lab(tmp_path: Path) -> FakeLab:
    return FakeLab(tmp_path, rules=(REJECT, LOG, DROP))


def _waits(lab: FakeLab) -> list[float]:
    return [wire(r)["wait"] for r in lab.requests("client1")]


def test_an_answer_at_once_is_asked_once_and_the_recorders_get_time(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    synack = PacketAnswer("synack", 20001, 0.4, REMOTE_MX, 25, 62)
    lab.answers("client1", Reply(synack, seen=(AT_REMOTE_MX,)))
    got = evidence_round(lab, "client1", SYN, 4, FarSideKey("tcp", 20001), 0.025, 1.5)
    assert got.answer == synack
    # the request went out as the agent reads it, with the first wait
    assert [wire(r) for r in lab.requests("client1")] == [
        {"op": "syn", "family": 4, "dst": REMOTE_MX, "dport": 25, "sport": 20001,
         "wait": 0.025}]
    assert got.sightings == (AT_REMOTE_MX,)
    assert got.rule_hits == () and not got.dropped
    assert lab.far.looks == [(20001, True, "tcp")]


def test_silence_a_drop_explains_is_not_asked_again(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.answers("client1", Reply(SILENCE, counted=(LOG, DROP)))
    got = evidence_round(lab, "client1", SYN, 4, FarSideKey("tcp", 20001), 0.025, 1.5)
    assert _waits(lab) == [0.025]
    assert [(h.rule.key, h.packets) for h in got.rule_hits] == [(LOG.key, 1), (DROP.key, 1)]
    assert got.dropped
    # a rule decided it: the recorders are read once, not waited for
    assert lab.far.looks == [(20001, False, "tcp")]


def test_silence_no_rule_explains_is_asked_once_more_with_the_second_wait(
        tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    late = PacketAnswer("synack", 20001, 1003.0, REMOTE_MX, 25, 62)
    lab.answers("client1", Reply(SILENCE), Reply(late, seen=(AT_REMOTE_MX,)),
                Reply(SILENCE))
    got = evidence_round(lab, "client1", SYN, 4, FarSideKey("tcp", 20001), 0.025, 1.5)
    assert _waits(lab) == [0.025, 1.5]  # one retry, not two
    assert got.answer == late and got.sightings == (AT_REMOTE_MX,)
    assert lab.far.looks == [(20001, True, "tcp")]


def test_the_retry_counts_from_before_the_first_ask(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.answers("client1", Reply(SILENCE), Reply(SILENCE, counted=(DROP,)))
    got = evidence_round(lab, "client1", SYN, 4, FarSideKey("tcp", 20001), 0.025, 1.5)
    assert _waits(lab) == [0.025, 1.5]
    assert [h.rule.key for h in got.rule_hits] == [DROP.key] and got.dropped
    assert lab.far.looks == [(20001, False, "tcp")]


def test_a_rejects_rst_is_blocked_by_the_reject_without_waiting(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    # the router answers for remote-mx: the RST carries its address, the counter decides
    rst = PacketAnswer("rst", 20001, 0.3, REMOTE_MX, 25, 63)
    lab.answers("client1", Reply(rst, counted=(REJECT,)))
    net = path_probe(lab, "client1", "remote-mx", PROBES["smtp"], 4, 20001)
    assert _waits(lab) == [FIRST_WAIT]
    assert lab.far.looks == [(20001, False, "tcp")]
    assert net.decision.verdict == Verdict.BLOCKED
    assert net.decision.rule == REJECT.cite()
    assert net.decision.detail == ("rejected before remote-mx:25; sender: RST from "
                                   "198.51.100.25 port 25 ttl 63")
    assert net.evidence.addressed == Endpoint("remote-mx", REMOTE_MX, 25)
    assert net.evidence.sender == Observation(20001, "rst", REMOTE_MX, 25, 63, elapsed_ms=0.3)
    assert [(h.rule, h.packets) for h in net.evidence.rule_hits] == [
        (replace(REJECT, packets=1), 1)]


def test_a_path_probe_waits_out_silence_with_the_second_wait(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.answers("client1", Reply(SILENCE), Reply(SILENCE))
    net = path_probe(lab, "client1", "remote-mx", PROBES["smtp"], 4, 20001)
    assert _waits(lab) == [FIRST_WAIT, SECOND_WAIT]
    assert net.decision.verdict == Verdict.ERROR  # nothing explains it: never a pass


def test_a_dns_query_is_recorded_by_its_udp_port(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    sink = Sighting("sink", "198.51.100.80", 53)
    lab.answers("client1", Reply(PacketAnswer("none", 20001), seen=(sink,), recorded_as="udp"),
                Reply(PacketAnswer("none", 20001)))
    net = path_probe(lab, "client1", "sink", PROBES["dns"], 4, 20001)
    assert [wire(r)["op"] for r in lab.requests("client1")] == ["udp", "udp"]
    assert lab.far.looks == [(20001, True, "udp")]
    # nobody has to answer a datagram: arriving is enough
    assert net.decision.verdict == Verdict.ALLOWED


def test_without_a_second_wait_silence_is_final(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    relay = Sighting("relay", RELAY, 3544, "TCP to 2001:db8:ffff:1::25 port 25")
    lab.answers("client1", Reply(PacketAnswer("none", 20001), seen=(relay,),
                                 recorded_as="udp"))
    request = TunnelRequest("teredo", "plain", RELAY, "2001:db8:ffff:1::25", 20001)
    got = evidence_round(lab, "client1", request, 4, FarSideKey("udp", 20001), 0.025)
    assert _waits(lab) == [0.025]
    assert got.sightings == (relay,)


def test_a_round_without_a_far_side_reads_only_counters(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.answers("remote-mx", Reply(GuessAnswer(()), counted=(DROP,)))
    got = evidence_round(lab, "remote-mx", GuessRequest("203.0.113.25", 587, ("alice",)), 4,
                         None, 3.0)
    assert [wire(r)["timeout"] for r in lab.requests("remote-mx")] == [3.0]
    assert lab.far.looks == []
    assert [h.rule.key for h in got.rule_hits] == [DROP.key]


def test_observation_from_the_agents_answer() -> None:
    answer = PacketAnswer("icmp", 20001, 0.5, "203.0.113.1", icmp="unreachable/code 3", ttl=64)
    seen = Observation.from_agent(answer)
    assert seen == Observation(20001, "icmp", "203.0.113.1", None, 64, "unreachable/code 3",
                               elapsed_ms=0.5)
    assert seen.describe() == "ICMP unreachable/code 3 from 203.0.113.1 ttl 64"
