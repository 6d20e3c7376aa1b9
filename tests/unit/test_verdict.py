"""Verdicts from the three sides of the evidence: sender, far side, router counters."""

from __future__ import annotations

from lab.model.evidence import Observation, Sighting
from lab.model.results import Result
from lab.model.verdict import Verdict, decide
from lab.netfilter.counters import Hit
from lab.netfilter.rules import Rule

REMOTE_MX = "198.51.100.25"
MX = "203.0.113.25"
GW_INSIDE = "203.0.113.1"

LOG = Rule("gw", 4, "filter", "FORWARD", 2,
           "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465 -j LOG", "LOG", 6)
DROP = Rule("gw", 4, "filter", "FORWARD", 3,
            "-s 203.0.113.0/24 -i eth0 -p tcp -m multiport --dports 25,465 -j DROP", "DROP", 6)
REJECT = Rule("gw", 4, "filter", "FORWARD", 1,
              "-i eth0 -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset", "REJECT", 1)
POLICY = Rule("gw", 4, "filter", "FORWARD", 0, "", "DROP", 13)
ACCEPT = Rule("gw", 4, "filter", "FORWARD", 1,
              "-s 203.0.113.25/32 -i eth0 -p tcp -m multiport --dports 25,465 -j ACCEPT",
              "ACCEPT", 4)
DNAT = Rule("gw", 4, "nat", "PREROUTING", 1,
            "-s 203.0.113.0/24 -i eth0 -p tcp -m tcp --dport 25 -j DNAT "
            "--to-destination 203.0.113.25:587", "DNAT", 1)

AT_REMOTE_MX = Sighting("remote-mx", REMOTE_MX, 25)
SILENCE = Observation(sport=20001, reply="none")


def _synack(source: str, port: int, banner: str | None = None) -> Observation:
    return Observation(sport=20001, reply="synack", source=source, source_port=port, ttl=63,
                       banner=banner)


def test_allowed_when_target_saw_the_syn_and_sender_got_synack() -> None:
    seen = _synack(REMOTE_MX, 25, "220 remote-mx ESMTP")
    d = decide("remote-mx", REMOTE_MX, 25, seen, [AT_REMOTE_MX], [Hit(ACCEPT, 1)])
    assert d.verdict == Verdict.ALLOWED
    assert d.rule is None
    assert "remote-mx:25 saw the SYN" in d.detail
    assert f"SYN-ACK from {REMOTE_MX} port 25 ttl 63" in d.detail
    assert "220 remote-mx ESMTP" in d.detail


def test_allowed_when_far_side_answers_with_rst() -> None:
    seen = Observation(sport=20001, reply="rst", source=REMOTE_MX, source_port=465)
    d = decide("remote-mx", REMOTE_MX, 465, seen, [Sighting("remote-mx", REMOTE_MX, 465)], [])
    assert d.verdict == Verdict.ALLOWED
    assert f"RST from {REMOTE_MX} port 465" in d.detail


def test_allowed_but_logged_mentions_the_log_rule() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, _synack(REMOTE_MX, 25), [AT_REMOTE_MX], [Hit(LOG, 1)])
    assert d.verdict == Verdict.ALLOWED
    assert f"logged by {LOG.cite()}" in d.detail


def test_blocked_by_drop_rule_cites_it_and_mentions_the_log() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(LOG, 1), Hit(DROP, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DROP.cite()
    assert d.rule == ("gw: iptables -t filter FORWARD#3: -A FORWARD -s 203.0.113.0/24 -i eth0 "
                      "-p tcp -m multiport --dports 25,465 -j DROP")
    assert "dropped before remote-mx:25" in d.detail
    assert "no answer" in d.detail
    assert f"logged by {LOG.cite()}" in d.detail


def test_blocked_by_reject_with_rst_is_rejected() -> None:
    # the RST carries the addressed host's address but the router sent it
    seen = Observation(sport=20001, reply="rst", source=REMOTE_MX, source_port=25)
    d = decide("remote-mx", REMOTE_MX, 25, seen, [], [Hit(REJECT, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == REJECT.cite()
    assert d.detail.startswith("rejected before remote-mx:25")


def test_blocked_by_reject_with_icmp_is_rejected() -> None:
    seen = Observation(sport=20001, reply="icmp", source=GW_INSIDE, icmp="unreachable/code 3")
    d = decide("remote-mx", REMOTE_MX, 465, seen, [], [Hit(REJECT, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == REJECT.cite()
    assert "rejected before remote-mx:465" in d.detail
    assert f"ICMP unreachable/code 3 from {GW_INSIDE}" in d.detail


def test_blocked_by_chain_policy_when_no_rule_matched() -> None:
    d = decide("sink", "198.51.100.80", 25, SILENCE, [], [Hit(POLICY, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == "gw: iptables -t filter -P FORWARD DROP (policy)"
    assert "dropped before sink:25" in d.detail


def test_rule_is_preferred_over_the_chain_policy() -> None:
    # the policy's counter comes first in table order, yet the rule decided
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(POLICY, 1), Hit(DROP, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DROP.cite()


def test_far_side_saw_syn_but_answer_was_dropped() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [AT_REMOTE_MX], [Hit(DROP, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DROP.cite()
    assert "saw the SYN but its answer was dropped" in d.detail


def test_diverted_when_another_role_answers_for_the_address() -> None:
    # DNAT sends remote-mx:25 to mx:587; conntrack answers with remote-mx's address
    seen = _synack(REMOTE_MX, 25, "220 mx ESMTP submission")
    d = decide("remote-mx", REMOTE_MX, 25, seen, [Sighting("mx", MX, 587)], [Hit(DNAT, 1)])
    assert d.verdict == Verdict.DIVERTED
    assert d.rule == DNAT.cite()
    assert d.rule == ("gw: iptables -t nat PREROUTING#1: -A PREROUTING -s 203.0.113.0/24 "
                      "-i eth0 -p tcp -m tcp --dport 25 -j DNAT "
                      "--to-destination 203.0.113.25:587")
    assert "answered by mx:587 instead of remote-mx:25" in d.detail
    assert "220 mx ESMTP submission" in d.detail


def test_diverted_to_another_port_of_the_same_role() -> None:
    redirect = Rule("gw", 4, "nat", "PREROUTING", 1, "-p tcp --dport 25 -j REDIRECT "
                    "--to-ports 587", "REDIRECT", 1)
    d = decide("mx", MX, 25, _synack(MX, 25), [Sighting("mx", MX, 587)], [Hit(redirect, 1)])
    assert d.verdict == Verdict.DIVERTED
    assert d.rule == redirect.cite()
    assert "answered by mx:587 instead of mx:25" in d.detail


def test_error_without_any_evidence() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [])
    assert d.verdict == Verdict.ERROR
    assert d.rule is None
    assert "no far side saw the SYN and no router rule matched it" in d.detail


def test_error_when_a_non_dropping_rule_is_the_only_evidence() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(LOG, 1), Hit(ACCEPT, 1)])
    assert d.verdict == Verdict.ERROR


def test_error_when_far_side_saw_it_but_no_answer_and_no_drop() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [AT_REMOTE_MX], [Hit(LOG, 1)])
    assert d.verdict == Verdict.ERROR
    assert d.rule is None
    assert "saw the SYN but the sender saw no answer" in d.detail
    assert "no rule explains it" in d.detail


def test_blocked_when_rewritten_but_sender_got_nothing() -> None:
    # the DNAT target shares the sender's LAN and answers it directly: nothing opens
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [Sighting("mx", MX, 587)], [Hit(DNAT, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DNAT.cite()
    assert d.detail == (f"rewritten to mx:587, but the sender saw no answer instead of an "
                        f"answer from {REMOTE_MX}: the diverted connection never opens")


def test_blocked_when_rewritten_and_the_answer_comes_from_another_address() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, _synack(MX, 587), [Sighting("mx", MX, 587)],
               [Hit(DNAT, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DNAT.cite()
    assert "rewritten to mx:587" in d.detail
    assert f"the sender saw SYN-ACK from {MX} port 587 ttl 63 instead of an answer from " \
        f"{REMOTE_MX}" in d.detail
    assert d.detail.endswith("the diverted connection never opens")


def test_blocked_when_rewritten_mentions_the_log_rule() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [Sighting("mx", MX, 587)],
               [Hit(LOG, 1), Hit(DNAT, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DNAT.cite()
    assert d.detail.endswith(f"never opens; logged by {LOG.cite()}")


def test_error_when_it_arrived_elsewhere_without_a_rewriting_rule() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [Sighting("mx", MX, 587)], [Hit(LOG, 1)])
    assert d.verdict == Verdict.ERROR
    assert d.rule is None
    assert d.detail == ("arrived at mx:587 instead of remote-mx:25 with no rule rewriting it; "
                        "sender: no answer")


def test_error_when_it_arrived_elsewhere_and_another_address_answered_without_a_rule() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, _synack(MX, 587), [Sighting("mx", MX, 587)], [])
    assert d.verdict == Verdict.ERROR
    assert d.rule is None
    assert "with no rule rewriting it" in d.detail


def test_diverted_needs_the_answer_from_the_address_aimed_at_even_without_a_rule() -> None:
    # the sender's own view decides DIVERTED; the rule is cited when there is one
    d = decide("remote-mx", REMOTE_MX, 25, _synack(REMOTE_MX, 25), [Sighting("mx", MX, 587)], [])
    assert d.verdict == Verdict.DIVERTED
    assert d.rule is None


def test_an_expected_error_never_passes() -> None:
    # `error` means the lab could not decide: even when it was expected, it is no pass
    def result(expected: Verdict, observed: Verdict) -> Result:
        return Result("client1", "remote-mx", "smtp", 4, expected, observed, None, "", 0.0)
    assert result(Verdict.REFUSED, Verdict.REFUSED).passed
    assert not result(Verdict.ERROR, Verdict.ERROR).passed
    assert not result(Verdict.BLOCKED, Verdict.ALLOWED).passed


def test_observation_describe() -> None:
    assert SILENCE.describe() == "no answer"
    assert _synack(REMOTE_MX, 25).describe() == f"SYN-ACK from {REMOTE_MX} port 25 ttl 63"
    assert Observation(1, "icmp", GW_INSIDE, icmp="unreachable/code 13").describe() == \
        f"ICMP unreachable/code 13 from {GW_INSIDE}"


# --- tunnels: nobody answers a tunnelled SYN, so arriving at the relay is enough ------------

RELAY = "198.51.100.35"
CARRIED = "TCP to 2001:db8:ffff:1::25 port 25"
TEREDO_DROP = Rule("gw", 4, "filter", "FORWARD", 5,
                   '-s 203.0.113.0/24 -i eth0 -p udp -m u32 --u32 "0x4&0x3fff=0x0" -j DROP',
                   "DROP", 1)
SIX_IN_FOUR_DROP = Rule("gw", 4, "filter", "FORWARD", 8,
                        '-s 203.0.113.0/24 -i eth0 -p ipv6 -m u32 --u32 "0x4&0x3fff=0x0" -j DROP',
                        "DROP", 1)
PORT_UNREACHABLE = Observation(sport=20001, reply="icmp", source=RELAY,
                               icmp="unreachable/code 3")


def test_tunnel_arrived_is_allowed_with_what_it_carried() -> None:
    d = decide("relay", RELAY, 3544, SILENCE, [Sighting("relay", RELAY, 3544, CARRIED)], [],
               expects_answer=False)
    assert d.verdict == Verdict.ALLOWED
    assert d.rule is None
    assert d.detail == f"relay:3544 received it, carrying {CARRIED}; sender: no answer"


def test_tunnel_arrived_is_allowed_whatever_the_sender_saw() -> None:
    # the relay's port is closed: it answers with an ICMP error, yet the packet got through
    sightings = [Sighting("relay", RELAY, 3545, CARRIED)]
    d = decide("relay", RELAY, 3545, PORT_UNREACHABLE, sightings, [Hit(LOG, 1)],
               expects_answer=False)
    assert d.verdict == Verdict.ALLOWED
    assert "relay:3545 received it" in d.detail
    assert f"sender: ICMP unreachable/code 3 from {RELAY}" in d.detail
    assert f"logged by {LOG.cite()}" in d.detail
    # where an answer is expected, the same evidence does not decide
    assert decide("relay", RELAY, 3545, PORT_UNREACHABLE, sightings,
                  [Hit(LOG, 1)]).verdict == Verdict.ERROR


def test_tunnel_arrived_without_a_readable_inner_packet() -> None:
    # a first fragment: the relay saw the datagram, the IPv6 packet was not whole
    d = decide("relay", RELAY, 3544, SILENCE, [Sighting("relay", RELAY, 3544)], [],
               expects_answer=False)
    assert d.verdict == Verdict.ALLOWED
    assert d.detail == "relay:3544 received it; sender: no answer"
    assert "carrying" not in d.detail


def test_tunnel_arrived_at_another_port_is_not_arrival() -> None:
    # Teredo to 3545 seen at the relay does not count for a probe to 3544
    d = decide("relay", RELAY, 3544, SILENCE, [Sighting("relay", RELAY, 3545, CARRIED)],
               [Hit(TEREDO_DROP, 1)], expects_answer=False)
    assert d.verdict != Verdict.ALLOWED


def test_tunnel_dropped_is_blocked_citing_the_rule() -> None:
    d = decide("relay", RELAY, 3544, SILENCE, [], [Hit(TEREDO_DROP, 1), Hit(POLICY, 1)],
               expects_answer=False)
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == TEREDO_DROP.cite()
    assert d.detail == "dropped before relay:3544; sender: no answer"


def test_tunnel_neither_arrived_nor_dropped_is_an_error() -> None:
    d = decide("relay", RELAY, 3544, SILENCE, [], [Hit(ACCEPT, 1)], expects_answer=False)
    assert d.verdict == Verdict.ERROR
    assert d.rule is None


def test_six_in_four_arrived_shows_no_port() -> None:
    carried = "TCP to 2001:db8:ffff:1::25 port 465"
    d = decide("relay", RELAY, 0, SILENCE, [Sighting("relay", RELAY, 0, carried)], [],
               expects_answer=False)
    assert d.verdict == Verdict.ALLOWED
    assert d.detail == f"relay received it, carrying {carried}; sender: no answer"
    assert ":0" not in d.detail


def test_six_in_four_dropped_shows_no_port() -> None:
    # protocol 41 has no port: the lab passes 0, which is not a port to print
    d = decide("relay", RELAY, 0, SILENCE, [], [Hit(SIX_IN_FOUR_DROP, 1)],
               expects_answer=False)
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == SIX_IN_FOUR_DROP.cite()
    assert d.detail.startswith("dropped before relay")
    assert ":0" not in d.detail


def test_sighting_inner_defaults_to_nothing() -> None:
    assert Sighting("relay", RELAY, 3544).inner == ""
    assert Sighting("remote-mx", REMOTE_MX, 25, "") == AT_REMOTE_MX


def test_rewritten_then_dropped_names_the_rewrite_and_its_new_destination() -> None:
    # DNAT to mx:25 with FORWARD's 25/465 drop behind it: the drop decides, but the
    # user must learn that the packet was no longer going where she probed.
    dnat25 = Rule("gw", 4, "nat", "PREROUTING", 1,
                  "-s 203.0.113.0/24 -i eth0 -p tcp -m tcp --dport 25 -j DNAT "
                  "--to-destination 203.0.113.25:25", "DNAT", 1)
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(dnat25, 1), Hit(DROP, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == DROP.cite()
    assert f"rewritten to 203.0.113.25:25 by {dnat25.cite()}, then dropped" in d.detail
    assert "before remote-mx:25" in d.detail


def test_redirect_then_dropped_names_the_router_port() -> None:
    redirect = Rule("gw", 6, "nat", "PREROUTING", 1,
                    "-i eth0 -p tcp -m tcp --dport 25 -j REDIRECT --to-ports 2525",
                    "REDIRECT", 1)
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(redirect, 1), Hit(POLICY, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert "rewritten to the router's own port 2525" in d.detail


def test_dropped_without_a_rewrite_says_nothing_of_rewrites() -> None:
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(DROP, 1)])
    assert "rewritten" not in d.detail


def test_rules_of_a_known_source_are_named_with_their_line_in_the_evidence() -> None:
    # a DNAT then a drop, both loaded from the user's script: both of her lines are named
    dnat = Rule("gw", 4, "nat", "PREROUTING", 1,
                "-s 203.0.113.10/32 -i eth0 -p tcp -m tcp --dport 25 -j DNAT "
                "--to-destination 198.51.100.80:25", "DNAT", 1, source="rules.sh:12")
    drop = Rule("gw", 4, "filter", "FORWARD", 2, "-d 198.51.100.80/32 -i eth0 -p tcp -m tcp "
                "--dport 25 -j DROP", "DROP", 7, source="rules.sh:14")
    log = Rule("gw", 4, "filter", "FORWARD", 1, "-i eth0 -p tcp -j LOG", "LOG", 6,
               source="rules.sh:13")
    d = decide("remote-mx", REMOTE_MX, 25, SILENCE, [], [Hit(dnat, 1), Hit(log, 1),
                                                         Hit(drop, 1)])
    assert d.verdict == Verdict.BLOCKED
    assert d.rule == drop.cite()  # the kernel's rendering, as every report cites it
    assert (f"rewritten to 198.51.100.80:25 by {dnat.cite()} (from rules.sh:12), then "
            "dropped before remote-mx:25") in d.detail
    assert d.detail.endswith(f"; logged by {log.cite()} (from rules.sh:13)")
