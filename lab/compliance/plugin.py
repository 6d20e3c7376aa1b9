"""The pytest plugin behind `pytest --pyargs lab.compliance` (registered by entry point).

Every pytest run in the environment loads it, so it is inert: options under
their own `--port25lab-` prefix (testinfra's stay as they are), fixtures named
`port25lab_*` that only the compliance tests ask for, no imports of SSH code
until a compliance test runs; with pytest-xdist's `--dist loadgroup` only, a
scheduler that sends all tests of one gateway to one worker (so that a fleet
under `-n 4` reads each gateway once: its facts are a module-scoped fixture,
which every worker would read again).

A gateway given as `paramiko://` (testinfra's paramiko backend) is read with
the audit's own backend instead, because testinfra's accepts any host key:
known_hosts is checked and the allowlist enforced, as in `port25lab audit`.
Other testinfra backends (`ssh://` runs OpenSSH, which checks host keys
itself) are used as they are, with the allowlist and a deadline per command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lab.audit.facts import Facts
    from lab.compliance.checks import Finding


def pytest_addoption(parser: pytest.Parser) -> None:
    from lab.compliance.addressing import OPTIONS

    group = parser.getgroup("port25lab", "port25lab compliance checks "
                            "(pytest --pyargs lab.compliance --hosts=…)")
    for name, (metavar, repeats, said) in OPTIONS.items():
        group.addoption(f"--port25lab-{name}", metavar=metavar, help=said,
                        **({"action": "append", "default": []} if repeats else {}))
    group.addoption("--port25lab-mx", metavar="HOSTSPEC",
                    help="the mail server, as testinfra names hosts (paramiko://user@mx): "
                         "its Postfix and Dovecot settings are checked too")
    group.addoption("--port25lab-known-hosts", metavar="FILE",
                    help="known_hosts for paramiko:// hosts (default ~/.ssh/known_hosts)")
    group.addoption("--port25lab-accept-host-key", action="append", default=[],
                    metavar="SHA256:…", help="accept this host key fingerprint (repeatable)")
    group.addoption("--port25lab-password-env", metavar="VAR",
                    help="for paramiko:// hosts: the password is in this environment variable")
    group.addoption("--port25lab-timeout", type=float, default=20.0, metavar="S",
                    help="deadline for each remote command (default: %(default)s s)")


# a compliance test's node id: the gateway is its test id's first part (testinfra's)
_GATEWAY_TEST = re.compile(r"(?:^|/)test_gateway\.py::test_\w+\[(?P<host>.+?)(?:-v[46])?\]$")


def gateway_of(nodeid: str) -> str | None:
    """The gateway a compliance test reads (as testinfra names it), or None for other tests."""
    found = _GATEWAY_TEST.search(nodeid)
    return found.group("host") if found else None


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may not be installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: all compliance tests of one gateway on one worker.

    xdist groups by the `xdist_group` mark, which it appends to the node id; pytest
    9.2's node ids can no longer be changed, so the scheduler groups them here
    instead (other tests keep loadgroup's grouping).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PerGateway(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            host = gateway_of(nodeid)
            return f"port25lab gateway {host}" if host else str(super()._split_scope(nodeid))

    return PerGateway(config, log)


def _reader(host: Any, config: pytest.Config) -> Any:
    """The host to read: the audit's own backend in place of testinfra's paramiko one.

    An `ansible://` host is the connection testinfra opens for it from the inventory
    (its paramiko one replaced the same way), unless `--force-ansible` runs Ansible.
    """
    import getpass

    from lab.audit import remote

    backend = host.backend
    if backend.get_connection_type() == "ansible" and not backend.force_ansible:
        inner = backend.ansible_runner.get_host(backend.host, ssh_config=backend.ssh_config,
                                                ssh_identity_file=backend.ssh_identity_file)
        return host if inner is None else _reader(inner, config)
    if host.backend.get_connection_type() != "paramiko" or isinstance(
            host.backend, remote.ReadOnlyBackend):
        return host
    spec = host.backend.host
    if spec.password:
        raise pytest.UsageError("a password in --hosts shows in process lists: use "
                                "--port25lab-password-env VAR")
    user = spec.user or getpass.getuser()
    target = remote.Target(user, spec.name, int(spec.port or 22))
    identity = host.backend.ssh_identity_file
    login = remote.Login(
        (Path(identity),) if identity else (),
        password=remote.password_from(config.getoption("port25lab_password_env"), False,
                                      str(target)))
    known = config.getoption("port25lab_known_hosts")
    trust = remote.Trust(Path(known) if known else remote.default_known_hosts(),
                         tuple(config.getoption("port25lab_accept_host_key")))
    return remote.connect(target, login, trust, config.getoption("port25lab_timeout"))


@pytest.fixture(scope="module")
def port25lab_facts(host: Any, pytestconfig: pytest.Config) -> Iterator[Facts]:
    """The gateway's audit facts, read once per host (and its mail server's, if given)."""
    import testinfra

    from lab.audit.facts import collect, runner
    from lab.errors import BadInput

    timeout = pytestconfig.getoption("port25lab_timeout")
    opened = []
    try:
        gateway = _reader(host, pytestconfig)
        opened.append(gateway)
        name = gateway.backend.get_pytest_id()
        mail: Any = None
        mail_name: str | None = None
        spec = pytestconfig.getoption("port25lab_mx")
        if spec:
            mail = _reader(testinfra.get_host(spec, ssh_identity_file=getattr(
                host.backend, "ssh_identity_file", None)), pytestconfig)
            opened.append(mail)
            mail_name = mail.backend.get_pytest_id()
        yield collect(runner(gateway, name, timeout), name,
                      runner(mail, str(mail_name), timeout) if mail else None, mail_name)
    except BadInput as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        for h in opened:
            client = h.backend.__dict__.get("client")  # only if it was opened
            if client is not None:
                client.close()


@pytest.fixture(scope="module")
def port25lab_check(port25lab_facts: Facts,
                    pytestconfig: pytest.Config) -> Callable[[str, int | None], Finding]:
    """Run one compliance check on the gateway's facts: `check("smtp-blocked", 4)`.

    What the options leave out comes from the gateway, and a line says what was assumed.
    """
    from lab.compliance.addressing import Requested
    from lab.compliance.checks import check
    from lab.errors import BadInput

    def split(option: str) -> tuple[str, ...]:
        given = pytestconfig.getoption(option) or ""
        return tuple(v.strip() for v in given.split(",") if v.strip())

    requested = Requested(split("port25lab_clients"), split("port25lab_mail_server"),
                          tuple(pytestconfig.getoption("port25lab_inside")),
                          tuple(pytestconfig.getoption("port25lab_management")))
    try:
        addressing, notes = requested.resolve(port25lab_facts)
    except BadInput as exc:
        pytest.fail(str(exc), pytrace=False)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # absent with `-p no:terminal`
        with capture.global_and_fixture_disabled():  # said now, not captured with the test
            for note in notes:
                reporter.write_line(f"port25lab: note: {note}")
    return lambda check_id, family: check(check_id)(port25lab_facts, addressing, family)
