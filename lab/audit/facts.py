"""What an audit reads from a live gateway (and its mail server): the audit facts.

Only allowlisted commands are run (see `lab.audit.remote`), each once; their output
is kept as it came, and the properties below read it. A command the gateway
must have (iptables-save, ...) that is missing or fails is bad input: one line
naming the host and the command. Optional ones (nft, fail2ban-client, doveconf)
are recorded as absent.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from ipaddress import ip_interface
from typing import Any

from lab.audit.remote import (
    ALLOWED,
    COMMAND_TIMEOUT,
    NotAllowed,
    ReadOnlyBackend,
    RemoteTimeout,
    allowed,
    jail_status,
)
from lab.errors import BadInput
from lab.netfilter import nft_paths
from lab.netfilter.family import IPv4, IPv6, family

# `2026-11-28 07:06:30,861 fail2ban   [24940]: ERROR   ` before fail2ban-client's message
_LOG_HEAD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ \S+\s+\[\d+\]: [A-Z]+\s+")
# the tables iptables-nft keeps in nftables (iptables-save shows them)
_XTABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
MISSING = 127  # what a POSIX shell answers for a command it cannot find

SYSCTLS = "sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding"
ADDRESSES = "ip -json address show"
ROUTES = {4: "ip -json route show", 6: "ip -6 -json route show"}
NFT = "nft list ruleset"
NFT_JSON = "nft -j list ruleset"  # what the static checks read; the text gives rules' text
FAIL2BAN = "fail2ban-client status"
POSTCONF_MAIN, POSTCONF_MASTER = "postconf -n", "postconf -M"
DOVECONF = next(c for c in ALLOWED if c.startswith("doveconf "))

REQUIRED = (IPv4().save, IPv6().save, SYSCTLS, ADDRESSES)
# the routes only the twin needs (a gateway without IPv6 may refuse `ip -6`)
OPTIONAL = (NFT, NFT_JSON, FAIL2BAN, *ROUTES.values())
MAIL_REQUIRED = (POSTCONF_MAIN, POSTCONF_MASTER)
MAIL_OPTIONAL = (DOVECONF,)


@dataclass(frozen=True)
class Output:
    """One remote command as it ran: exit status and output."""

    command: str
    status: int
    stdout: str
    stderr: str

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    @property
    def ok(self) -> bool:
        return self.status == 0

    def first_error(self) -> str:
        """The first line of the error, without a logger's time stamp and level."""
        for line in (self.stderr + "\n" + self.stdout).splitlines():
            if line.strip():
                return _LOG_HEAD.sub("", line).strip()
        return f"exit status {self.status}"


Runner = Callable[[str], Output]


def runner(host: Any, name: str, timeout: float = COMMAND_TIMEOUT) -> Runner:
    """Run allowlisted commands on a testinfra host, each within a deadline.

    The audit's own backend enforces both itself; any other testinfra backend
    (e.g. `--hosts=ssh://...` in the pytest form) gets them here.
    """
    own = isinstance(host.backend, ReadOnlyBackend)
    pool = None if own else ThreadPoolExecutor(max_workers=1)

    def run(command: str) -> Output:
        if not allowed(command):
            raise NotAllowed(f"not on the audit's allowlist: {command!r}")
        if pool is None:
            try:
                result = host.run(command)
            except RemoteTimeout as exc:
                raise BadInput(str(exc)) from None
        else:
            try:
                result = pool.submit(host.run, command).result(timeout=timeout)
            except FutureTimeout:
                raise BadInput(f"{name}: `{command}` did not finish within {timeout:g} s") \
                    from None
            except RuntimeError as exc:
                # testinfra's OpenSSH backend raises on 255, which is ssh's own failure
                # status and also what some commands (fail2ban-client) exit with
                result = exc.args[0] if exc.args else None
                stderr = str(getattr(result, "stderr", ""))
                if not hasattr(result, "rc") or _ssh_failed(stderr):
                    said = stderr.strip().splitlines()
                    raise BadInput(f"{name}: {said[-1] if said else exc}") from None
        return Output(command, result.rc, result.stdout, result.stderr)
    return run


def _ssh_failed(stderr: str) -> bool:
    """Whether OpenSSH's own error (not the remote command's) is in this output."""
    return any(sign in stderr for sign in (
        "Permission denied (", "Host key verification failed", "Connection refused",
        "Connection timed out", "Could not resolve hostname", "No route to host",
        "REMOTE HOST IDENTIFICATION HAS CHANGED", "Connection closed by"))


@dataclass(frozen=True)
class DefaultRoute:
    """A gateway's default route: its interface and next hop (None: a point-to-point link)."""

    family: int
    dev: str
    via: str | None


def _json_list(output: Output | None) -> list[dict[str, Any]]:
    """The objects of a JSON list `ip -json` printed ([] for none, a failure or no JSON)."""
    if output is None or not output.ok:
        return []
    try:
        data = json.loads(output.stdout or "[]")
    except ValueError:
        return []
    return [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []


@dataclass(frozen=True)
class Facts:
    """A gateway's (and optionally its mail server's) collected state."""

    gateway: str
    outputs: dict[str, Output]
    mail_server: str | None = None
    mail_outputs: dict[str, Output] = field(default_factory=dict)

    def rules(self, version: int) -> str:
        return self.outputs[family(version).save].stdout

    @property
    def forwarding(self) -> dict[str, str]:
        """sysctl name → value, for those the gateway has."""
        found = {}
        for line in self.outputs[SYSCTLS].stdout.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                found[name.strip()] = value.strip()
        return found

    @property
    def interfaces(self) -> dict[str, tuple[str, ...]]:
        """Interface name → its addresses (CIDR)."""
        return {str(i.get("ifname")): tuple(f"{a['local']}/{a['prefixlen']}"
                                            for a in i.get("addr_info", []) if "local" in a)
                for i in _json_list(self.outputs.get(ADDRESSES))}

    @property
    def global_interfaces(self) -> dict[str, tuple[str, ...]]:
        """Interface name → its addresses (CIDR), without loopback and link-local ones.

        What can be a segment: the loopback interface and addresses valid only on one
        link (fe80::/10, 169.254.0.0/16) are none. Interfaces left without an address
        are left out.
        """
        found = {}
        for name, addresses in self.interfaces.items():
            if name in self._loopbacks:
                continue
            kept = tuple(a for a in addresses if not (
                ip_interface(a).is_loopback or ip_interface(a).is_link_local))
            if kept:
                found[name] = kept
        return found

    @property
    def _loopbacks(self) -> set[str]:
        data = _json_list(self.outputs.get(ADDRESSES))
        return {str(i.get("ifname")) for i in data
                if i.get("link_type") == "loopback" or "LOOPBACK" in (i.get("flags") or [])}

    def default_route(self, version: int) -> DefaultRoute | None:
        """The main table's default route of that family (the lowest metric), if any.

        None where the gateway has none, or where its routes were not read.
        """
        found = []
        for route in _json_list(self.outputs.get(ROUTES[version])):
            if route.get("dst") != "default" or route.get("type", "unicast") != "unicast":
                continue  # blackhole, unreachable, prohibit, throw: no way out
            hops = route.get("nexthops") or [route]  # a multipath route: its first hop
            dev = hops[0].get("dev")
            if isinstance(dev, str):
                via = hops[0].get("gateway")
                found.append((int(route.get("metric") or 0), DefaultRoute(
                    version, dev, str(via) if isinstance(via, str) else None)))
        return min(found, key=lambda f: f[0])[1] if found else None

    @property
    def nft(self) -> Output | None:
        out = self.outputs.get(NFT)
        return None if out is None or out.missing else out

    @property
    def nft_state(self) -> str:
        """Why there is no nftables ruleset to read ('' where there is one)."""
        out = self.outputs.get(NFT_JSON) or self.outputs.get(NFT)
        if out is None:
            return "nft was not asked for"
        if out.missing:
            return "nft is not installed on the gateway (command not found)"
        if not out.ok:
            return f"`{out.command}` failed: {out.first_error()}"
        if self.nft_rules is None:
            return f"`{NFT_JSON}` printed no nftables JSON"
        return ""

    @functools.cached_property
    def nft_rules(self) -> nft_paths.NftRuleset | None:
        """The nftables ruleset (every table, iptables-nft's too), where nft listed it."""
        out = self.outputs.get(NFT_JSON)
        if out is None or not out.ok:
            return None
        text = self.nft.stdout if self.nft is not None and self.nft.ok else ""
        try:
            return nft_paths.parse(out.stdout, text)
        except (ValueError, KeyError, TypeError, AttributeError):  # not nft's JSON
            return None

    @property
    def xtables(self) -> frozenset[tuple[str, str]]:
        """The nftables tables iptables-nft keeps: iptables-save prints them."""
        if self.nft_rules is None:
            return frozenset()
        return nft_paths.xtables(self.nft_rules, {v: self.rules(v) for v in (4, 6)})

    @property
    def nft_only_tables(self) -> list[str]:
        """nftables tables that iptables-save does not show (made with `nft`, not iptables)."""
        if self.nft_rules is not None:
            return [f"{f} {t}" for f, t in nft_paths.native_tables(self.nft_rules,
                                                                  self.xtables)]
        if self.nft is None or not self.nft.ok:
            return []
        tables = re.findall(r"^table (\S+) (\S+)", self.nft.stdout, re.M)
        return [f"{family} {name}" for family, name in tables
                if family not in ("ip", "ip6") or name not in _XTABLES]

    def native_hooks(self, version: int) -> bool:
        """Whether a native nftables table has a base chain a forwarded packet passes."""
        rules = self.nft_rules
        if rules is None:
            return False
        return any((c.family, c.table) not in self.xtables
                   for hook in ("prerouting", "forward", "postrouting")
                   for c in rules.base_chains(hook, version))

    @property
    def fail2ban(self) -> Output | None:
        """`fail2ban-client status`, or None where fail2ban is not installed."""
        out = self.outputs.get(FAIL2BAN)
        return None if out is None or out.missing else out

    @property
    def jails(self) -> dict[str, Output]:
        return {c.split()[-1]: o for c, o in self.outputs.items()
                if c.startswith(FAIL2BAN + " ")}

    @property
    def postfix_main(self) -> dict[str, str]:
        return _settings(self.mail_outputs[POSTCONF_MAIN].stdout) \
            if POSTCONF_MAIN in self.mail_outputs else {}

    @property
    def postfix_master(self) -> list[list[str]]:
        """master.cf entries, one list of words each (`postconf -M` joins continuations)."""
        out = self.mail_outputs.get(POSTCONF_MASTER)
        return [line.split() for line in out.stdout.splitlines() if line.strip()] if out else []

    @property
    def dovecot(self) -> dict[str, str] | None:
        out = self.mail_outputs.get(DOVECONF)
        return None if out is None or not out.ok else _settings(out.stdout)

    def as_json(self) -> dict[str, Any]:
        def shown(outputs: dict[str, Output]) -> list[dict[str, Any]]:
            return [{"command": o.command, "status": o.status, "stdout": o.stdout,
                     "stderr": o.stderr} for o in outputs.values()]
        return {"gateway": self.gateway, "commands": shown(self.outputs),
                "mail_server": self.mail_server, "mail_commands": shown(self.mail_outputs)}


def _settings(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            found[name.strip()] = value.strip()
    return found


def _gather(run: Runner, name: str, required: tuple[str, ...],
            optional: tuple[str, ...]) -> dict[str, Output]:
    outputs = {}
    for command in required:
        out = run(command)
        if out.missing:
            raise BadInput(f"{name}: `{command.split()[0]}` is not installed there "
                           f"(the audit needs it): {out.first_error()}")
        if not out.ok and not (command == SYSCTLS and out.stdout.strip()):
            raise BadInput(f"{name}: `{command}` failed: {out.first_error()}")
        outputs[command] = out
    for command in optional:
        outputs[command] = run(command)
    return outputs


def collect(gateway: Runner, gateway_name: str, mail: Runner | None = None,
            mail_name: str | None = None) -> Facts:
    """Run the allowlist on the gateway (and the mail server); nothing else."""
    outputs = _gather(gateway, gateway_name, REQUIRED, OPTIONAL)
    status = outputs[FAIL2BAN]
    if status.ok:
        for jail in jail_names(status.stdout):
            outputs[jail_status(jail)] = gateway(jail_status(jail))
    mail_outputs = {}
    if mail is not None:
        mail_outputs = _gather(mail, mail_name or "mail server", MAIL_REQUIRED, MAIL_OPTIONAL)
    return Facts(gateway_name, outputs, mail_name, mail_outputs)


def jail_names(status: str) -> list[str]:
    """The jails `fail2ban-client status` lists (`Jail list: sshd, postfix-sasl`)."""
    match = re.search(r"Jail list:\s*(.*)", status)
    if not match:
        return []
    return [j.strip() for j in match.group(1).split(",") if j.strip()]
