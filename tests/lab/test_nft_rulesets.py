"""Every nftables ruleset a built-in scenario carries loads into a real kernel as written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.model import scenario

pytestmark = pytest.mark.lab

RULESETS = sorted(scenario.BUILTIN.glob("*/ruleset.nft"))


def _in_a_namespace(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--net", *argv], capture_output=True, text=True,
                          timeout=60, check=False)


def test_there_are_the_rulesets_of_the_nft_scenarios() -> None:
    assert [p.parent.name for p in RULESETS] == [
        "fixed-dmz-block-nft", "fixed-proxy-nft", "fixed-screened-block-nft",
        "fixed-screened-block-translated", "seed-translated"]


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: p.parent.name)
def test_the_ruleset_checks_and_loads(path: Path) -> None:
    checked = _in_a_namespace("nft", "-c", "-f", str(path))
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    loaded = _in_a_namespace("sh", "-c", 'nft -f "$1" && nft list ruleset', "sh", str(path))
    assert loaded.returncode == 0 and loaded.stderr == "", loaded.stderr
    # a base chain on the forward hook in every one: where a router filters
    assert "type filter hook forward priority" in loaded.stdout
    if path.parent.name == "fixed-proxy-nft":
        assert "dnat ip to 203.0.113.25:587" in loaded.stdout
        assert "dnat ip6 to [2001:db8:b01a:70da::25]:587" in loaded.stdout
        assert loaded.stdout.count("ct status dnat masquerade") == 2
    if path.parent.name.endswith("block-nft"):
        # the Teredo rules as the kernel keeps them: the raw payload matches
        assert loaded.stdout.count("@th,") >= 5 * 3
        assert "ip protocol ipv6 @th,0,8 & 0xf0 == 0x60" in loaded.stdout
