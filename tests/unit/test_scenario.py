"""Loading and validating scenarios: the built-in ones and every way a scenario can be wrong."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from lab.errors import BadInput
from lab.model import scenario
from lab.model.verdict import Verdict
from lab.netfilter.policy import read_policy
from probes.tunnel import SIX_IN_FOUR_VARIANTS, TEREDO_VARIANTS, VARIANTS

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
         "guessing": ("mx", "guessing/jail.local")}
WITHOUT_TRAP = {"weak-password": ("screened-host", "gw")}
BUILTIN = {**BLOCK, **PROXY, **OTHER}

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
    assert scenario.builtin_names() == sorted({*BUILTIN, *TRAPS, *WITHOUT_TRAP})


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


@pytest.mark.parametrize("name", ["seed-trap", "fixed-trap", "false-alarm"])
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
    assert len(s.expectations) == 12 + 3
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
