"""Loading and validating scenarios: the built-in ones and every way a scenario can be wrong."""

from __future__ import annotations

import difflib
import os
import time
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import scenario, yamlfile
from lab.model.verdict import Verdict
from lab.netfilter.policy import read_policy
from probes.tunnel import SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS, VARIANTS
from tests.unit.test_tunnel import BEYOND_FIXED

BLOCK = {"seed-screened-block": ("screened-host", "gw"),
         "seed-dmz-block": ("dmz", "inner"),
         "seed-teredo-syntax": ("screened-host", "gw"),
         "fixed-screened-block": ("screened-host", "gw"),
         "fixed-dmz-block": ("dmz", "inner")}
PROXY = {"seed-proxy": ("screened-host", "gw"),
         "fixed-proxy": ("screened-host", "gw"),
         "fixed-proxy-dmz": ("dmz", "inner")}
OTHER = {"spambot": ("screened-host", "gw")}
# the trap and password guessing: node of the fail2ban, and its jail file
TRAPS = {"seed-trap": ("gw", "seed-trap/jail.local"),
         "fixed-trap": ("gw", "fixed-trap/jail.local"),
         "false-alarm": ("gw", "fixed-trap/jail.local"),
         "guessing": ("mx", "guessing/jail.local"),
         # fail2ban's nftables actions beside the same iptables block rules
         "seed-trap-nft": ("gw", "seed-trap-nft/jail.local"),
         "fixed-trap-nft": ("gw", "fixed-trap-nft/jail.local")}
WITHOUT_TRAP = {"weak-password": ("screened-host", "gw")}
BUILTIN = {**BLOCK, **PROXY, **OTHER}
# nftables rulesets as the policy: scenario → its ruleset and the iptables scenario
# whose expectations it copies, row for row ('' for none)
NFT = {"fixed-screened-block-nft": ("fixed-screened-block-nft", "fixed-screened-block"),
       "fixed-dmz-block-nft": ("fixed-dmz-block-nft", "fixed-dmz-block"),
       "fixed-proxy-nft": ("fixed-proxy-nft", "fixed-proxy"),
       "seed-translated": ("seed-translated", "seed-screened-block"),
       "fixed-screened-block-translated": ("fixed-screened-block-translated",
                                           "fixed-screened-block"),
       "teredo-payload-nft": ("fixed-screened-block-nft", "")}

GOOD = """\
topology: screened-host
policy:
  gw: [rules.sh]
expect:
  - {from: client1, to: remote-mx, probes: [smtp], families: [4], verdict: blocked}
"""
RULES = "iptables -A FORWARD -i eth0 -p tcp --dport 25 -j DROP\n"


def _folder(tmp_path: Path, spec: str, rules: str | None = RULES) -> Path:
    folder = tmp_path / "my-scenario"
    folder.mkdir()
    (folder / "scenario.yaml").write_text(spec)
    if rules is not None:
        (folder / "rules.sh").write_text(rules)
    return folder


def test_builtin_names() -> None:
    assert scenario.builtin_names() == sorted({*BUILTIN, *TRAPS, *WITHOUT_TRAP, *NFT})


@pytest.mark.parametrize("name", sorted(NFT))
def test_nft_scenarios_load_with_their_counterparts_matrix(name: str) -> None:
    s = scenario.load(name)
    owner, counterpart = NFT[name]
    (policy,) = s.policies[s.site.policy_router]
    assert policy.path.resolve() == scenario.BUILTIN / owner / "ruleset.nft"
    assert policy.families == frozenset({4, 6})
    assert s.summary
    if counterpart:
        other = scenario.load(counterpart)
        assert (s.topology, s.site.policy_router) == (other.topology, other.site.policy_router)
        assert s.expectations == other.expectations


@pytest.mark.parametrize("name", ["seed-trap-nft", "fixed-trap-nft"])
def test_the_nft_traps_differ_from_theirs_only_in_the_ban_action(name: str) -> None:
    s, other = scenario.load(name), scenario.load(name.removesuffix("-nft"))
    assert (s.topology, s.suspects, s.expectations) == (
        other.topology, other.suspects, other.expectations)
    assert [p.path.resolve() for p in s.policies["gw"]] == [
        p.path.resolve() for p in other.policies["gw"]]
    (jail,) = s.traps["gw"]
    text = jail.read_text()
    if name == "seed-trap-nft":
        assert "banaction = nftables-multiport" in text and "chain_hook" not in text
    else:
        assert "banaction = nftables-allports" in text
        assert "chain_hook=forward" in text


def test_teredo_payload_nft_probes_every_teredo_variant() -> None:
    s = scenario.load("teredo-payload-nft")
    teredo = {e.variant: e.verdict for e in s.expectations if e.probe == "teredo"}
    assert set(teredo) == set(TEREDO_VARIANTS)
    for name, verdict in teredo.items():
        want = Verdict.ALLOWED if TEREDO_VARIANTS[name].is_control else Verdict.BLOCKED
        assert verdict == want
    assert {(e.probe, e.family) for e in s.expectations if e.probe != "teredo"} == {
        ("web", 4), ("web", 6), ("submission", 4), ("submission", 6)}


@pytest.mark.parametrize("name", sorted(TRAPS))
def test_trap_scenarios_load(name: str) -> None:
    s = scenario.load(name)
    node, jail = TRAPS[name]
    assert s.topology == "screened-host" and s.summary
    assert s.traps == {node: (scenario.BUILTIN / jail,)} or (
        [p.resolve() for p in s.traps[node]] == [scenario.BUILTIN / jail])
    (policy,) = s.policies["gw"]
    assert policy.path.resolve() == scenario.BUILTIN / "fixed-screened-block" / "rules.sh"
    assert {e.family for e in s.expectations} == {4, 6}
    verdicts = {e.verdict for e in s.expectations}
    assert Verdict.BANNED in verdicts and Verdict.ALLOWED in verdicts


@pytest.mark.parametrize("name", ["seed-trap", "fixed-trap", "false-alarm", "seed-trap-nft",
                                  "fixed-trap-nft"])
def test_trap_matrix_bans_then_unbans(name: str) -> None:
    """The trap's story in order: a logged attempt, the ban, and the ban's end."""
    s = scenario.load(name)
    order = [(e.after, e.verdict) for e in s.expectations]
    first_ban = order.index(("ban", Verdict.BANNED))
    assert (("", Verdict.BLOCKED) in order[:first_ban])
    assert order[-1] == ("unban", Verdict.ALLOWED)
    banned = {e.source for e in s.expectations if e.verdict == Verdict.BANNED}
    assert s.suspects == tuple(sorted(banned))
    probes = {e.probe for e in s.expectations if e.verdict == Verdict.BANNED}
    assert {"web", "dns", "submission"} <= probes


def test_guessing_scenarios() -> None:
    jailed, open_door = scenario.load("guessing"), scenario.load("weak-password")
    assert not open_door.traps
    for s, verdict in ((jailed, Verdict.BANNED), (open_door, Verdict.ALLOWED)):
        guesses = [e for e in s.expectations if e.probe.startswith("guessing")]
        assert {e.probe for e in guesses} == {"guessing", "guessing-465"}
        assert {e.verdict for e in guesses} == {verdict}
        assert {e.target for e in guesses} == {"mx"}
    assert {e.family for e in jailed.expectations if e.verdict == Verdict.BANNED} == {4, 6}


def test_after_needs_a_trap(tmp_path: Path) -> None:
    spec = GOOD.replace("verdict: blocked}", "verdict: blocked, after: ban}")
    with pytest.raises(BadInput, match="'after' waits for a ban: the scenario needs a trap"):
        scenario.load(str(_folder(tmp_path, spec)))


def test_after_and_trap_are_checked(tmp_path: Path) -> None:
    spec = GOOD.replace("verdict: blocked}", "verdict: blocked, after: soon}")
    with pytest.raises(BadInput, match=r"after: 'soon' is not one of ban, unban"):
        scenario.load(str(_folder(tmp_path, spec)))
    for name, spec, message in (
            ("a", GOOD + "trap:\n  client1: [jail.local]\n",
             "trap: 'client1' is not a router or a server"),
            ("b", GOOD + "trap:\n  gw: [jail.local]\n",
             r"trap of gw: cannot read jail.local: No such file"),
            ("c", GOOD + "trap: [jail.local]\n",
             "trap: must map a node to a list of fail2ban jail files")):
        (tmp_path / name).mkdir()
        with pytest.raises(BadInput, match=message):
            scenario.load(str(_folder(tmp_path / name, spec)))


def test_before_and_after_a_ban_are_different_expectations(tmp_path: Path) -> None:
    spec = GOOD + ("  - {from: client1, to: remote-mx, probes: [smtp], families: [4], "
                   "verdict: banned, after: ban}\ntrap:\n  gw: [jail.local]\n")
    folder = _folder(tmp_path, spec)
    (folder / "jail.local").write_text("[x]\nenabled = true\n")
    s = scenario.load(str(folder))
    assert [(e.verdict, e.after) for e in s.expectations] == [
        (Verdict.BLOCKED, ""), (Verdict.BANNED, "ban")]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_scenarios_load(name: str) -> None:
    s = scenario.load(name)
    topology, router = BUILTIN[name]
    assert s.name == name
    assert s.topology == topology
    assert s.site.policy_router == router
    assert s.summary
    assert list(s.policies) == [router]
    (policy,) = s.policies[router]
    # spambot shares fixed-screened-block's file rather than copying it
    owner = "fixed-screened-block" if name == "spambot" else name
    assert policy.path.resolve() == scenario.BUILTIN / owner / "rules.sh"
    assert policy.kind == "script" and policy.families == frozenset({4, 6})
    assert {e.family for e in s.expectations} == {4, 6}
    sources = {"client1", "client2", "mx"} | (set() if name in OTHER else {"remote-mx"})
    assert {e.source for e in s.expectations} == sources
    assert not hasattr(s, "services")


def _matrix(name: str) -> dict[tuple[str, str, str, int, str], Verdict]:
    return {(e.source, e.target, e.probe, e.family, e.variant): e.verdict
            for e in scenario.load(name).expectations}


@pytest.mark.parametrize("name", sorted(BLOCK))
def test_block_scenarios_matrix(name: str) -> None:
    by = _matrix(name)
    # 8 lines of the matrix: clients→remote-mx smtp/smtps 2x2x2, clients→sink 2x1x2,
    # mx→remote-mx 2x2, remote-mx→mx smtp 1x2, clients→mx 2x2x2, clients→remote-mx
    # mail 2x1x2 and spam 2x1x2, remote-mx→mx rfc2142 1x2 (36) ...
    plain = {k: v for k, v in by.items() if k[2] not in VARIANTS}
    assert len(plain) == 36
    assert all(variant == "" for *_, variant in plain)
    assert by["client2", "remote-mx", "smtps", 6, ""] == Verdict.BLOCKED
    assert by["mx", "remote-mx", "smtp", 4, ""] == Verdict.ALLOWED
    assert by["client1", "mx", "submission", 6, ""] == Verdict.ALLOWED
    assert by["client1", "remote-mx", "mail", 6, ""] == Verdict.ALLOWED
    assert by["client2", "remote-mx", "spam", 4, ""] == Verdict.BLOCKED
    assert by["remote-mx", "mx", "rfc2142", 6, ""] == Verdict.ALLOWED
    # ... and 4 lines of tunnels, IPv4 only, from each client: teredo 10 blocked (9
    # crafted, 1 real) and 2 controls, tunnel6in4 2 blocked and 1 control: 2 x (12 + 3)
    tunnels = {k: v for k, v in by.items() if k[2] in VARIANTS}
    assert len(tunnels) == 30
    assert len(by) == 36 + 30
    for client in ("client1", "client2"):
        for probe, variants in VARIANTS.items():
            for variant in variants.values():
                if probe == "teredo" and variant.name in BEYOND_FIXED:
                    assert (client, "remote-mx", probe, 4, variant.name) not in by
                    continue
                want = Verdict.ALLOWED if variant.is_control else Verdict.BLOCKED
                assert by[client, "remote-mx", probe, 4, variant.name] == want
    assert {(s, t, f) for s, t, _, f, _ in tunnels} == {("client1", "remote-mx", 4),
                                                        ("client2", "remote-mx", 4)}
    assert by["client1", "remote-mx", "teredo", 4, "fragment"] == Verdict.BLOCKED
    assert by["client2", "remote-mx", "teredo", 4, "tunnel"] == Verdict.BLOCKED
    assert by["client2", "remote-mx", "teredo", 4, "control-587"] == Verdict.ALLOWED
    assert by["client2", "remote-mx", "tunnel6in4", 4, "control-80"] == Verdict.ALLOWED
    assert set(by.values()) == {Verdict.ALLOWED, Verdict.BLOCKED}


@pytest.mark.parametrize("name", sorted(PROXY))
def test_proxy_scenarios_matrix(name: str) -> None:
    by = _matrix(name)
    # 8 lines: clients→remote-mx smtp, spam, mail-25, smtps and mail 2x1x2 each,
    # clients→mx submission 2x1x2, mx→remote-mx 2x2, remote-mx→mx smtp/rfc2142 2x2
    assert len(by) == 32
    for client in ("client1", "client2"):
        for family in (4, 6):
            assert by[client, "remote-mx", "smtp", family, ""] == Verdict.DIVERTED
            assert by[client, "remote-mx", "spam", family, ""] == Verdict.REFUSED
            assert by[client, "remote-mx", "mail-25", family, ""] == Verdict.DIVERTED
            assert by[client, "remote-mx", "smtps", family, ""] == Verdict.BLOCKED
            assert by[client, "remote-mx", "mail", family, ""] == Verdict.ALLOWED
            assert by[client, "mx", "submission", family, ""] == Verdict.ALLOWED
    assert by["mx", "remote-mx", "smtps", 6, ""] == Verdict.ALLOWED
    assert by["remote-mx", "mx", "rfc2142", 4, ""] == Verdict.ALLOWED
    assert not any(target == "sink" for _, target, _, _, _ in by)
    # no tunnel probes in the divert scenarios
    assert not any(probe in VARIANTS or variant for _, _, probe, _, variant in by)


def test_a_folder_scenario_loads(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD)
    s = scenario.load(str(folder))
    assert s.name == "my-scenario"
    assert s.folder == folder
    assert len(s.expectations) == 1
    e = s.expectations[0]
    assert (e.source, e.target, e.probe, e.family, e.verdict) == (
        "client1", "remote-mx", "smtp", 4, Verdict.BLOCKED)
    # the same folder, named by its scenario.yaml
    assert scenario.load(str(folder / "scenario.yaml")).expectations == s.expectations


def test_policy_entry_with_a_family(tmp_path: Path) -> None:
    save = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "-A FORWARD -i eth0 -p tcp -m tcp --dport 25 -j DROP\nCOMMIT\n")
    folder = _folder(tmp_path, GOOD.replace("gw: [rules.sh]",
                                            "gw: [{file: v6.save, family: 6}]"))
    (folder / "v6.save").write_text(save)
    (policy,) = scenario.load(str(folder)).policies["gw"]
    assert (policy.kind, policy.family) == ("save", 6)


def test_services_key_is_gone(tmp_path: Path) -> None:
    # the mail servers come from the topology now (lab.services.mail.servers_for), not the scenario
    folder = _folder(tmp_path, GOOD + "services:\n  mx: [25, 465, 587]\n")
    with pytest.raises(BadInput) as exc:
        scenario.load(str(folder))
    assert str(exc.value) == (f"{folder / 'scenario.yaml'}: unknown key 'services' "
                              "(known: expect, policy, summary, suspects, topology, trap)")


EXPECT_LINE = ("  - {from: client1, to: remote-mx, probes: [smtp], families: [4], "
               "verdict: blocked}\n")
BAD = {
    "not-a-mapping": ("- topology\n- dmz\n", "must be a mapping"),
    "empty-file": ("", "must be a mapping"),
    "unknown-key": (GOOD + "colour: blue\n", "unknown key 'colour'"),
    "unknown-topology": (GOOD.replace("screened-host", "star"), "topology 'star'"),
    "topology-as-list": (GOOD.replace("screened-host", "[screened-host]"), "topology"),
    "unknown-role-to": (GOOD.replace("to: remote-mx", "to: mailhub"), "unknown role 'mailhub'"),
    "unknown-role-from": (GOOD.replace("from: client1", "from: client9"),
                          "unknown role 'client9'"),
    "unknown-probe": (GOOD.replace("[smtp]", "[pop3]"), "unknown probe 'pop3'"),
    "probe-as-mapping": (GOOD.replace("[smtp]", "[{smtp: 25}]"), "probe"),
    "family-5": (GOOD.replace("families: [4]", "families: [4, 5]"), "family 5 must be 4 or 6"),
    "unknown-verdict": (GOOD.replace("verdict: blocked", "verdict: maybe"),
                        "verdict 'maybe' is not one of"),
    "missing-key": (GOOD.replace("families: [4], ", ""), "missing key 'families'"),
    "unknown-expect-key": (GOOD.replace("verdict: blocked", "verdict: blocked, via: gw"),
                           "unknown key 'via'"),
    "empty-expect": (GOOD.split("expect:")[0] + "expect: []\n", "non-empty list"),
    "self-probe": (GOOD.replace("from: client1, to: remote-mx", "from: mx, to: mx"),
                   "mx cannot probe itself"),
    "clients-probe-themselves": (GOOD.replace("from: client1, to: remote-mx",
                                              "from: clients, to: client2"),
                                 "client2 cannot probe itself"),
    "contradiction": (GOOD + EXPECT_LINE.replace("client1", "clients")
                      .replace("blocked", "allowed"), "contradicts an earlier expectation"),
    "policy-on-a-host": (GOOD.replace("gw: [rules.sh]", "mx: [rules.sh]"), "'mx' is not a router"),
    "policy-unknown-role": (GOOD.replace("gw: [rules.sh]", "fw: [rules.sh]"),
                            "unknown role 'fw'"),
    "policy-not-a-mapping": (GOOD.replace("  gw: [rules.sh]", "  - rules.sh"),
                             "policy: must map"),
    "policy-bad-family": (GOOD.replace("gw: [rules.sh]", "gw: [{file: rules.sh, family: 5}]"),
                          "must be 4 or 6"),
    "services-key": (GOOD + "services:\n  mx: [587]\n", "unknown key 'services'"),
    "unknown-verdict-lists-refused": (GOOD.replace("verdict: blocked", "verdict: refusd"),
                                      "verdict 'refusd' is not one of allowed, blocked, diverted, "
                                      "refused, banned, error"),
    "missing-policy-file": (GOOD.replace("[rules.sh]", "[rulez.sh]"), "rulez.sh"),
}


TEREDO = GOOD.replace("[smtp]", "[teredo]")
BAD.update({
    "unknown-variant": (TEREDO.replace("families:", "variants: [plain, bogus], families:"),
                        f"unknown teredo variant 'bogus' (variants: {', '.join(TEREDO_VARIANTS)})"),
    "teredo-only-variant-on-6in4": (
        GOOD.replace("[smtp]", "[tunnel6in4]").replace("families:", "variants: [origin], "
                                                                    "families:"),
        "unknown tunnel6in4 variant 'origin' (variants: plain, plain-465, control-80)"),
    "variant-not-a-string": (TEREDO.replace("families:", "variants: [{plain: 1}], families:"),
                             "unknown teredo variant"),
    "variants-on-smtp": (GOOD.replace("families:", "variants: [plain], families:"),
                         "probe 'smtp' has no variants"),
    "variants-on-a-mix": (GOOD.replace("[smtp]", "[teredo, smtps]")
                          .replace("families:", "variants: [plain], families:"),
                          "probe 'smtps' has no variants"),
    "teredo-over-ipv6": (TEREDO.replace("families: [4]", "families: [6]"),
                         "teredo travels in IPv4: family must be 4"),
    "6in4-over-both": (GOOD.replace("[smtp]", "[tunnel6in4]").replace("families: [4]",
                                                                      "families: [4, 6]"),
                       "tunnel6in4 travels in IPv4: family must be 4"),
    "variant-contradiction": (
        TEREDO.replace("families:", "variants: [plain], families:")
        + EXPECT_LINE.replace("[smtp]", "[teredo]").replace("blocked", "allowed"),
        "contradicts an earlier expectation for client1 → remote-mx teredo:plain IPv4"),
})


# keys and values of the wrong type (issue 10)
KNOWN = "(known: expect, policy, summary, suspects, topology, trap)"
ENTRY = "(an entry is a file name or {file: NAME, family: 4 or 6})"
BAD.update({
    # keys of mixed types: sorting 'str' against int or None raised TypeError
    "int-and-str-keys": (GOOD + "1: x\nzz: y\n", f"unknown key 1 {KNOWN}"),
    "null-key": (GOOD + "zz: y\nnull: x\n", f"unknown key 'zz' {KNOWN}"),
    "expect-mixed-keys": (GOOD.replace("verdict: blocked}", "verdict: blocked, 1: x, null: y}"),
                          "expect #1: unknown key 1"),
    "expect-null-key": (GOOD.replace("verdict: blocked}", "verdict: blocked, null: y, zz: 1}"),
                        "expect #1: unknown key null"),
    # `data.get("policy") or {}` took these for "no policy"
    **{f"policy-{value}": (GOOD.replace("policy:\n  gw: [rules.sh]", f"policy: {value}"),
                           "policy: must map a router role to a list of rules files")
       for value in ("[]", "0", "false")},
    "trap-empty-list": (GOOD + "trap: []\n",
                        "trap: must map a node to a list of fail2ban jail files"),
    **{f"summary-{value}": (GOOD + f"summary: {value}\n", f"summary: must be a line of text, "
                            f"not {value} (quote it if it looks like a list or a number)")
       for value in ("[1, 2]", "2024")},
    # 4.0 == 4 and True == 1 in Python
    "family-float": (GOOD.replace("families: [4]", "families: [4.0]"),
                     "expect #1: family 4.0 must be 4 or 6"),
    "family-true": (GOOD.replace("families: [4]", "families: [6, true]"),
                    "expect #1: family true must be 4 or 6"),
    "policy-family-float": (GOOD.replace("[rules.sh]", "[{file: rules.sh, family: 4.0}]"),
                            "policy: family of 'rules.sh' must be 4 or 6, not 4.0"),
    "policy-family-true": (GOOD.replace("[rules.sh]", "[{file: rules.sh, family: true}]"),
                           "policy: family of 'rules.sh' must be 4 or 6, not true"),
    "policy-entry-unknown-key": (
        GOOD.replace("[rules.sh]", "[{file: rules.sh, family: 4, bogus: 1}]"),
        f"policy of gw: unknown key 'bogus' in {{'bogus': 1, 'family': 4, 'file': 'rules.sh'}} "
        f"{ENTRY}"),
    "policy-entry-without-file": (GOOD.replace("[rules.sh]", "[{family: 4}]"),
                                  f"policy of gw: {{'family': 4}} names no file {ENTRY}"),
    # a scenario expecting `error` can never pass
    "verdict-error": (GOOD.replace("verdict: blocked", "verdict: error"),
                      "expect #1: verdict 'error' can never pass: it says the lab could not "
                      "decide (expect what the policy should do)"),
})


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_is_one_clear_line_naming_its_yaml(tmp_path: Path, case: str) -> None:
    spec, fragment = BAD[case]
    folder = _folder(tmp_path, spec)
    with pytest.raises(BadInput) as exc:
        scenario.load(str(folder))
    message = str(exc.value)
    assert str(folder / "scenario.yaml") in message
    assert fragment in message
    assert "\n" not in message


def test_good_base_of_the_bad_cases_loads(tmp_path: Path) -> None:
    # so that every bad case above fails for its own change only
    assert scenario.load(str(_folder(tmp_path, GOOD))).topology == "screened-host"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "topology: screened-host\nexpect:\n\t- {from: client1}\n")
    with pytest.raises(BadInput) as exc:
        scenario.load(str(folder))
    assert str(exc.value).startswith(f"{folder / 'scenario.yaml'}:3: ")


def test_unreadable_policy_still_reports(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD, rules="echo hello\n")
    with pytest.raises(BadInput) as exc:
        scenario.load(str(folder))
    assert f"{folder / 'rules.sh'}:1:" in str(exc.value)


def test_find_builtin_and_paths(tmp_path: Path) -> None:
    assert scenario.find("seed-dmz-block") == scenario.BUILTIN / "seed-dmz-block"
    folder = _folder(tmp_path, GOOD)
    assert scenario.find(str(folder)) == folder
    assert scenario.find(str(folder / "scenario.yaml")) == folder


def test_find_unknown_name_points_at_list() -> None:
    with pytest.raises(BadInput) as exc:
        scenario.find("no-such-scenario")
    assert "no-such-scenario" in str(exc.value)
    assert "`port25lab list`" in str(exc.value)


def test_find_folder_without_scenario_yaml(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as exc:
        scenario.find(str(tmp_path))
    assert str(exc.value) == f"{tmp_path}: not a scenario folder (no scenario.yaml)"


def test_with_rules_v4_keeps_the_scripts_ip6tables_commands(tmp_path: Path) -> None:
    original = scenario.load("seed-screened-block")
    (script,) = original.policies["gw"]
    new = tmp_path / "v4.sh"
    new.write_text("iptables -A FORWARD -j DROP\nip6tables -A FORWARD -j ACCEPT\n")
    changed = original.with_rules(4, read_policy(new))
    kept, added = changed.policies["gw"]
    assert kept.commands == tuple(c for c in script.commands if c.family == 6)
    assert len(kept.commands) == 3
    assert [c.argv for c in added.commands] == [("iptables", "-A", "FORWARD", "-j", "DROP")]
    # the scenario it came from is untouched
    assert original.policies["gw"] == (script,)
    assert changed.expectations == original.expectations
    assert changed.topology == original.topology


def test_with_rules_v6_keeps_the_scripts_iptables_commands(tmp_path: Path) -> None:
    original = scenario.load("seed-dmz-block")
    (script,) = original.policies["inner"]
    new = tmp_path / "v6.save"
    new.write_text("# Generated by ip6tables-save v1.8.9\n*filter\n:FORWARD DROP [0:0]\n"
                   "-A FORWARD -s 2001:db8:b01a:70da::/64 -j DROP\nCOMMIT\n")
    changed = original.with_rules(6, read_policy(new))
    kept, added = changed.policies["inner"]
    assert kept.commands == tuple(c for c in script.commands if c.family == 4)
    assert len(kept.commands) == 3
    assert "--u32" in kept.commands[-1].argv   # the Teredo line is IPv4 and stays
    assert (added.kind, added.family) == ("save", 6)
    assert added.save_text == new.read_text()


def test_with_rules_twice_replaces_both_families(tmp_path: Path) -> None:
    original = scenario.load("fixed-screened-block")
    v4, v6 = tmp_path / "v4.sh", tmp_path / "v6.sh"
    v4.write_text("iptables -A FORWARD -j DROP\n")
    v6.write_text("ip6tables -A FORWARD -j DROP\n")
    changed = original.with_rules(4, read_policy(v4)).with_rules(6, read_policy(v6))
    commands = [c for p in changed.policies["gw"] for c in p.commands]
    assert [(c.family, c.argv[0]) for c in commands] == [(4, "iptables"), (6, "ip6tables")]


# --- tunnel probes and their variants ------------------------------------------------------

def _load(tmp_path: Path, spec: str) -> scenario.Scenario:
    return scenario.load(str(_folder(tmp_path, spec)))


def test_tunnel_probes_without_variants_expect_every_variant(tmp_path: Path) -> None:
    s = _load(tmp_path, GOOD.replace("[smtp]", "[teredo, tunnel6in4]"))
    teredo = [e for e in s.expectations if e.probe == "teredo"]
    six = [e for e in s.expectations if e.probe == "tunnel6in4"]
    assert [e.variant for e in teredo] == list(TEREDO_VARIANTS)
    assert [e.variant for e in six] == list(SIX_IN_FOUR_VARIANTS)
    assert len(s.expectations) == 12 + len(BEYOND_FIXED) + 3
    for e in s.expectations:
        assert (e.source, e.target, e.family, e.verdict) == (
            "client1", "remote-mx", 4, Verdict.BLOCKED)


def test_explicit_variants(tmp_path: Path) -> None:
    s = _load(tmp_path, GOOD.replace("[smtp]", "[teredo]").replace(
        "families:", "variants: [fragment, origin], families:"))
    assert [(e.probe, e.variant, e.family) for e in s.expectations] == [
        ("teredo", "fragment", 4), ("teredo", "origin", 4)]


def test_one_variant_without_a_list_and_for_every_client(tmp_path: Path) -> None:
    s = _load(tmp_path, GOOD.replace("[smtp]", "[tunnel6in4]")
              .replace("from: client1", "from: clients")
              .replace("families:", "variants: control-80, families:")
              .replace("blocked", "allowed"))
    assert [(e.source, e.probe, e.variant, e.verdict) for e in s.expectations] == [
        ("client1", "tunnel6in4", "control-80", Verdict.ALLOWED),
        ("client2", "tunnel6in4", "control-80", Verdict.ALLOWED)]


def test_variants_of_one_probe_may_differ_in_verdict(tmp_path: Path) -> None:
    spec = (GOOD.replace("[smtp]", "[teredo]").replace("families:", "variants: [plain], families:")
            + EXPECT_LINE.replace("[smtp]", "[teredo]").replace("blocked", "allowed")
            .replace("families:", "variants: [control-80], families:")
            # the same expectation again is no contradiction
            + EXPECT_LINE.replace("[smtp]", "[teredo]").replace("families:",
                                                                "variants: plain, families:"))
    s = _load(tmp_path, spec)
    assert {e.variant: e.verdict for e in s.expectations} == {
        "plain": Verdict.BLOCKED, "control-80": Verdict.ALLOWED}


def test_non_tunnel_expectations_have_no_variant(tmp_path: Path) -> None:
    (e,) = _load(tmp_path, GOOD).expectations
    assert e.variant == ""
    assert all(e.variant == "" for e in scenario.load("seed-proxy").expectations)


def test_seed_teredo_syntax_repairs_only_the_dport_typo() -> None:
    syntax, seed = scenario.load("seed-teredo-syntax"), scenario.load("seed-screened-block")
    assert syntax.topology == seed.topology == "screened-host"
    assert syntax.expectations == seed.expectations
    assert "-dport" in syntax.summary
    (fixed,), (published,) = syntax.policies["gw"], seed.policies["gw"]
    assert [c.text.replace(" --dport ", " -dport ") for c in fixed.commands] == [
        c.text for c in published.commands]
    changed = [(a.argv, b.argv) for a, b in zip(fixed.commands, published.commands, strict=True)
               if a.argv != b.argv]
    assert len(changed) == 1
    ((repaired, verbatim),) = changed
    assert "--u32" in repaired and "--dport" in repaired and "-dport" not in repaired
    assert [a for a in repaired if a != "--dport"] == [a for a in verbatim if a != "-dport"]
    assert repaired.index("--dport") == verbatim.index("-dport")

    # the files differ in the header comment and that one option only
    def lines(s: scenario.Scenario) -> list[str]:
        return (s.folder / "rules.sh").read_text().splitlines()

    def header(text: list[str]) -> list[str]:
        return text[:next(n for n, line in enumerate(text) if line.startswith("/sbin/"))]

    diff = list(difflib.ndiff(lines(seed), lines(syntax)))
    removed = [d[2:] for d in diff if d.startswith("- ")]
    added = [d[2:] for d in diff if d.startswith("+ ")]
    assert [ln for ln in removed if ln.startswith("#")] == header(lines(seed))[:1]
    assert [ln for ln in added if ln.startswith("#")] == header(lines(syntax))[:2]
    assert [ln for ln in removed if not ln.startswith("#")] == [
        "/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -dport 3544 -m u32 \\"]
    assert [ln for ln in added if not ln.startswith("#")] == [
        "/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 --dport 3544 -m u32 \\"]


# --- scenario.yaml as bad input: its YAML and the file itself (issue 10) ------------------

LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n"
                    for a, b in zip("abcdefgh", "bcdefghi", strict=True)))


def _message(folder: Path) -> str:
    """The one line a bad scenario is refused with."""
    with pytest.raises(BadInput) as exc:
        scenario.load(str(folder))
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_billion_laughs_is_refused_at_its_first_alias(tmp_path: Path) -> None:
    # 9 aliases of 9 ... of 9 strings: 457 bytes took 60 s and 5.9 GB, then booted a lab
    assert len(LAUGHS) < 500
    indented = "".join(f"  {line}\n" for line in LAUGHS.splitlines())
    folder = _folder(tmp_path, GOOD + "trap:\n" + indented)
    assert _message(folder) == (f"{folder / 'scenario.yaml'}:8: alias *a: scenario.yaml takes "
                                "no anchors or aliases (write the value out)")


def test_an_anchor_alone_is_refused_too(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD.replace("topology: screened-host",
                                            "topology: &t screened-host"))
    assert _message(folder) == (f"{folder / 'scenario.yaml'}:1: anchor &t: scenario.yaml takes "
                                "no anchors or aliases (write the value out)")


@pytest.mark.parametrize(("spec", "line", "key", "first"), [
    (GOOD + "topology: dmz\n", 6, "'topology'", 1),
    (GOOD.replace("verdict: blocked}", "verdict: blocked, verdict: allowed}"), 5, "'verdict'", 5),
    (GOOD.replace("  gw: [rules.sh]", "  gw: [rules.sh]\n  gw: [other.sh]"), 4, "'gw'", 3),
    # 1 and true are the same key to Python: the second would silently replace the first
    (GOOD + "1: a\ntrue: b\n", 7, "true", 6),
])
def test_a_duplicate_key_is_refused_naming_its_line(tmp_path: Path, spec: str, line: int,
                                                    key: str, first: int) -> None:
    folder = _folder(tmp_path, spec)
    assert _message(folder) == (f"{folder / 'scenario.yaml'}:{line}: duplicate key {key} "
                                f"(first on line {first}): give each key once")


@pytest.mark.parametrize("where", ["summary", "expect"])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path, where: str) -> None:
    deep = "[" * 600 + "]" * 600
    spec = (GOOD + f"summary: {deep}\n" if where == "summary"
            else GOOD.split("expect:")[0] + f"expect: {deep}\n")
    folder = _folder(tmp_path, spec)
    line = 6 if where == "summary" else 4
    assert _message(folder) == (f"{folder / 'scenario.yaml'}:{line}: nested deeper than "
                                f"{yamlfile.MAX_DEPTH} levels (a scenario needs five)")


def test_a_nul_in_scenario_yaml_names_its_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD + 'summary: "a\0b"\n')
    assert _message(folder) == (f"{folder / 'scenario.yaml'}:6: character #x0000 is not "
                                "allowed in YAML (remove it)")


def test_scenario_yaml_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    padding = ("# " + "x" * 98 + "\n") * (scenario.MAX_BYTES // 100 + 1)
    folder = _folder(tmp_path, GOOD + padding)
    assert _message(folder) == (f"{folder / 'scenario.yaml'}: cannot read: larger than 1 MiB, "
                                "the most a scenario's file may be")
    # one byte under the limit still loads
    (folder / "scenario.yaml").write_text(GOOD + padding[:scenario.MAX_BYTES - len(GOOD)])
    assert (folder / "scenario.yaml").stat().st_size == scenario.MAX_BYTES
    assert scenario.load(str(folder)).topology == "screened-host"


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_scenario_yaml_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path,
                                                                    kind: str) -> None:
    folder = _folder(tmp_path, GOOD)
    spec = folder / "scenario.yaml"
    spec.unlink()
    if kind == "fifo":
        os.mkfifo(spec)  # opening it for reading would wait for a writer: forever
    else:
        spec.symlink_to(kind)  # read until MemoryError
    for name in (str(folder), str(spec)):
        with pytest.raises(BadInput) as exc:
            scenario.load(name)
        assert str(exc.value) == f"{spec}: not a regular file (give a text file)"


def test_reading_refuses_a_device_and_a_fifo_unopened(tmp_path: Path) -> None:
    # should scenario.yaml turn into one after find() looked, load still does not block
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), Path("/dev/urandom")):
        with pytest.raises(BadInput, match=r"^not a regular file \(give a text file of at "
                                           r"most 1 MiB\)$"):
            scenario._read_text(path)


@pytest.mark.parametrize("name", [
    "a" * 300,                       # a built-in name that cannot be one
    "x/" + "a" * 300 + "/y",         # a folder
    "a" * 256 + "/scenario.yaml",
])
def test_a_path_part_over_255_bytes_is_one_line(name: str) -> None:
    with pytest.raises(BadInput) as exc:
        scenario.find(name)
    message = str(exc.value)
    assert message.startswith("scenario 'aaaa" if name[0] == "a" else "scenario 'x/aaaa")
    assert message.endswith("a part of the path is longer than 255 bytes, more than a file "
                            "name can be (shorten it)")
    assert "\n" not in message and len(message) < 300


def test_a_path_over_4096_bytes_is_one_line() -> None:
    # every part short enough, the whole too long: pathlib raises ENAMETOOLONG, not False
    name = "/".join(["b" * 250] * 20)
    with pytest.raises(BadInput) as exc:
        scenario.find(name)
    assert str(exc.value).endswith("': cannot look at it: File name too long")
    assert "\n" not in str(exc.value)


def test_a_nul_in_the_scenario_argument_is_quoted_visibly() -> None:
    with pytest.raises(BadInput) as exc:
        scenario.find("a\0b")
    assert str(exc.value).startswith(r"unknown scenario 'a\x00b' (`port25lab list`")


def test_an_unknown_verdict_says_error_cannot_be_expected(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD.replace("verdict: blocked", "verdict: maybe"))
    assert _message(folder).endswith("verdict 'maybe' is not one of allowed, blocked, diverted, "
                                     "refused, banned, error (a scenario may expect all but "
                                     "error)")


@pytest.mark.parametrize("empty", ["policy:\n", "policy: {}\n", ""])
def test_an_empty_policy_value_is_no_policy(tmp_path: Path, empty: str) -> None:
    # `policy:` with nothing after it is YAML's null: no policy, as when the key is left out
    spec = GOOD.replace("policy:\n  gw: [rules.sh]\n", empty) + "trap:\nsummary:\n"
    s = scenario.load(str(_folder(tmp_path, spec)))
    assert (s.policies, s.traps, s.summary) == ({}, {}, "")


# --- file names and files a scenario names (issue 10) -------------------------------------

def _trap(tmp_path: Path, jail: str) -> Path:
    return _folder(tmp_path, GOOD + f"trap:\n  gw: [{jail}]\n")


@pytest.mark.parametrize(("spec", "where"), [
    (GOOD.replace("[rules.sh]", '["a\\0b"]'), "policy of gw"),
    (GOOD.replace("[rules.sh]", '["rules.sh\\n"]'), "policy of gw"),
    (GOOD + 'trap:\n  gw: ["a\\0b"]\n', "trap of gw"),
])
def test_a_control_character_in_a_file_name_is_one_line(tmp_path: Path, spec: str,
                                                        where: str) -> None:
    # a NUL reached open(): ValueError "embedded null byte", a traceback
    message = _message(_folder(tmp_path, spec))
    assert f": {where}: file name '" in message
    assert message.endswith(" holds a control character (remove it)")
    assert "\\x00" in message or "\\n" in message


@pytest.mark.parametrize(("spec", "where"), [
    (GOOD.replace("[rules.sh]", "[" + "a" * 256 + "]"), "policy of gw"),
    (GOOD.replace("[rules.sh]", "[x/" + "a" * 300 + "/rules.sh]"), "policy of gw"),
    (GOOD + "trap:\n  gw: [" + "a" * 256 + "]\n", "trap of gw"),
])
def test_a_file_name_part_over_255_bytes_is_refused_before_opening(tmp_path: Path, spec: str,
                                                                   where: str) -> None:
    message = _message(_folder(tmp_path, spec))
    assert f": {where}: file name '" in message
    assert message.endswith("has a part longer than 255 bytes, more than a file name can be "
                            "(shorten it)")
    assert len(message) < 400  # the name is shortened in the middle


@pytest.mark.parametrize("jail", ["/dev/zero", "/dev/urandom", "fifo", "folder"])
def test_a_jail_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, jail: str) -> None:
    # /dev/zero and /dev/urandom were read until MemoryError; a FIFO blocked forever
    folder = _trap(tmp_path, jail)
    os.mkfifo(folder / "fifo")
    (folder / "folder").mkdir()
    assert _message(folder) == (f"{folder / 'scenario.yaml'}: trap of gw: cannot read {jail}: "
                                "not a regular file (give a text file of at most 1 MiB)")


def test_a_jail_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    folder = _trap(tmp_path, "jail.local")
    (folder / "jail.local").write_text("[x]\n" + "#" * scenario.MAX_BYTES)
    assert _message(folder) == (f"{folder / 'scenario.yaml'}: trap of gw: cannot read "
                                "jail.local: larger than 1 MiB, the most a scenario's file may be")
    (folder / "jail.local").write_text("[x]\n")
    assert scenario.load(str(folder)).traps == {"gw": (folder / "jail.local",)}


def test_a_jail_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    folder = _trap(tmp_path, "jail.local")
    (folder / "jail.local").write_bytes(b"[x]\nenabled = \xff\n")
    assert _message(folder).endswith("trap of gw: cannot read jail.local: not UTF-8 text "
                                     "(byte 15)")


# --- found by fuzzing the values of every key (issue 10) ----------------------------------

@pytest.mark.parametrize(("spec", "line"), [
    (GOOD + 'summary: "x\\ud800"\n', 6),                       # print() raised it later
    (GOOD.replace("[rules.sh]", '["r\\udfffules.sh"]'), 3),     # open() raised it
])
def test_a_lone_surrogate_is_one_line_naming_its_line(tmp_path: Path, spec: str,
                                                      line: int) -> None:
    folder = _folder(tmp_path, spec)
    message = _message(folder)
    assert message.startswith(f"{folder / 'scenario.yaml'}:{line}: '\\")
    assert message.endswith("' is half a character (a lone surrogate): remove it")


@pytest.mark.parametrize("spec", [
    GOOD.replace("verdict: blocked}", "verdict: blocked, after: '" + "y" * 5000 + "'}"),
    TEREDO.replace("families:", "variants: ['" + "y" * 5000 + "'], families:"),
])
def test_a_long_value_is_quoted_shortened(tmp_path: Path, spec: str) -> None:
    assert len(_message(_folder(tmp_path, spec))) < 500


def test_repeated_names_in_an_expectation_do_not_multiply(tmp_path: Path) -> None:
    # every source x every probe x every variant: 200 repeats of each took 19 s
    many = 200
    spec = GOOD.replace("from: client1", f"from: [{', '.join(['clients'] * many)}]").replace(
        "[smtp]", f"[{', '.join(['teredo'] * many)}], variants: [{', '.join(['plain'] * many)}]")
    started = time.monotonic()
    s = _load(tmp_path, spec)
    assert time.monotonic() - started < 5
    assert [(e.source, e.probe, e.variant) for e in s.expectations] == [
        ("client1", "teredo", "plain"), ("client2", "teredo", "plain")]


def test_suspects_named_twice_are_one_suspect(tmp_path: Path) -> None:
    # the logs' suspects are a set: (client1, client1) never equalled it, the scenario never passed
    s = _load(tmp_path, GOOD + "suspects: [client2, client1, client2]\n")
    assert s.suspects == ("client1", "client2")


@pytest.mark.parametrize(("extra", "expected"), [
    ("trap:\n  gw: []\n", "trap of gw: name at least one fail2ban jail file"),
    ("trap:\n  gw: [jail.local, ./jail.local]\n",
     "trap of gw: './jail.local' is named twice (name it once)"),
    ("summary: \"one\\ntwo\"\n", "summary: must be one line of text, not 'one\\ntwo' "
                                 "(remove the line break or control character)"),
    ("summary: \"\\e[2Jcleared\"\n", "summary: must be one line of text, not '\\x1b[2Jcleared' "
                                     "(remove the line break or control character)"),
])
def test_accepted_though_wrong_found_by_fuzzing(tmp_path: Path, extra: str,
                                                expected: str) -> None:
    folder = _folder(tmp_path, GOOD + extra)
    (folder / "jail.local").write_text("[x]\n")
    assert _message(folder) == f"{folder / 'scenario.yaml'}: {expected}"


def test_a_policy_file_named_twice_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, GOOD.replace("[rules.sh]", "[rules.sh, rules.sh]"))
    assert _message(folder) == (f"{folder / 'scenario.yaml'}: policy of gw: 'rules.sh' is named "
                                "twice (its rules would be added twice: name it once)")
    # the same file for each family is two entries
    save = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n"
    (folder / "both.save").write_text(save)
    (folder / "scenario.yaml").write_text(GOOD.replace(
        "[rules.sh]", "[{file: both.save, family: 4}, {file: both.save, family: 6}]"))
    assert [p.family for p in scenario.load(str(folder)).policies["gw"]] == [4, 6]


@pytest.mark.parametrize("key", ["policy", "trap"])
def test_more_files_than_a_node_may_have_are_refused_unread(tmp_path: Path, key: str) -> None:
    # each is read before the lab boots: 100,000 names of one big file read it as often
    names = ", ".join(f"f{n}" for n in range(scenario.MAX_FILES + 1))
    spec = (GOOD.replace("[rules.sh]", f"[{names}]") if key == "policy"
            else GOOD + f"trap:\n  gw: [{names}]\n")
    folder = _folder(tmp_path, spec)
    assert _message(folder) == (f"{folder / 'scenario.yaml'}: {key} of gw: 65 files, more than "
                                "the 64 a node may have (join them)")
