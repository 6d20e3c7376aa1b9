"""A scenario on another site: its names stand for their counterparts there, a site file in
its folder is its topology, and a node it needs that the site lacks is one line naming the
site file, the node and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import scenario, site_file
from lab.model.verdict import Verdict
from tests.support import PROJECT

CAMPUS = PROJECT / "examples" / "campus" / "campus.yaml"

OFFICE = PROJECT / "examples" / "office" / "office.yaml"  # one client (pc1) and mx
NO_MX = "".join(ln for ln in OFFICE.read_text().splitlines(keepends=True)
                if not ln.startswith("  mx:"))


def _site(tmp_path: Path, text: str, name: str = "one.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_built_in_scenario_on_a_campus() -> None:
    s = scenario.load("fixed-screened-block", site=CAMPUS)
    assert (s.topology, s.site_file, s.site.name) == ("campus", CAMPUS, "campus")
    # `clients` are the campus's clients; mx, remote-mx and sink their counterparts
    pairs = {(e.source, e.target) for e in s.expectations}
    assert pairs == {(c, t) for c in ("staff1", "guest1") for t in ("remote-mx", "sink", "mx")
                     } | {("mx", "remote-mx"), ("remote-mx", "mx")}
    # gw's rules (the scenario's own) now stand on fw, the campus's policy router
    assert list(s.policies) == ["fw"]
    assert len(s.expectations) == 66  # the same matrix as on screened-host


def test_counterparts_go_by_what_a_node_is_not_by_its_name(tmp_path: Path) -> None:
    text = (NO_MX.replace("  gw:", "  edge:")
            + "  pc2: {role: client, segment: lan, addresses: [192.0.2.11/24]}\n"
            + "  mail: {role: mx, segment: lan, addresses: [192.0.2.25/24]}\n")
    s = scenario.load("fixed-trap", site=_site(tmp_path, text))
    # fixed-trap's client2 is screened-host's second client; gw its policy router
    assert s.suspects == ("pc2",)
    assert list(s.traps) == ["edge"] and list(s.policies) == ["edge"]
    assert {e.source for e in s.expectations} == {"pc1", "pc2"}
    assert any(e.target == "remote-mx" and e.probe == "mail" for e in s.expectations)
    mx = scenario.load("fixed-screened-block", site=_site(tmp_path, text))
    assert {e.source for e in mx.expectations if e.target == "remote-mx"} >= {"mail"}


@pytest.mark.parametrize("name, text, said", [
    ("fixed-trap", OFFICE.read_text(),
     "site office lacks a counterpart of client2 (the 2nd client of screened-host), which "
     "scenario fixed-trap (expect #1) names: it has 1 client (pc1); add a host with "
     "`role: client`"),
    ("fixed-screened-block", NO_MX,
     "site office lacks a counterpart of mx (the 1st mail server (role mx) of screened-host), "
     "which scenario fixed-screened-block (expect #3) names: it has no mail server (role mx); "
     "add a host with `role: mx`"),
    ("fixed-screened-block",
     OFFICE.read_text().replace("/30", "/24") + (
         "  remote-mx: {role: remote-mx, segment: wan, addresses: [198.51.100.25/24]}\n"),
     "site office lacks a counterpart of sink (the 1st sink host of screened-host), which "
     "scenario fixed-screened-block (expect #2) names: it has no sink host; add a host with "
     "`role: sink` on the outside segment, or give none of remote-mx, sink and relay (then "
     "the lab places all three)"),
])
def test_a_node_the_site_lacks_is_one_line_naming_the_site_file(
        tmp_path: Path, name: str, text: str, said: str) -> None:
    path = _site(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        scenario.load(name, site=path)
    assert str(caught.value) == f"{path}: {said}"


def _folder(tmp_path: Path, topology: str, site: str | None = None) -> Path:
    folder = tmp_path / "campus-check"
    folder.mkdir()
    if site is not None:
        (folder / "campus.yaml").write_text(site)
    (folder / "scenario.yaml").write_text(
        f"topology: {topology}\n"
        "expect:\n"
        "  - {from: clients, to: sink, probes: [web], families: [4, 6], verdict: allowed}\n"
        "  - {from: staff1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n")
    return folder


def test_a_site_file_in_the_scenario_folder_is_its_topology(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "campus.yaml", CAMPUS.read_text())
    s = scenario.load(str(folder))
    assert (s.topology, s.site_file) == ("campus", folder / "campus.yaml")
    assert s.site.role("upstream").is_router  # the site as read: its world placed
    # its names are the site's own
    assert [(e.source, e.family) for e in s.expectations] == [
        ("staff1", 4), ("staff1", 6), ("guest1", 4), ("guest1", 6), ("staff1", 4)]


@pytest.mark.parametrize("topology, site, said", [
    ("campus.yaml", None, "cannot read"),
    ("campus.yaml", "name: campus\n", "campus.yaml:1: missing key 'segments'"),
    ("campus", None, "topology 'campus' is not one of: dmz, screened-host (or a site file in "
                     "the scenario's folder, e.g. campus.yaml)"),
])
def test_a_bad_site_file_topology_is_one_line(tmp_path: Path, topology: str, site: str | None,
                                              said: str) -> None:
    folder = _folder(tmp_path, topology, site)
    with pytest.raises(BadInput) as caught:
        scenario.load(str(folder))
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_scenario_with_its_own_site_file_on_another_site(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "campus.yaml", CAMPUS.read_text())
    lines = CAMPUS.read_text().splitlines(keepends=True)
    other = _site(tmp_path, "".join(ln for ln in lines if not ln.startswith("  guest1:")),
                  "other.yaml")
    # staff1 is campus's 1st client, and other.yaml's; `clients` is other.yaml's one client
    s = scenario.load(str(folder), site=other)
    assert {e.source for e in s.expectations} == {"staff1"}
    assert s.site_file == other


def test_not_applicable_cannot_be_expected(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "screened-host")
    spec = folder / "scenario.yaml"
    spec.write_text(spec.read_text().replace("staff1", "client1").replace(
        "verdict: allowed", "verdict: not applicable"))
    with pytest.raises(BadInput) as caught:
        scenario.load(str(folder))
    assert str(caught.value).endswith(
        "expect #1: verdict 'not applicable' is not one of allowed, blocked, diverted, refused, "
        "banned, error (a scenario may expect all but error)")
    assert Verdict.NOT_APPLICABLE.value == "not applicable"


def test_the_readme_walks_through_the_campus_example(tmp_path: Path) -> None:
    text = (PROJECT / "README.md").read_text()
    section = text[text.index("## Your own network"):]
    snippet = _site(tmp_path, section.split("```yaml\n", 1)[1].split("```", 1)[0], "readme.yaml")
    shown, example = site_file.load(snippet), site_file.load(CAMPUS)
    assert (shown.segments, shown.nodes) == (example.segments, example.nodes)
    assert "--site examples/campus/campus.yaml" in section
