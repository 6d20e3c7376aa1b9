"""`port25lab audit` refuses bad input in one line, exit 2, before connecting anywhere."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import CLI, PROJECT


@pytest.mark.parametrize("args, message", [
    (("audit",), "required: ssh://USER@HOST[:PORT]"),
    (("audit", "root@gw"), "give ssh://user@host[:port]"),
    (("audit", "ssh://root:hunter2@gw"), "a password in the URL would show"),
    (("audit", "ssh://root@gw", "--mx", "mx"), "--mx 'mx': give ssh://user@host[:port]"),
    (("audit", "ssh://root@gw", "--map-interface", "ens3=eth0"), "--map-interface is for --twin"),
    (("audit", "ssh://root@gw", "--twin", "no-such-scenario"), "unknown scenario"),
    (("audit", "ssh://root@gw", "--twin", "seed-screened-block", "--map-interface", "ens3"),
     "give GATEWAY=LAB"),
    (("audit", "ssh://root@gw", "--clients", "203.0.113.0/33"), "is not a network"),
    (("audit", "ssh://root@gw", "--mail-server", "mx.example.org"), "is not an address"),
    (("audit", "ssh://root@gw", "--password-env", "P25_NO_SUCH_VARIABLE"),
     "no such environment variable"),
    (("audit", "ssh://root@gw", "--json", "/nonexistent/dir/a.json"), "does not exist"),
    (("audit", "ssh://root@gw", "-i", "/nonexistent/key"), "no such key file"),
    (("audit", "ssh://root@gw", "--timeout", "0"), "--timeout must be a positive"),
    (("audit", "ssh://root@[::1"), "an IPv6 address in [brackets]"),
    (("audit", "ssh://root@gw", "--mx", "ssh://root@[2001:db8::25"), "--mx 'ssh://root@[2001"),
    (("audit", f"ssh://root@{'a' * 300}.example.org"), "not a host name or address"),
    (("audit", "ssh://root@gw:0"), "the port must be a number 1-65535"),
    (("audit", "ssh://root@gw", "--timeout", "nan"), "--timeout must be a positive"),
    (("audit", "ssh://root@gw", "--timeout", "inf"), "at most 3600 (given inf)"),
    (("audit", "ssh://root@gw", "--timeout", "1e300"), "at most 3600"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P25_")}
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                          cwd=PROJECT, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("port25lab: "), done.stderr
    assert message in lines[0]
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize("redirect, message", [
    ("0<&-", "no password: standard input is closed"),
    ("</dev/null", "no password: standard input is empty"),
    ("</dev/zero",
     "no password: the first line of standard input is longer than 1024 characters"),
])
def test_password_prompt_without_a_password_on_standard_input(redirect: str,
                                                               message: str) -> None:
    done = subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", CLI, "audit",
                           "ssh://root@gw", "--password-prompt"],
                          capture_output=True, text=True, timeout=60, cwd=PROJECT, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"port25lab: --password-prompt: {message}\n"
