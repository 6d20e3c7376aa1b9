"""Evidence stays tied to its probe behind NAT: every probe writes its source port where NAT
leaves it alone (its tag), the far side finds it by that, and a 6in4 probe starts as a new
flow on every router."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP

from lab.engine.probing import probe_once
from lab.model.evidence import Sighting
from lab.model.scenario import Expectation
from lab.model.verdict import Verdict
from lab.runtime.lab import FarSide
from lab.services.recorder import parse
from probes.requests import PacketAnswer
from probes.tcp import dns_query, syn
from probes.tunnel import SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS, build
from tests.unit.fake_lab import FakeLab, Reply

MACS = bytes.fromhex("02000000000102000000000a")
WAN, SINK, RELAY = "198.51.100.2", "198.51.100.80", "198.51.100.35"
TARGET6 = "2001:db8:ffff:1::25"
SPORT, REWRITTEN = 20001, 41733  # the probe's port; the one MASQUERADE gave it


def _ether(packet: Any) -> bytes:
    return MACS + b"\x08\x00" + bytes(packet)


def _masqueraded(packet: Any) -> Any:
    """The packet as it leaves a MASQUERADE router that rewrote its source and port."""
    out = IP(bytes(packet))
    out.src = WAN
    del out.chksum
    layer = out[TCP] if out.haslayer(TCP) else out[UDP]
    layer.sport = REWRITTEN
    del layer.chksum
    return IP(bytes(out))


def _tagged(packet: Any) -> dict[str, Any]:
    facts = parse(_ether(packet), tagged=True)
    assert facts is not None
    return facts


def test_each_probe_writes_its_port_where_nat_leaves_it_alone() -> None:
    first = _tagged(_masqueraded(syn(4, SINK, 80, SPORT)))
    assert (first["src"], first["sport"], first["tag"]) == (WAN, REWRITTEN, SPORT)
    query = _tagged(_masqueraded(dns_query(4, SINK, SPORT)))
    assert (query["sport"], query["dport"], query["tag"]) == (REWRITTEN, 53, SPORT)
    teredo = build("teredo", TEREDO_VARIANTS["plain"], RELAY, TARGET6, SPORT, SPORT)
    assert _tagged(_masqueraded(IP(teredo[0])))["tag"] == SPORT
    # the first fragment has the UDP header but no TCP: its IPv4 id is the tag
    piece, *later = build("teredo", TEREDO_VARIANTS["fragment"], RELAY, TARGET6, SPORT, SPORT)
    assert later and _tagged(_masqueraded(IP(piece)))["tag"] == SPORT
    # without `tagged`, the facts are what they always were
    assert "tag" not in (parse(_ether(syn(4, SINK, 80, SPORT))) or {})


def _far_side(tmp_path: Path, *records: tuple[str, dict[str, Any]]) -> FarSide:
    files = {role: tmp_path / f"{role}.jsonl" for role in ("sink", "relay", "remote-mx")}
    for path in files.values():
        path.write_text(json.dumps({"ready": True}) + "\n")
    for role, facts in records:
        with files[role].open("a") as f:
            f.write(json.dumps({**facts, "t": 1.0, "if": 2}) + "\n")
    return FarSide(files)


def test_the_far_side_finds_a_probe_whose_port_nat_rewrote(tmp_path: Path) -> None:
    far = _far_side(
        tmp_path, ("sink", _tagged(_masqueraded(syn(4, SINK, 80, SPORT)))),
        ("sink", _tagged(_masqueraded(dns_query(4, SINK, SPORT + 1)))),
        ("relay", _tagged(_masqueraded(IP(build(
            "teredo", TEREDO_VARIANTS["control-80"], RELAY, TARGET6, SPORT + 2,
            SPORT + 2)[0])))),
        ("relay", _tagged(_masqueraded(IP(build(
            "teredo", TEREDO_VARIANTS["fragment"], RELAY, TARGET6, SPORT + 3,
            SPORT + 3)[0])))))
    assert far.sightings(SPORT, expect=False) == [Sighting("sink", SINK, 80)]
    assert far.sightings(SPORT + 1, expect=False, kind="udp") == [Sighting("sink", SINK, 53)]
    assert far.sightings(SPORT + 2, expect=False, kind="udp") == [
        Sighting("relay", RELAY, 3544, f"TCP to {TARGET6} port 80")]
    assert far.sightings(SPORT + 3, expect=False, kind="udp") == [Sighting("relay", RELAY, 3544)]
    # the port NAT chose names no probe: another probe that used it is not mistaken for it
    assert far.sightings(REWRITTEN, expect=False) == []
    assert far.sightings(REWRITTEN, expect=False, kind="udp") == []


def test_a_kernel_connection_is_found_by_its_port(tmp_path: Path) -> None:
    # over a Teredo tunnel no NAT is on the way inside; the kernel chose the sequence number
    kernel = _tagged(syn(4, SINK, 25, SPORT, seq=3_141_592_653))
    far = _far_side(tmp_path, ("remote-mx", kernel))
    assert far.sightings(SPORT, expect=False, kind="connect") == [Sighting("remote-mx", SINK, 25)]
    assert far.sightings(SPORT, expect=False) == []


def test_a_6in4_probe_starts_as_a_new_flow_on_every_router(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path / "run", topology="dmz")
    lab.answers("client1", Reply(PacketAnswer("none", SPORT, 3.0),
                                 seen=(Sighting("relay", RELAY, 0, f"TCP to {TARGET6} port 80"),),
                                 recorded_as="6in4"))
    expectation = Expectation("client1", "remote-mx", "tunnel6in4", 4, Verdict.ALLOWED,
                              "control-80")
    assert SIX_IN_FOUR_VARIANTS["control-80"].inner_port == 80
    result = probe_once(lab, expectation, SPORT)
    assert result.observed == Verdict.ALLOWED
    tool = shutil.which("conntrack", path="/usr/sbin:/sbin")
    assert lab.executed == [("inner", [tool, "-D", "-p", "41"]),
                            ("outer", [tool, "-D", "-p", "41"])]
