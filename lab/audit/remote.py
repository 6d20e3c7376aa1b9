"""Read-only SSH to a live gateway: testinfra's paramiko backend, held on a short leash.

- Every command is checked against a fixed allowlist before it is sent, in
  the backend itself, so that nothing built on it (testinfra modules
  included) can run anything else on the gateway.
- Every command has a deadline; connecting has one too.
- The host key is verified against known_hosts (testinfra's own paramiko
  backend accepts any key with a warning): an unknown or changed key is
  refused unless its SHA256 fingerprint is given explicitly. Nothing is
  written to known_hosts.
- Passwords come from a prompt or an environment variable, are never part of
  a URL, a repr or a message.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from testinfra.backend.paramiko import ParamikoBackend
from testinfra.host import Host

from lab.errors import BadInput

CONNECT_TIMEOUT = 10.0  # s
COMMAND_TIMEOUT = 20.0  # s, for each remote command
MAX_COMMAND_TIMEOUT = 3600.0  # s; far larger ones overflow the socket and thread waits
MAX_PASSWORD = 1024  # characters of a password read from standard input

# What an audit may run on a gateway, exactly. Nothing here writes anything.
ALLOWED = frozenset({
    "iptables-save",
    "ip6tables-save",
    "nft list ruleset",
    "nft -j list ruleset",
    "sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding",
    "ip -json address show",
    "ip -json route show",
    "ip -6 -json route show",
    "fail2ban-client status",
    "postconf -n",
    "postconf -M",
    "doveconf auth_mechanisms disable_plaintext_auth ssl auth_ssl_require_client_cert",
})
# ... and the status of one jail that `fail2ban-client status` named
_JAIL_STATUS = re.compile(r"fail2ban-client status [A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def allowed(command: str) -> bool:
    """Whether a command line is one an audit may run on a gateway."""
    return command in ALLOWED or _JAIL_STATUS.fullmatch(command) is not None


def jail_status(jail: str) -> str:
    """The allowlisted command for one jail's status; BadInput for a name it cannot be."""
    command = f"fail2ban-client status {jail}"
    if not allowed(command):
        raise BadInput(f"fail2ban jail name {jail!r} is not a plain name; not asking for it")
    return command


class NotAllowed(Exception):
    """A command outside the allowlist was about to be sent to a gateway (a bug)."""


class RemoteTimeout(Exception):
    """A remote command did not finish within its deadline."""


@dataclass(frozen=True)
class Target:
    """Where to log in: `ssh://user@host[:port]`."""

    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this server (OpenSSH's rule)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_target(url: str, option: str = "target") -> Target:
    """`ssh://user@host[:port]` (IPv6 literal in brackets); BadInput otherwise."""
    shown = repr(url) if len(url) <= 80 else repr(url[:77]) + "…"
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed bracket, or brackets round what is no IPv6 address
        raise BadInput(f"{option} {shown}: give ssh://user@host[:port], an IPv6 address "
                       "in [brackets]") from None
    if parsed.scheme != "ssh" or not parsed.hostname:
        raise BadInput(f"{option} {shown}: give ssh://user@host[:port]")
    if parsed.password is not None:
        raise BadInput(f"{option}: a password in the URL would show in process lists and "
                       "shell history; use --password-env VAR or --password-prompt")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise BadInput(f"{option} {shown}: nothing may follow host[:port]")
    try:
        port = 22 if parsed.port is None else parsed.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:  # port 0 is no port to connect to, not "the default"
        raise BadInput(f"{option} {shown}: the port must be a number 1-65535")
    user = urllib.parse.unquote(parsed.username or "")
    if not user:
        raise BadInput(f"{option} {shown}: name the user (ssh://user@host)")
    if not _is_host(parsed.hostname):
        raise BadInput(f"{option} {shown}: not a host name or address (a name is labels of "
                       "1-63 letters, digits, '-' or '_', 253 characters in all)")
    return Target(user, parsed.hostname, port)


_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.I)


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name the resolver can be asked for (RFC 1035's lengths)."""
    if ":" in host:  # urlsplit has checked a bracketed IPv6 address already
        return True
    try:
        name = host.encode("idna").decode("ascii")  # what the resolver is given
    except UnicodeError:  # a label over 63 characters, an empty one, no valid IDN
        return False
    name = name.removesuffix(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True)
class Login:
    """How to authenticate. With nothing chosen: the SSH agent and the default keys."""

    identities: tuple[Path, ...] = ()
    agent: bool = False
    password: str | None = field(default=None, repr=False)

    @property
    def chosen(self) -> bool:
        return bool(self.identities or self.agent or self.password is not None)

    def describe(self) -> str:
        """The methods tried, for a refusal message (never the password itself)."""
        if not self.chosen:
            return "ssh agent and default keys"
        parts = [f"key {p}" for p in self.identities]
        parts += ["ssh agent"] * self.agent + ["password"] * (self.password is not None)
        return ", ".join(parts)


def password_from(env: str | None, prompt: bool, target: str) -> str | None:
    """The password from an environment variable or a prompt (never an argument).

    Without a terminal, the prompt reads the first line of standard input.
    """
    if env is not None and prompt:
        raise BadInput("give --password-env or --password-prompt, not both")
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise BadInput(f"--password-env {env}: no such environment variable")
        return value
    if prompt:
        if sys.stdin is None:  # started with standard input closed (`0<&-`)
            raise BadInput("--password-prompt: no password: standard input is closed")
        if not sys.stdin.isatty():  # a pipe: its first line, without getpass's warning
            try:
                line = sys.stdin.readline(MAX_PASSWORD + 1)
            except UnicodeDecodeError:
                raise BadInput("--password-prompt: no password: standard input is not "
                               "text") from None
            except (OSError, ValueError) as exc:  # a closed stream
                raise BadInput("--password-prompt: no password: cannot read standard "
                               f"input ({getattr(exc, 'strerror', None) or exc})") from None
            if not line:
                raise BadInput("--password-prompt: no password: standard input is empty")
            password = line.rstrip("\r\n")
            if len(password) > MAX_PASSWORD:  # /dev/zero, a file that is no password
                raise BadInput(f"--password-prompt: no password: the first line of standard "
                               f"input is longer than {MAX_PASSWORD} characters")
            return password
        try:
            return getpass.getpass(f"password for {target}: ")
        except EOFError:
            raise BadInput("--password-prompt: no password given (end of input)") from None
    return None


@dataclass(frozen=True)
class Trust:
    """Which host keys to accept: those in known_hosts, and one fingerprint if given."""

    known_hosts: Path
    accept: tuple[str, ...] = ()  # fingerprints "SHA256:..." as `ssh-keygen -l` prints them

    def known(self, name: str) -> dict[str, paramiko.PKey]:
        if not self.known_hosts.is_file():
            return {}
        try:
            keys = paramiko.HostKeys(str(self.known_hosts)).lookup(name)
        except (OSError, paramiko.SSHException) as exc:
            raise BadInput(f"{self.known_hosts}: cannot read known_hosts: {exc}") from None
        return dict(keys) if keys is not None else {}


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


class _UnknownKey(Exception):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__(key.fingerprint)
        self.key = key


class _Verify(paramiko.MissingHostKeyPolicy):
    """A key known_hosts does not name: accepted only if it is the fingerprint given."""

    def __init__(self, accept: tuple[str, ...]) -> None:
        self.accept = accept

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if key.fingerprint not in self.accept:
            raise _UnknownKey(key)


class ReadOnlyBackend(ParamikoBackend):  # type: ignore[misc]
    """testinfra's paramiko backend with verified host keys, an allowlist and deadlines."""

    def __init__(self, target: Target, login: Login, trust: Trust,
                 timeout: float = COMMAND_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        host = f"[{target.host}]" if ":" in target.host else target.host
        super().__init__(f"{target.user}@{host}:{target.port}", timeout=int(connect_timeout))
        self.target = target
        self.login = login
        self.trust = trust
        self.command_timeout = timeout
        self.connect_timeout = connect_timeout

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        try:
            return self._connect(known=True)
        except paramiko.BadHostKeyException as exc:
            offered = exc.key.fingerprint
            if offered in self.trust.accept:
                return self._connect(known=False)
            raise BadInput(
                f"{self.target}: REFUSED: the host key has changed: the server offers "
                f"{exc.key.get_name()} {offered}, {self.trust.known_hosts} has "
                f"{exc.expected_key.fingerprint}; if the change is expected (checked out of "
                f"band), pass --accept-host-key {offered}") from None

    def _connect(self, known: bool) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        name = self.target.known_hosts_name
        if known:
            for keytype, key in self.trust.known(name).items():
                client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(_Verify(self.trust.accept))
        options: dict[str, Any] = {
            "hostname": self.target.host, "port": self.target.port,
            "username": self.target.user, "timeout": self.connect_timeout,
            "banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout,
            "allow_agent": self.login.agent or not self.login.chosen,
            "look_for_keys": not self.login.chosen,
        }
        if self.login.identities:
            options["key_filename"] = [str(p) for p in self.login.identities]
        if self.login.password is not None:
            options["password"] = self.login.password
        try:
            client.connect(**options)
        except _UnknownKey as exc:
            client.close()
            raise BadInput(
                f"{self.target}: REFUSED: unknown host key {exc.key.get_name()} "
                f"{exc.key.fingerprint} (not in {self.trust.known_hosts}); check it out of "
                f"band, then add it to known_hosts or pass --accept-host-key "
                f"{exc.key.fingerprint}") from None
        except paramiko.BadHostKeyException:
            client.close()
            raise
        except paramiko.PasswordRequiredException:
            client.close()
            raise BadInput(f"{self.target}: the private key is encrypted: load it into the "
                           "ssh agent and use --agent") from None
        except paramiko.AuthenticationException:
            client.close()
            raise BadInput(f"{self.target}: authentication refused for user "
                           f"{self.target.user} (tried: {self.login.describe()})") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise BadInput(f"{self.target}: cannot connect: {_reason(exc)}") from None
        return client

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        line = self.get_command(command, *args)
        if not allowed(line):
            raise NotAllowed(f"not on the audit's allowlist: {line!r}")
        return super().run(command, *args, **kwargs)

    def _exec_command(self, command: bytes) -> tuple[int, bytes, bytes]:
        transport = self.client.get_transport()
        if transport is None:  # paramiko's client is closed (or never connected)
            raise BadInput(f"{self.target}: the SSH connection is closed; "
                           f"`{command.decode()}` was not sent")
        deadline = time.monotonic() + self.command_timeout
        channel = transport.open_session(timeout=self.command_timeout)
        try:
            channel.exec_command(command)
            out = _drain(channel, channel.recv, deadline)
            err = _drain(channel, channel.recv_stderr, deadline)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError()
            return channel.recv_exit_status(), out, err
        except TimeoutError:
            raise RemoteTimeout(f"{self.target}: `{command.decode()}` did not finish within "
                                f"{self.command_timeout:g} s") from None
        finally:
            channel.close()


def _drain(channel: paramiko.Channel, receive: Any, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        channel.settimeout(max(0.001, deadline - time.monotonic()))
        chunk: bytes = receive(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()})
        if reasons == ["Connection refused"]:
            return "connection refused (is sshd listening on that address and port?)"
        return "; ".join(reasons) or str(exc)
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def connect(target: Target, login: Login, trust: Trust,
            timeout: float = COMMAND_TIMEOUT) -> Host:
    """A testinfra Host for the gateway, connected (refusals raise BadInput now)."""
    for identity in login.identities:
        if not identity.is_file():
            raise BadInput(f"--identity {identity}: no such key file")
    backend = ReadOnlyBackend(target, login, trust, timeout)
    host = Host(backend)
    backend.set_host(host)
    backend.client  # noqa: B018  (connect now, so that refusals come first)
    return host
