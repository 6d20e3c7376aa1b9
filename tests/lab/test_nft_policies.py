"""nft rulesets as policies on a real router: loaded whole, each rule tagged with its line.

One screened-host lab serves the module; each test loads into its router `gw`
and reads back what the kernel holds (`nft -j list ruleset`). Bad rulesets are
refused by the command line before any lab boots.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.audit import twin
from lab.audit.facts import NFT, Facts, Output
from lab.model.site import Site
from lab.netfilter import nft
from lab.netfilter.policy import LoadError, PolicyFile, apply_policy, read_policy
from lab.runtime import lifecycle
from lab.runtime.lab import Lab
from lab.userfiles import shown
from tests.support import CLI, PROJECT, leftovers
from topologies import load as load_site

pytestmark = pytest.mark.lab

RULESET = """\
#!/usr/sbin/nft -f
define clients = 203.0.113.0/24
define smtp = { 25, 465 }
flush ruleset
include "mail.nft"
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "eth0" ip saddr $clients tcp dport $smtp \\
      drop
    ip6 saddr 2001:db8:b01a:70da::/64 tcp dport { 25,
      465 } drop comment "no v6 SMTP from clients"
  }
}
"""
MAIL = """\
table inet mail {
  chain forward {
    type filter hook forward priority -10; policy accept;
    ip saddr 203.0.113.25 tcp dport 25 accept
  }
}
"""


@pytest.fixture(scope="module")
def gw() -> Iterator[Lab]:
    site: Site = load_site("screened-host")
    run = lifecycle.new_run()
    try:
        with Lab(site, run) as lab:
            yield lab
    finally:
        lifecycle.destroy(run)
        assert leftovers(run.prefix) == []


def runner(lab: Lab) -> Any:
    def run(argv: list[str], stdin: str | None) -> tuple[int, str]:
        status, _, err = lab.exec("gw", argv, stdin=stdin)
        return status, err
    return run


def ruleset(lab: Lab) -> list[dict[str, Any]]:
    status, out, err = lab.exec("gw", ["nft", "-j", "list", "ruleset"])
    assert status == 0, err
    return [next(iter(item.values())) | {"kind": next(iter(item))}
            for item in json.loads(out)["nftables"] if "metainfo" not in item]


def rules(lab: Lab) -> dict[tuple[str, str, str], list[str]]:
    """Each table's rules' comments, by (family, table, chain)."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for item in ruleset(lab):
        if item["kind"] == "rule":
            found.setdefault((item["family"], item["table"], item["chain"]), []).append(
                item.get("comment", ""))
    return found


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_ruleset_with_define_include_and_flush_loads_each_rule_tagged(
        gw: Lab, tmp_path: Path) -> None:
    # an iptables rule loaded before: the ruleset's `flush ruleset` removes it, as nft does
    before = read_policy(write(tmp_path, "before.sh", "iptables -A FORWARD -j DROP\n"))
    assert apply_policy(before, runner(gw)) == []
    write(tmp_path, "mail.nft", MAIL)
    policy = read_policy(write(tmp_path, "gw.nft", RULESET))
    assert apply_policy(policy, runner(gw), tag_sources=True) == []
    main, mail = shown(tmp_path / "gw.nft"), shown(tmp_path / "mail.nft")
    assert rules(gw) == {
        ("inet", "mail", "forward"): [f"p25:{mail}:4"],
        ("inet", "filter", "forward"): [f"p25:{main}:9", "no v6 SMTP from clients"]}
    assert [nft.source(c) for c in rules(gw)["inet", "filter", "forward"]] == [f"{main}:9", ""]
    status, out, _ = gw.exec("gw", ["iptables-save"])
    assert status == 0 and "-j DROP" not in out


def test_a_script_loads_its_nft_file_and_iptables_commands_in_order(
        gw: Lab, tmp_path: Path) -> None:
    write(tmp_path, "mail.nft", "flush ruleset\n" + MAIL)
    script = write(tmp_path, "gw.sh", "#!/bin/sh\nset -e\nnft -f mail.nft\n"
                                      "iptables -A FORWARD -p tcp --dport 2525 -j DROP\n"
                                      "nft add rule inet mail forward tcp dport 587 accept\n"
                                      "nft add rule inet nosuch forward drop\n"
                                      "iptables -A FORWARD -p tcp --dport 2526 -j DROP\n")
    policy = read_policy(script)
    # a failing nft call is its line's error; the script goes on, as a boot script does
    assert apply_policy(policy, runner(gw), tag_sources=True) == [
        LoadError(shown(script), 6, "No such file or directory; did you mean table "
                  "\u2018mail\u2019 in family inet?")]
    found = rules(gw)
    assert found["inet", "mail", "forward"] == [f"p25:{shown(tmp_path / 'mail.nft')}:5",
                                                f"p25:{shown(script)}:5"]
    status, out, _ = gw.exec("gw", ["iptables-save"])
    assert status == 0 and f"p25:{shown(script)}:4" in out and "--dport 2525" in out
    assert f"p25:{shown(script)}:7" in out


def test_a_load_error_names_its_line_and_nothing_of_the_file_loads(
        gw: Lab, tmp_path: Path) -> None:
    assert apply_policy(read_policy(write(tmp_path, "reset.nft", "flush ruleset\n")),
                        runner(gw)) == []
    # the check at read time leaves it to the load: the router might have that table
    write(tmp_path, "more.nft", "table inet more {\n}\nadd rule ip nowhere FORWARD drop\n")
    policy = read_policy(write(tmp_path, "gw.nft", MAIL + 'include "more.nft"\n'))
    errors = apply_policy(policy, runner(gw), tag_sources=True)
    assert len(errors) == 1 and isinstance(errors[0], LoadError)
    assert (errors[0].file, errors[0].line) == (shown(tmp_path / "more.nft"), 3)
    assert errors[0].message.endswith(f"(nft -f loads a file whole: nothing of "
                                      f"{shown(tmp_path / 'gw.nft')} loaded)")
    assert ruleset(gw) == []  # not even the tables before the failing line


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "verify", "fixed-screened-block", *args], capture_output=True,
                          text=True, timeout=300, cwd=PROJECT, check=False)


@pytest.mark.parametrize(("files", "said"), [
    ({"gw.nft": 'flush ruleset\ninclude "rules.nft"\n',
      "rules.nft": "table inet filter {\n  chain forward {\n    tcp dport 25 bogus\n  }\n}\n"},
     "{d}/rules.nft:3: syntax error, unexpected newline"),
    ({"gw.nft": "flush ruleset\ntable ipx filter {\n}\n"},
     "{d}/gw.nft:2: syntax error, unexpected string, expecting"),
    ({"gw.nft": 'flush ruleset\ninclude "missing.nft"\n'},
     '{d}/gw.nft:2: include "missing.nft": no such file beside the policy'),
    ({"gw.nft": 'include "/etc/shadow"\n'},
     '{d}/gw.nft:1: include "/etc/shadow": not read, the lab reads only files beside'),
])
def test_a_bad_ruleset_is_one_line_before_any_lab_boots(tmp_path: Path, files: dict[str, str],
                                                        said: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    done = _verify("--rules", str(tmp_path / "gw.nft"))
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and said.format(d=tmp_path) in line, line
    assert "root:" not in line  # a host file is never read, so never quoted


COLLECTED = """\
table inet fw {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "eth0" tcp dport { 25, 465 } drop
		tcp dport 2525 jump nowhere
		tcp dport 2526 drop
		meta nosuchkey 1 drop
	}
}
"""


def test_a_twins_replay_reports_each_rule_that_does_not_load_and_loads_the_rest(
        gw: Lab) -> None:
    assert apply_policy(read_policy(write(Path(gw.run.folder), "reset.nft", "flush ruleset\n")),
                        runner(gw)) == []
    facts = Facts("ssh://root@gw", {"iptables-save": Output("iptables-save", 0, "", ""),
                                    "ip6tables-save": Output("ip6tables-save", 0, "", ""),
                                    NFT: Output(NFT, 0, COLLECTED, "")})
    native = twin.native_ruleset(facts, {})
    assert native is not None
    policy = PolicyFile(native.path, "nft", ruleset=native, replay=True)
    errors = apply_policy(policy, runner(gw), tag_sources=True)
    source = "ssh://root@gw nft list ruleset"
    assert [(e.file, e.line) for e in errors] == [(source, 5), (source, 7)], errors
    assert all(e.message.endswith("(left out of the replay)") for e in errors)
    assert {k: [nft.source(c) for c in v] for k, v in rules(gw).items()} == {
        ("inet", "fw", "forward"): [f"{source}:4", f"{source}:6"]}


def test_an_nft_log_rule_writes_to_the_routers_firewall_log(gw: Lab, tmp_path: Path) -> None:
    from lab.netfilter.nflog import as_nflog

    policy = read_policy(write(tmp_path, "gw.nft", (
        "flush ruleset\ntable inet filter {\n  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        '    tcp dport 2525 log prefix "NFT-SMTP " level warn drop\n  }\n}\n')))
    translated, notes = as_nflog(policy)
    assert notes == [f"{shown(policy.path)}:5: log run as log group 25 (log is silent in a "
                     "namespace)"]
    assert apply_policy(translated, runner(gw), tag_sources=True) == []
    gw.exec("client1", ["timeout", "2", "bash", "-c", "echo > /dev/tcp/198.51.100.25/2525"])
    log = gw.firewall_logs["gw"]
    for _ in range(50):
        if log.exists() and "NFT-SMTP" in log.read_text():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r.get("oob.prefix", "").startswith("NFT-SMTP") and r.get("dest_port") == 2525
               for r in records), json.dumps(records[-1])


def test_verify_reports_a_ruleset_that_does_not_load_and_loads_the_rest(tmp_path: Path) -> None:
    from tests.lab.test_evidence import _verify

    folder = tmp_path / "nft-then-iptables"
    folder.mkdir()
    write(folder, "gw.nft", "table inet mine {\n}\nadd rule ip nowhere FORWARD drop\n")
    write(folder, "after.sh", "iptables -A FORWARD -s 203.0.113.10 -p tcp --dport 25 -j DROP\n")
    write(folder, "scenario.yaml", (
        "topology: screened-host\npolicy:\n  gw: [gw.nft, after.sh]\nexpect:\n"
        "  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}\n"
        "  - {from: mx, to: remote-mx, probes: [smtp], families: [4], verdict: allowed}\n"))
    result = _verify(folder)
    assert [str(e) for e in result.load_errors] == [
        f"{shown(folder / 'gw.nft')}:3: Could not process rule: No such file or directory "
        f"(nft -f loads a file whole: nothing of {shown(folder / 'gw.nft')} loaded)"]
    # the policy's next file still loads: its rule decides, the mail server's mail goes
    assert all(r.passed for r in result.results), [r.detail for r in result.results]
    blocked = next(r for r in result.results if r.source == "client1")
    assert blocked.deciding_rule is not None
    assert blocked.deciding_rule.source == f"{shown(folder / 'after.sh')}:1"
