"""The audit's SSH side without a network: targets, passwords, and the command allowlist."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.audit import facts, remote
from lab.errors import BadInput


@pytest.mark.parametrize("url, target", [
    ("ssh://root@gw", remote.Target("root", "gw", 22)),
    ("ssh://audit@203.0.113.1:2222", remote.Target("audit", "203.0.113.1", 2222)),
    ("ssh://root@[2001:db8:b01a:70da::1]", remote.Target("root", "2001:db8:b01a:70da::1")),
    ("ssh://root@[2001:db8::1]:22/", remote.Target("root", "2001:db8::1")),
])
def test_targets(url: str, target: remote.Target) -> None:
    assert remote.parse_target(url) == target


@pytest.mark.parametrize("url, host", [
    ("ssh://root@GW.Example.org.", "gw.example.org."), ("ssh://root@mail_gw", "mail_gw"),
    (f"ssh://root@{'a' * 63}.example", f"{'a' * 63}.example"),
    ("ssh://root@[fe80::1%eth0]", "fe80::1%eth0"), ("ssh://root@bücher.example", "bücher.example"),
])
def test_host_names_the_resolver_takes(url: str, host: str) -> None:
    assert remote.parse_target(url).host == host


def test_a_target_prints_as_a_url_and_names_its_known_hosts_entry() -> None:
    assert str(remote.Target("root", "2001:db8::1", 2222)) == "ssh://root@[2001:db8::1]:2222"
    assert remote.Target("root", "gw", 2222).known_hosts_name == "[gw]:2222"
    assert remote.Target("root", "gw").known_hosts_name == "gw"


@pytest.mark.parametrize("url, message", [
    ("root@gw", "give ssh://user@host[:port]"),
    ("http://root@gw", "give ssh://user@host[:port]"),
    ("ssh://gw", "name the user"),
    ("ssh://root:hunter2@gw", "a password in the URL"),
    ("ssh://root@gw:99999", "the port must be a number"),
    ("ssh://root@gw/etc", "nothing may follow"),
    ("ssh://root@[::1", "an IPv6 address in [brackets]"),  # urllib: "Invalid IPv6 URL"
    ("ssh://root@[2001:db8::1", "an IPv6 address in [brackets]"),
    ("ssh://root@[gw]", "an IPv6 address in [brackets]"),
    ("ssh://root@gw:0", "the port must be a number 1-65535"),  # was taken for 22
    (f"ssh://root@{'a' * 300}.example.org", "not a host name or address"),  # idna: too long
    (f"ssh://root@{'a' * 64}.example.org", "not a host name or address"),
    ("ssh://root@" + "a." * 127 + "org", "not a host name or address"),  # 257 characters
    ("ssh://root@gw..example.org", "not a host name or address"),
    ("ssh://root@-gw.example.org", "not a host name or address"),
    ("ssh://root@gw%0a.example.org", "not a host name or address"),
    ("ssh://root@gw\0", "not a host name or address"),
])
def test_bad_targets(url: str, message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(message)) as caught:
        remote.parse_target(url)
    assert "hunter2" not in str(caught.value)


def test_the_password_comes_from_the_environment_and_never_shows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P25_TEST_PASSWORD", "s3cret-value")
    password = remote.password_from("P25_TEST_PASSWORD", False, "ssh://root@gw")
    assert password == "s3cret-value"
    login = remote.Login(password=password)
    assert "s3cret-value" not in repr(login)
    assert login.describe() == "password"
    with pytest.raises(BadInput, match="no such environment variable"):
        remote.password_from("P25_NO_SUCH_VARIABLE", False, "ssh://root@gw")
    with pytest.raises(BadInput, match="not both"):
        remote.password_from("P25_TEST_PASSWORD", True, "ssh://root@gw")


@pytest.mark.parametrize("stdin, message", [
    (None, "no password: standard input is closed"),  # `0<&-`: Python has no sys.stdin
    (io.StringIO(""), "no password: standard input is empty"),  # `</dev/null`
    (io.StringIO("\0" * 100_000),  # `</dev/zero`: never a newline
     "no password: the first line of standard input is longer than 1024 characters"),
    (io.TextIOWrapper(io.BytesIO(b"\xff\xfe\n"), encoding="utf-8"),
     "no password: standard input is not text"),
])
def test_a_password_prompt_without_a_password_on_standard_input(
        monkeypatch: pytest.MonkeyPatch, stdin: Any, message: str) -> None:
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(BadInput, match=re.escape(f"--password-prompt: {message}")):
        remote.password_from(None, True, "ssh://root@gw")


def test_a_password_prompt_reads_the_first_line_of_a_pipe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-value\r\nnext line\n"))
    assert remote.password_from(None, True, "ssh://root@gw") == "s3cret-value"


def test_every_command_the_audit_runs_is_on_the_allowlist() -> None:
    for command in (*facts.REQUIRED, *facts.OPTIONAL, *facts.MAIL_REQUIRED,
                    *facts.MAIL_OPTIONAL, remote.jail_status("postfix-sasl")):
        assert remote.allowed(command), command


@pytest.mark.parametrize("command", [
    "iptables -F", "iptables-save; iptables -F", "iptables-save && reboot",
    "iptables-restore", "ip6tables-save -c > /etc/x", "nft flush ruleset",
    "sysctl -w net.ipv4.ip_forward=0", "ip address flush dev eth0",
    "fail2ban-client status sshd; reboot", "fail2ban-client status $(reboot)",
    "fail2ban-client set sshd banip 203.0.113.10", "fail2ban-client stop",
    "postconf -e mynetworks=0.0.0.0/0", "doveconf -P", " iptables-save", "iptables-save\n",
    "test -e /etc/passwd", "sh -c iptables-save",
    "ip route add default via 192.0.2.1", "ip -json route flush", "ip route show",
    "ip -6 -json route show; reboot", "ip -json route show table all", "ip -4 -json route show",
    "nft -j flush ruleset", "nft -j list ruleset; reboot", "nft -j -f /tmp/x list ruleset",
    "nft  -j list ruleset", "nft -j list ruleset > /etc/nftables.conf",
])
def test_nothing_else_is_allowed(command: str) -> None:
    assert not remote.allowed(command)


def test_the_audit_reads_the_nft_ruleset_as_json_exactly() -> None:
    assert facts.NFT_JSON == "nft -j list ruleset" and remote.allowed(facts.NFT_JSON)
    assert facts.NFT_JSON in facts.OPTIONAL  # a gateway without nft is a fact, not an error


def test_the_twin_reads_the_routes_of_both_families() -> None:
    assert facts.ROUTES == {4: "ip -json route show", 6: "ip -6 -json route show"}
    assert all(remote.allowed(c) for c in facts.ROUTES.values())
    assert set(facts.ROUTES.values()) <= set(facts.OPTIONAL)  # read, and kept in the facts


def test_an_odd_jail_name_is_not_asked_for() -> None:
    with pytest.raises(BadInput, match="not a plain name"):
        remote.jail_status("sshd; reboot")


def test_the_backend_refuses_before_connecting(tmp_path: Path) -> None:
    # 192.0.2.1 is never reached: the refusal comes before any connection is made
    backend = remote.ReadOnlyBackend(remote.Target("root", "192.0.2.1"), remote.Login(),
                                     remote.Trust(tmp_path / "known_hosts"))
    with pytest.raises(remote.NotAllowed, match="iptables -F"):
        backend.run("iptables -F")
    with pytest.raises(remote.NotAllowed):
        backend.run("fail2ban-client status %s", "sshd; reboot")
    assert "client" not in backend.__dict__  # never connected


def test_the_runner_checks_the_allowlist_for_any_testinfra_backend() -> None:
    class Recording:
        """A testinfra host stand-in: records what it would have run."""

        backend = object()

        def __init__(self) -> None:
            self.ran: list[str] = []

        def run(self, command: str) -> None:
            self.ran.append(command)

    host = Recording()
    run = facts.runner(host, "gw")
    with pytest.raises(remote.NotAllowed):
        run("iptables -F")
    assert host.ran == []


def test_why_a_connection_failed_is_said_plainly() -> None:
    import errno

    import paramiko

    def failed(code: int, text: str) -> str:
        return remote._reason(paramiko.ssh_exception.NoValidConnectionsError(
            {("192.0.2.1", 22): OSError(code, text)}))
    assert failed(errno.ECONNREFUSED, "Connection refused").startswith("connection refused")
    assert failed(errno.EHOSTUNREACH, "No route to host") == "No route to host"
    assert remote._reason(TimeoutError()) == "no answer (timed out)"


def test_a_closed_connection_is_said_plainly_not_asserted(tmp_path: Path) -> None:
    import paramiko

    backend = remote.ReadOnlyBackend(remote.Target("root", "192.0.2.1"), remote.Login(),
                                     remote.Trust(tmp_path / "known_hosts"))
    backend.__dict__["client"] = paramiko.SSHClient()  # never connected: no transport
    with pytest.raises(BadInput, match=r"^ssh://root@192.0.2.1: the SSH connection is "
                                       r"closed; `iptables-save` was not sent$"):
        backend.run("iptables-save")
