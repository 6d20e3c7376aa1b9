"""`port25lab audit` without a lab: the defaults taken from the gateway, said; --write-site.

The gateway is read by a stand-in for `gather` (the facts of tests/unit/test_derive.py);
everything after that is the real command line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import cli
from lab.audit import gateway as audit
from lab.model import site_file
from tests.unit.test_derive import gateway_facts


@pytest.fixture()
def read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "gather", lambda access: gateway_facts())


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["audit", "ssh://root@203.0.113.1", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_checks_say_what_they_took_from_the_gateway(
        read: None, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "--management", "ens20")
    assert (status, err) == (1, "")  # fail2ban is not there: FAIL
    # the read's time is the machine's (0.0 s unloaded, more when it is busy): not pinned
    assert re.search(r"\(read in \d+\.\d s; clients 192\.0\.2\.0/24, 2001:db8:cafe::/64, "
                     r"mail server 192\.0\.2\.25, 2001:db8:cafe::25, inside ens18\)", out)
    assert "   note: clients assumed: 192.0.2.0/24, 2001:db8:cafe::/64, the prefixes of the " \
           "gateway's ens18 (every interface but the default route's ens19 and " \
           "management's ens20); give --clients to say otherwise\n" in out
    assert "   note: mail server assumed: 192.0.2.25, 2001:db8:cafe::25" in out
    for check in ("smtp-blocked[v4]: PASS", "smtp-blocked[v6]: PASS",
                  "mail-server-exception[v6]: PASS", "inside-interface: PASS"):
        assert f"     {check}" in out
    # what is given is not assumed
    status, out, _ = _run(capsys, "--clients", "192.0.2.0/24", "--mail-server", "192.0.2.25")
    assert "note: clients" not in out and "note: mail server" not in out
    assert "inside ens18)" in out  # the interface holding the client network


def test_write_site_saves_the_derived_site(read: None, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    status, out, err = _run(capsys, "--management", "ens20", "--write-site", str(path))
    assert status == 1 and "== audit ssh://root@203.0.113.1 FAIL" in out
    assert err == ""  # nothing had to be assumed for the site beyond the checks' notes
    site = site_file.load(path)
    assert site.name == "twin-203-0-113-1" and site.policy_router == "gw"
    assert [i.name for i in site.role("gw").interfaces] == ["ens18", "ens19", "ens20"]
    text = path.read_text()
    assert text.startswith("# port25lab site: derived by `port25lab audit --write-site` from "
                           "ssh://root@203.0.113.1\n")
    assert "# assumed: clients assumed: 192.0.2.0/24" in text
    assert "#   port25lab verify SCENARIO --site gw.yaml --rules-v4 V4 --rules-v6 V6\n" in text


@pytest.mark.parametrize("args, message", [
    (("--inside", "ens20", "--management", "ens20"),
     "--inside ens20 and --management ens20: an interface is one or the other"),
    (("--write-site", "/nonexistent/dir/gw.yaml"),
     "--write-site /nonexistent/dir/gw.yaml: folder /nonexistent/dir does not exist"),
    (("--clients", ""), "--clients: name at least one network"),
])
def test_bad_options_are_one_line_before_connecting(
        capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    status, out, err = _run(capsys, *args)  # no stand-in: it would connect after the checks
    assert (status, out) == (2, "")
    assert err == f"port25lab: {message}\n"


@pytest.mark.parametrize("args, message", [
    (("--inside", "ens99"), "--inside ens99: the gateway has no such interface (it has ens18, "
                            "ens19, ens20, lo)"),
    (("--write-site", "{tmp}/gw.yaml", "--mail-server", "10.0.0.25"),
     "mail server 10.0.0.25 is on none of the gateway's prefixes"),
])
def test_what_the_gateway_contradicts_is_one_line(
        read: None, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        args: tuple[str, ...], message: str) -> None:
    status, _, err = _run(capsys, *(a.format(tmp=tmp_path) for a in args))
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"port25lab: {message}")
    assert not (tmp_path / "gw.yaml").exists()
