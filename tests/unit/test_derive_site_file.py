"""The site writer: what `--write-site` saves, the site loader reads back as the same site."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import topologies
from lab.audit import derive
from lab.model import site_file
from lab.model.site import Route, Site
from tests.unit.test_derive import gateway_facts
from tests.unit.test_site_file import GOOD


def _round_trip(tmp_path: Path, site: Site, header: tuple[str, ...] = ()) -> Site:
    path = tmp_path / f"{site.name}.yaml"
    path.write_text(site_file.dump(site, header))
    return site_file.load(path)


@pytest.mark.parametrize("name", ["screened-host", "dmz"])
def test_the_built_in_sites_read_back_identically(tmp_path: Path, name: str) -> None:
    site = topologies.load(name)
    assert _round_trip(tmp_path, site) == site


def test_a_derived_site_reads_back_identically_with_its_header(tmp_path: Path) -> None:
    facts = gateway_facts()
    site, _ = derive.site(facts, derive.layout(facts, management=("ens20",)),
                          ("192.0.2.25", "2001:db8:cafe::25"))
    header = ("derived from ssh://root@203.0.113.1", "", "run: port25lab verify …")
    assert _round_trip(tmp_path, site, header) == site
    text = (tmp_path / f"{site.name}.yaml").read_text()
    assert text.startswith("# derived from ssh://root@203.0.113.1\n#\n# run: port25lab verify …\n"
                           f"name: {site.name}\n")
    # as people write them: an interface or a host on one line
    assert "      ens18: {segment: ens18, addresses: [192.0.2.1/24, '2001:db8:cafe::1/64']}\n" \
        in text
    assert "  mx: {role: mx, segment: ens18, addresses: [192.0.2.25/24, " in text


def test_own_names_interfaces_and_routes_read_back_identically(tmp_path: Path) -> None:
    text = GOOD.replace("  mail: {role: mx, segment: servers, addresses: [192.0.2.140/28]}",
                        "  mail: {role: mx, segment: servers, addresses: [192.0.2.140/28],\n"
                        "         routes: [{to: 203.0.113.0/24, via: 192.0.2.129},\n"
                        "                  {to: default, via: 192.0.2.130}]}")
    site = site_file.parse(Path("branch.yaml"), yaml.safe_load(text))
    assert site.role("mail").routes[-2:] == (Route("203.0.113.0/24", "192.0.2.129"),
                                             Route("default", "192.0.2.130"))
    back = _round_trip(tmp_path, site)
    assert back == site
    assert back.role("pc1").interfaces[0].name == "enp0s31f6"
    written = (tmp_path / "branch.yaml").read_text()
    assert "routes: [{to: 203.0.113.0/24, via: 192.0.2.129}, {to: default, via: 192.0.2.130}]" \
        in " ".join(written.split())  # wrapped at 100 columns
    assert written.count("routes:") == 1  # the computed ones are the loader's to compute


def test_routes_a_site_file_cannot_say_are_a_bug() -> None:
    site = topologies.load("screened-host")
    client = site.role("client1")
    broken = replace(site, nodes=tuple(replace(n, routes=()) if n == client else n
                                       for n in site.nodes))
    with pytest.raises(ValueError, match="client1: routes"):
        site_file.dump(broken)
