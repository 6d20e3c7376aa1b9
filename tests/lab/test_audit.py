"""The live-gateway audit against a real OpenSSH server: the lab's `gw` plays the gateway.

The gateway is the `gw` router of a screened-host lab with the published rules
loaded (as on a real router, their Teredo line fails to load there), running a
private sshd; `mx` runs one too, whose sessions read the lab's Postfix and
Dovecot configuration. The auditor — `port25lab audit` and the pytest form —
runs inside `client1`'s namespace, so every SSH packet stays in the lab.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.engine.verify import load_policies, verify
from lab.model import scenario
from lab.netfilter import origin
from lab.runtime import lifecycle
from lab.runtime.lab import PROJECT_ROOT, Lab
from lab.services import sshd
from tests.audit_support import PUBLISHED_FINDINGS
from tests.support import CLI, leftovers, prefixes

pytestmark = pytest.mark.lab

GW, GW6, MX = "203.0.113.1", "2001:db8:b01a:70da::1", "203.0.113.25"
# The gateway also runs a private fail2ban with fixed-trap's jail; its sshd sees that
# instance's configuration as /etc/fail2ban (lab.services.sshd, `mounts`), so the check does not
# depend on the host's own fail2ban, running or not.
PUBLISHED = {**PUBLISHED_FINDINGS, "fail2ban-jails": "PASS"}


@dataclass(frozen=True)
class Gateway:
    lab: Lab
    gw: sshd.Instance
    mx: sshd.Instance
    bare: sshd.Instance  # on gw too, port 2222, sessions without a PATH
    hung: sshd.Instance  # on gw too, port 2223, every command hangs
    known_hosts: Path  # gw's and mx's keys under their addresses
    folder: Path

    def audit(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> tuple[int, str, str]:
        """`port25lab audit ARGS` as an auditor in client1 runs it."""
        pairs = [f"{k}={v}" for k, v in (env or {}).items()]
        return self.lab.exec("client1", ["env", *pairs, CLI, "audit", *args], timeout=timeout)

    def key_login(self) -> list[str]:
        return ["-i", str(self.gw.client_key), "-i", str(self.mx.client_key),
                "--known-hosts", str(self.known_hosts)]


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    published = scenario.load("seed-screened-block")
    run = lifecycle.new_run()
    try:
        with Lab(published.site, run) as lab:
            errors = load_policies(lab, published)  # exactly as published: LOG stays LOG
            assert [(e.line, e.message) for e in errors] == [(14, "Bad argument `3544'")]
            trap = scenario.BUILTIN / "fixed-trap" / "jail.local"
            assert lab.start_traps({"gw": (trap,)}) == {"gw": []}
            gw = sshd.serve(lab, "gw", mounts={"/etc/fail2ban": lab.traps["gw"].conf})
            mail = lab.mail["mx"]
            mx = sshd.serve(lab, "mx", {"MAIL_CONFIG": str(mail.config),
                                        "CONFIG_FILE": str(mail.dovecot_conf)})
            bare = sshd.serve(lab, "gw", {"PATH": "/nonexistent"}, port=2222)
            hung = sshd.serve(lab, "gw", port=2223, force_command="sleep 60")
            known = run.folder / "known_hosts"
            known.write_text("".join(s.known_hosts.read_text() for s in (gw, mx, bare, hung)))
            yield Gateway(lab, gw, mx, bare, hung, known, run.folder)
    finally:
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []


def _one_line(status: int, out: str, err: str) -> str:
    assert status == 2, out + err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("port25lab: "), err
    return lines[0]


def _findings(report: dict[str, object]) -> dict[str, str]:
    audit = report["audit"]
    assert isinstance(audit, dict)
    return {(f"{f['check']}[v{f['family']}]" if f["family"] else f["check"]): f["status"]
            for f in audit["findings"]}


def test_audit_reports_the_published_rules_findings(gateway: Gateway) -> None:
    out_json, out_xml = gateway.folder / "audit.json", gateway.folder / "audit.xml"
    started = time.monotonic()
    status, out, err = gateway.audit(f"ssh://root@{GW}", "--mx", f"ssh://root@{MX}",
                                     *gateway.key_login(), "--json", str(out_json),
                                     "--junit", str(out_xml))
    elapsed = time.monotonic() - started
    assert status == 1, out + err  # the published rules do not comply
    assert f"== audit ssh://root@{GW} FAIL" in out
    assert re.search(r"teredo-rule\s+FAIL", out) and re.search(r"smtp-blocked\s+PASS\s+PASS", out)
    report = json.loads(out_json.read_text())
    assert _findings(report) == PUBLISHED
    commands = {c["command"]: c for c in report["audit"]["facts"]["commands"]}
    assert "-j LOG" in commands["iptables-save"]["stdout"]
    assert "3544" not in commands["iptables-save"]["stdout"]  # it never loaded on the gateway
    mail = {c["command"] for c in report["audit"]["facts"]["mail_commands"]}
    assert mail >= {"postconf -n", "postconf -M"}
    suite = ET.parse(out_xml).getroot()[0]
    failed = {c.get("name") for c in suite if c.find("failure") is not None}
    assert failed == {"teredo-rule"}
    jails = next(f for f in report["audit"]["findings"] if f["check"] == "fail2ban-jails")
    assert jails["detail"].startswith("jails: port25-trap")
    # nothing secret in the reports: the private keys stay where they are
    secret = gateway.gw.client_key.read_text().splitlines()[1]
    for text in (out, err, out_json.read_text(), out_xml.read_text()):
        assert secret not in text
    print(f"\naudit over SSH (gateway and mail server): {elapsed:.2f} s with the CLI's start, "
          f"{report['audit']['elapsed_ms'] / 1000:.2f} s connecting and reading")


def test_audit_over_ipv6_without_the_mail_server(gateway: Gateway) -> None:
    out_json = gateway.folder / "audit6.json"
    status, out, err = gateway.audit(f"ssh://root@[{GW6}]", "-i", str(gateway.gw.client_key),
                                     "--known-hosts", str(gateway.known_hosts), "-q",
                                     "--json", str(out_json))
    assert status == 1, out + err
    assert err == ""  # -q: no progress lines
    assert _findings(json.loads(out_json.read_text())) == {
        **PUBLISHED, "submission-auth-tls": "not checked"}


def _pytest_form(gateway: Gateway, hosts: str, *args: str) -> tuple[int, str, ET.Element]:
    xml = gateway.folder / f"pytest-{time.monotonic_ns()}.xml"
    status, out, err = gateway.lab.exec("client1", [
        "env", "-C", str(gateway.folder), sys.executable, "-m", "pytest", "-p",
        "no:cacheprovider", "--pyargs", "lab.compliance", f"--hosts={hosts}",
        f"--junitxml={xml}", "-rs", *args], timeout=120)
    return status, out + err, ET.parse(xml).getroot()


def _outcomes(junit: ET.Element) -> dict[str, str]:
    """Each test of the pytest form as the audit's check name → PASS / FAIL / not checked."""
    found = {}
    for case in junit.iter("testcase"):
        test, _, params = str(case.get("name")).partition("[")
        family = re.search(r"-(v[46])\]$", params)
        name = test.removeprefix("test_").replace("_", "-") + (
            f"[{family.group(1)}]" if family else "")
        found[name] = ("FAIL" if case.find("failure") is not None or case.find("error")
                       is not None else "not checked" if case.find("skipped") is not None
                       else "PASS")
    return found


def test_the_pytest_form_reports_the_same_findings(gateway: Gateway) -> None:
    status, out, junit = _pytest_form(
        gateway, f"paramiko://root@{GW}", f"--ssh-identity-file={gateway.gw.client_key}",
        f"--port25lab-known-hosts={gateway.known_hosts}",
        f"--port25lab-mx=paramiko://root@{MX}?ssh_identity_file={gateway.mx.client_key}")
    assert status == 1, out
    assert _outcomes(junit) == PUBLISHED
    assert "no rule drops UDP port 3544 (Teredo) from 203.0.113.0/24" in out


def test_the_pytest_form_with_openssh_and_a_filter(gateway: Gateway) -> None:
    config = gateway.folder / "ssh_config"
    config.write_text(f"Host *\n  IdentityFile {gateway.gw.client_key}\n"
                      f"  UserKnownHostsFile {gateway.known_hosts}\n  BatchMode yes\n"
                      "  ControlMaster no\n")
    status, out, junit = _pytest_form(gateway, f"ssh://root@{GW}", f"--ssh-config={config}",
                                      "-k", "smtp_blocked or teredo")
    assert status == 1, out
    assert _outcomes(junit) == {k: v for k, v in PUBLISHED.items()
                                if k.startswith(("smtp-blocked", "teredo"))}


def test_the_twin_reproduces_the_builtin_scenario(gateway: Gateway) -> None:
    out_json = gateway.folder / "twin.json"
    started = time.monotonic()
    status, out, err = gateway.audit(f"ssh://root@{GW}", *gateway.key_login(), "-q",
                                     "--twin", "seed-screened-block", "--json", str(out_json))
    twin_seconds = time.monotonic() - started
    assert status == 1, out + err
    twin = json.loads(out_json.read_text())["scenarios"][0]
    assert twin["name"] == f"seed-screened-block twin of ssh://root@{GW}"
    # the policies the twin ran are named as collected, not as file paths (ssh:/…)
    assert twin["rules"] == {"gw": [f"ssh://root@{GW} iptables-save",
                                    f"ssh://root@{GW} ip6tables-save"]}
    assert twin["load_errors"] == []  # what the gateway holds loads; its broken line never did
    assert twin["lab_error"] is None
    for p in prefixes(err + out):
        assert leftovers(p) == []
    # the built-in scenario, run directly with the published script
    run = lifecycle.new_run()
    try:
        direct = verify(scenario.load("seed-screened-block"), run, lambda _: None)
    finally:
        lifecycle.destroy(run)

    def verdicts(results: list[dict[str, object]]) -> dict[tuple[object, ...], object]:
        return {(r["source"], r["target"], r["probe"], r["variant"], r["family"]):
                r["observed"] for r in results}
    expected = verdicts([{"source": r.source, "target": r.target, "probe": r.probe,
                          "variant": r.variant or None, "family": r.family,
                          "observed": str(r.observed)} for r in direct.results])
    assert len(expected) == 66
    assert verdicts(twin["results"]) == expected
    # each blocked row cites the gateway's own save output, by the line of its deciding rule
    saved = {f"{tool}-save": gateway.lab.exec("gw", [f"{tool}-save"])[1].splitlines()
             for tool in ("iptables", "ip6tables")}
    blocked = [r for r in twin["results"] if r["observed"] == "blocked"]
    assert blocked and all(r["rule"] and r["rule_source"] for r in blocked)
    for r in blocked:
        gateway_name, tool_line = r["rule_source"].rsplit(" ", 1)
        tool, line = tool_line.split(":")
        assert gateway_name == f"ssh://root@{GW}" and tool == r["rule"].split()[1] + "-save"
        # that line, without the tag the lab's gw (playing the gateway) loaded it with
        assert origin.untag(saved[tool][int(line) - 1])[0] == "-A " + r["rule"].split(
            ": -A ", 1)[1], r
    print(f"audit --twin seed-screened-block: {twin_seconds:.2f} s")


def test_lines_that_do_not_load_in_the_twin_are_reported(gateway: Gateway) -> None:
    """A gateway's rule needing an extension the lab lacks (xtables-addons' geoip)."""
    code = (
        "import json, sys\n"
        "from dataclasses import replace\n"
        "from lab.audit import facts\n"
        "from lab.model import scenario\n"
        "from lab.runtime import lifecycle\n"
        "from lab.audit.twin import twin_scenario\n"
        "from lab.engine.verify import verify\n"
        "out = facts.Output('iptables-save', 0, sys.stdin.read(), '')\n"
        "ip = facts.Output(facts.ADDRESSES, 0, '[{\"ifname\": \"ens3\"}]', '')\n"
        "seen = facts.Facts('ssh://root@gw', {'iptables-save': out, facts.ADDRESSES: ip,\n"
        "    'ip6tables-save': facts.Output('ip6tables-save', 0, '', '')})\n"
        "base = scenario.load('seed-screened-block')\n"
        "base = replace(base, expectations=tuple(\n"
        "    e for e in base.expectations if e.family == 4 and e.probe == 'smtp')[:2])\n"
        "twin, notes = twin_scenario(seen, base, {'ens3': 'eth0'})\n"
        "run = lifecycle.new_run()\n"
        "try:\n"
        "    result = verify(twin, run, lambda _: None)\n"
        "finally:\n"
        "    lifecycle.destroy(run)\n"
        "print(json.dumps([str(e) for e in result.load_errors]\n"
        "                 + [r.observed for r in result.results]))\n")
    saved = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A FORWARD -i ens3 -m geoip --src-cc XX -j DROP\n"
             "-A FORWARD -s 203.0.113.0/24 -i ens3 -p tcp -m multiport --dports 25,465 "
             "-j DROP\nCOMMIT\n")
    done = subprocess.run([sys.executable, "-c", code], input=saved, capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT, check=False)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said[0].startswith("ssh://root@gw iptables-save:5: ")
    assert "geoip" in said[0]
    assert said[1:] == ["blocked", "blocked"]  # the mapped DROP rule loaded and decides


def test_an_unknown_host_key_is_refused_unless_its_fingerprint_is_given(
        gateway: Gateway) -> None:
    empty = gateway.folder / "known_hosts.empty"
    empty.write_text("")
    args = [f"ssh://root@{GW}", "-i", str(gateway.gw.client_key), "--known-hosts", str(empty)]
    line = _one_line(*gateway.audit(*args))
    fingerprint = gateway.gw.fingerprint()
    assert f"REFUSED: unknown host key ssh-ed25519 {fingerprint}" in line
    assert f"--accept-host-key {fingerprint}" in line
    assert empty.read_text() == ""  # nothing learnt behind the auditor's back
    status, out, err = gateway.audit(*args, "--accept-host-key", fingerprint, "-q")
    assert status == 1 and "== audit" in out, err


def test_a_changed_host_key_is_refused(gateway: Gateway) -> None:
    # known_hosts names gw's address with mx's key: as if gw's key had changed
    changed = gateway.folder / "known_hosts.changed"
    mx_key = gateway.mx.known_hosts.read_text().split()[1:]
    changed.write_text(f"{GW} {' '.join(mx_key)}\n")
    line = _one_line(*gateway.audit(f"ssh://root@{GW}", "-i", str(gateway.gw.client_key),
                                    "--known-hosts", str(changed)))
    assert "REFUSED: the host key has changed" in line
    assert gateway.gw.fingerprint() in line and gateway.mx.fingerprint() in line


def test_a_wrong_password_is_refused_and_never_shown(gateway: Gateway) -> None:
    password = "not-the-password-4711"
    out_json = gateway.folder / "never.json"
    line = _one_line(*gateway.audit(
        f"ssh://root@{GW}", "--password-env", "P25_AUDIT_PASSWORD", "--known-hosts",
        str(gateway.known_hosts), "--json", str(out_json),
        env={"P25_AUDIT_PASSWORD": password}))
    assert line == (f"port25lab: ssh://root@{GW}: authentication refused for user root "
                    "(tried: password)")
    assert not out_json.exists()
    # the same from the prompt (without a terminal: the first line of standard input)
    status, out, err = gateway.lab.exec("client1", [
        CLI, "audit", f"ssh://root@{GW}", "--password-prompt", "--known-hosts",
        str(gateway.known_hosts)], stdin=password + "\n", timeout=60)
    assert _one_line(status, out, err) == line
    assert password not in gateway.gw.log.read_text()


def test_unreachable_and_missing_command_are_one_line(gateway: Gateway) -> None:
    line = _one_line(*gateway.audit(f"ssh://root@{GW}:2200", *gateway.key_login()))
    assert line == (f"port25lab: ssh://root@{GW}:2200: cannot connect: connection refused "
                    "(is sshd listening on that address and port?)")
    # the sink (198.51.100.80) runs no sshd
    line = _one_line(*gateway.audit("ssh://root@198.51.100.80", *gateway.key_login()))
    assert "cannot connect: connection refused" in line
    line = _one_line(*gateway.audit(f"ssh://root@{GW}:2222", "-i",
                                    str(gateway.bare.client_key), "--known-hosts",
                                    str(gateway.known_hosts)))
    assert line.startswith(f"port25lab: ssh://root@{GW}:2222: `iptables-save` is not "
                           "installed there (the audit needs it)")


def test_a_command_that_hangs_meets_its_deadline(gateway: Gateway) -> None:
    started = time.monotonic()
    line = _one_line(*gateway.audit(f"ssh://root@{GW}:2223", "-i", str(gateway.hung.client_key),
                                    "--known-hosts", str(gateway.known_hosts),
                                    "--timeout", "0.5"))
    assert line == (f"port25lab: ssh://root@{GW}:2223: `iptables-save` did not finish "
                    "within 0.5 s")
    assert time.monotonic() - started < 5


def test_login_with_the_ssh_agent(gateway: Gateway) -> None:
    socket = gateway.folder / "agent.sock"
    status, _, err = gateway.lab.exec("client1", ["ssh-agent", "-a", str(socket)])
    assert status == 0, err
    status, _, err = gateway.lab.exec("client1", ["env", f"SSH_AUTH_SOCK={socket}", "ssh-add",
                                                  "-q", str(gateway.gw.client_key)])
    assert status == 0, err
    status, out, err = gateway.audit(f"ssh://root@{GW}", "--agent", "--known-hosts",
                                     str(gateway.known_hosts), "-q",
                                     env={"SSH_AUTH_SOCK": str(socket)})
    assert status == 1 and "== audit" in out, err


def test_the_allowlist_holds_against_the_real_server(gateway: Gateway) -> None:
    """Whatever asks (a testinfra module included), nothing else reaches the gateway."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from lab.audit import remote\n"
        "host = remote.connect(remote.Target('root', sys.argv[1]),\n"
        "                      remote.Login((Path(sys.argv[2]),)),\n"
        "                      remote.Trust(Path(sys.argv[3])))\n"
        "said = [host.run('iptables-save').rc]\n"
        "for attempt in (lambda: host.run('iptables -F'),\n"
        "                lambda: host.run('touch /tmp/port25lab-audit-was-here'),\n"
        "                lambda: host.iptables.rules(),\n"
        "                lambda: host.file('/etc/shadow').content):\n"
        "    try:\n"
        "        attempt()\n"
        "        said.append('ran')\n"
        "    except remote.NotAllowed as exc:\n"
        "        said.append(str(exc))\n"
        "print(json.dumps(said))\n")
    sessions = gateway.gw.log.read_text().count("Starting session: command")
    before = gateway.lab.exec("gw", ["iptables-save"])[1].split("\n", 1)[1]
    status, out, err = gateway.lab.exec("client1", [
        "env", f"PYTHONPATH={PROJECT_ROOT}", sys.executable, "-c", code, GW,
        str(gateway.gw.client_key), str(gateway.known_hosts)])
    assert status == 0, err
    said = json.loads(out)
    assert said[0] == 0
    assert all(s.startswith("not on the audit's allowlist: ") for s in said[1:]), said
    time.sleep(0.1)  # sshd writes its log line as the session starts
    assert gateway.gw.log.read_text().count("Starting session: command") == sessions + 1
    assert not Path("/tmp/port25lab-audit-was-here").exists()
    after = gateway.lab.exec("gw", ["iptables-save"])[1].split("\n", 1)[1]
    strip = re.compile(r"^# (Generated|Completed).*$", re.M)
    assert strip.sub("", before) == strip.sub("", after)
