"""Clients in bulk: a site file's `clients:` ranges (light clients), and sampling them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import scenario, site_file
from lab.model.scenario import sample
from lab.model.site import Site
from lab.model.verdict import Verdict
from tests.support import PROJECT

SITE = """\
name: campus
segments:
  lan: {prefixes: [192.0.2.0/24, "2001:db8:1::/64"]}
  v6only: {prefixes: ["2001:db8:2::/64"]}
  wan: {outside: true, prefixes: [198.51.100.0/24, "2001:db8:ffff::/64"]}
routers:
  gw:
    policy: true
    interfaces:
      eth0: {segment: lan, addresses: [192.0.2.1/24, "2001:db8:1::1/64"]}
      eth1: {segment: v6only, addresses: ["2001:db8:2::1/64"]}
      eth2: {segment: wan, addresses: [198.51.100.1/24, "2001:db8:ffff::1/64"]}
hosts:
  mx: {role: mx, segment: lan, addresses: [192.0.2.25/24, "2001:db8:1::25/64"]}
  remote-mx: {role: remote-mx, segment: wan, addresses: [198.51.100.25/24, "2001:db8:ffff::25/64"]}
clients:
  - {segment: lan, count: 3, addresses: [192.0.2.250/24, "2001:db8:1::fe/64"]}
  - {segment: v6only, count: 4, addresses: ["2001:db8:2::10/64"]}
"""


def _load(tmp_path: Path, text: str = SITE) -> Site:
    path = tmp_path / "campus.yaml"
    path.write_text(text)
    return site_file.load(path)


def test_ranges_are_light_clients_numbered_on_with_the_next_addresses(tmp_path: Path) -> None:
    site = _load(tmp_path)
    assert site.clients == tuple(f"client{n}" for n in range(1, 8))
    assert [n.name for n in site.light_nodes] == list(site.clients)
    assert site.role("client1").addresses() == ("192.0.2.250", "2001:db8:1::fe")
    assert site.role("client3").addresses() == ("192.0.2.252", "2001:db8:1::100")
    assert site.role("client4").addresses() == ("2001:db8:2::10",)
    assert site.role("client7").addresses() == ("2001:db8:2::13",)
    # routes computed as for any host: the IPv6-only ones have an IPv6 default only
    assert [r.via for r in site.role("client7").routes] == ["2001:db8:2::1"]
    assert [r.via for r in site.role("client2").routes] == ["192.0.2.1", "2001:db8:1::1"]
    assert site.owner_of("2001:db8:2::13") == "client7"
    assert not site.role("mx").light


def test_a_dumped_site_reads_back_with_its_light_clients(tmp_path: Path) -> None:
    site = _load(tmp_path)
    again = tmp_path / "again.yaml"
    again.write_text(site_file.dump(site))
    assert site_file.load(again) == site


@pytest.mark.parametrize(("change", "said"), [
    # 192.0.2.250 + 5 is 192.0.2.255, the broadcast address
    ("count: 3, addresses: [192.0.2.250", ":17: clients: range #1: its last client would get "
     "192.0.2.255, past the end of 192.0.2.0/24: give fewer clients or an earlier first "
     "address"),
    ("count: 3, addresses: [192.0.2.2", None),
    ("count: 0,", ":17: clients: range #1: count: 0 must be a whole number, 1 or more"),
    ("count: 3, first: 2,", ":18: clients: range #2: client2 is taken (by a host or an "
     "earlier range): give `first:` a free number"),
    ("segment: lan, count: 3", ":17: clients: range #1: eth0: unknown segment 'nowhere'"),
    ("{segment: lan,", ":17: clients: range #1: unknown key 'colour'"),
])
def test_a_bad_range_is_one_line(tmp_path: Path, change: str, said: str | None) -> None:
    text = {
        "count: 3, addresses: [192.0.2.250": SITE.replace("count: 3, addresses: [192.0.2.250",
                                                          "count: 6, addresses: [192.0.2.250"),
        "count: 3, addresses: [192.0.2.2": SITE.replace("192.0.2.250/24", "192.0.2.26/24"),
        "count: 0,": SITE.replace("count: 3,", "count: 0,"),
        "count: 3, first: 2,": SITE.replace("count: 4,", "count: 4, first: 2,"),
        "segment: lan, count: 3": SITE.replace("segment: lan, count: 3",
                                               "segment: nowhere, count: 3"),
        "{segment: lan,": SITE.replace("{segment: lan, count", "{colour: red, segment: lan, "
                                                              "count"),
    }[change]
    if said is None:
        assert len(_load(tmp_path, text).clients) == 7
        return
    with pytest.raises(BadInput) as caught:
        _load(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'campus.yaml'}{said}")


def test_only_a_client_may_be_light(tmp_path: Path) -> None:
    text = SITE.replace('{role: mx, segment: lan,', '{role: mx, light: true, segment: lan,')
    with pytest.raises(BadInput, match=r"hosts: mx: light: .* only a client may be light"):
        _load(tmp_path, text)


def test_a_sample_is_the_same_every_time_and_keeps_the_named_ones() -> None:
    sources = [f"client{n}" for n in range(1, 1001)]
    first = sample(sources, ["client1000", "client1"], 12, "sample 25")
    assert first == sample(sources, ["client1000", "client1"], 12, "sample 25")
    assert len(first) == 12 and {"client1", "client1000"} <= set(first)
    assert first == [s for s in sources if s in first]  # in the sources' order
    assert sample(sources, [], 12, "sample 26") != sample(sources, [], 12, "sample 25")
    assert sample(sources[:5], ["client2"], 12, "x") == sources[:5]  # fewer than asked: all
    # a pinned draw: a change to how samples are drawn must be a deliberate one
    assert sample(sources, [], 3, "sample 1") == ["client354", "client637", "client779"]


SCENARIO = """\
topology: campus.yaml
policy:
  gw: [rules.sh]
suspects: [client1, client5]
expect:
  - {from: suspects, to: remote-mx, probes: [smtp], families: [4, 6], verdict: blocked}
  - {from: [client6, clients], except: suspects, sample: 3, to: remote-mx, probes: [mail],
     families: [6], verdict: allowed}
"""


def _scenario(tmp_path: Path, text: str = SCENARIO) -> scenario.Scenario:
    (tmp_path / "campus.yaml").write_text(SITE)
    (tmp_path / "rules.sh").write_text("iptables -A FORWARD -p tcp --dport 25 -j DROP\n")
    (tmp_path / "scenario.yaml").write_text(text)
    return scenario.load(str(tmp_path))


def test_suspects_and_except_and_sample_in_expectations(tmp_path: Path) -> None:
    s = _scenario(tmp_path)
    blocked = [(e.source, e.family) for e in s.expectations if e.verdict == Verdict.BLOCKED]
    assert blocked == [("client1", 4), ("client1", 6), ("client5", 4), ("client5", 6)]
    mailing = [e.source for e in s.expectations if e.probe == "mail"]
    assert len(mailing) == 3 and "client6" in mailing
    assert not {"client1", "client5"} & set(mailing)
    assert mailing == [e.source for e in _scenario(tmp_path).expectations if e.probe == "mail"]


@pytest.mark.parametrize(("change", "said"), [
    ("to: remote-mx, probes: [smtp]", "expect #1: to: client3 is a light client (no recorder "
     "runs in it): aim at a host of the site's hosts:"),
    ("sample: 3,", "expect #2: sample: 0 must be a whole number, 1 or more (how many of its "
     "sources to probe)"),
    ("except: suspects,", "expect #2: from: no source is left (except: took them all)"),
])
def test_bad_sampling_is_one_line(tmp_path: Path, change: str, said: str) -> None:
    text = SCENARIO.replace(change, {
        "to: remote-mx, probes: [smtp]": "to: client3, probes: [smtp]",
        "sample: 3,": "sample: 0,",
        "except: suspects,": "except: [clients],",
    }[change])
    with pytest.raises(BadInput) as caught:
        _scenario(tmp_path, text)
    assert str(caught.value) == f"{tmp_path / 'scenario.yaml'}: {said}"


def test_the_epidemic_names_fifty_of_a_thousand() -> None:
    s = scenario.load(str(PROJECT / "examples" / "spambot-epidemic"))
    assert len(s.site.clients) == 1000 and len(s.site.light_nodes) == 1000
    assert s.suspects is not None and len(s.suspects) == 50
    bots = {e.source for e in s.expectations if e.verdict == Verdict.BANNED}
    assert bots == set(s.suspects)
    clean = {e.source for e in s.expectations if e.probe == "mail"}
    assert len(clean) == 12 and {"client1", "client1000"} <= clean
    assert not clean & bots
    # every client has IPv6; IPv4 only the first 450 (documentation space: three /24s)
    assert all(s.site.role(c).has(6) for c in s.site.clients)
    assert [c for c in s.site.clients if s.site.role(c).has(4)] == \
        [f"client{n}" for n in range(1, 451)]
