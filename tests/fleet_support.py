"""A fleet of gateways made of plain network namespaces, each with its own rules and sshd.

Every gateway `PREFIX-gwNN` is the gateway of tests/lab/test_twin_site.py without
its neighbours: its LAN ens18 and WAN ens19 are veths with both ends in it, with
that test's addressing and default routes; its management ens20 is a veth into
the auditor's namespace `PREFIX-admin`, where a bridge joins them all
(203.0.113.NN/24 and 2001:db8:e20::NN/64; the auditor is .254 and ::fe). Each
runs the correct rules of tests/audit_support.py, or a leak made from them, and
a private sshd (lab.services.sshd). One fail2ban with fixed-trap's jail, in the
auditor's namespace, is every gateway's: their sshd sessions see its
configuration as /etc/fail2ban, and its socket is a file. One address on the
bridge answers nothing. Nothing is linked to the host's namespace; the run's
teardown removes it all.

Used by tests/lab/test_fleet.py, and by whatever measures a fleet audit's time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.runtime import lifecycle
from lab.runtime.handle import NodeHandle
from lab.services import service, sshd, trap
from lab.services.service import Service
from tests.audit_support import RULES, Namespace
from tests.support import CLI, leftovers

NETWORK, NETWORK6 = "203.0.113", "2001:db8:e20:"
AUDITOR, AUDITOR6 = f"{NETWORK}.254", f"{NETWORK6}:fe"
UNREACHABLE = f"{NETWORK}.99"  # on the bridge's network; nobody answers ARP for it
JAIL = Path(__file__).resolve().parent.parent / "scenarios" / "fixed-trap" / "jail.local"
# how a gateway departs from the correct rules (applied after them), and what it then fails
LEAKS = {
    "no-ipv6": ["ip6tables", "-F", "FORWARD"],  # forgot IPv6 altogether
    "no-ipv4-drop": ["iptables", "-D", "FORWARD", "-i", "ens18", "-p", "tcp", "-m",
                     "multiport", "-s", "192.0.2.0/24", "--dports", "25,465", "-j", "DROP"],
}


@dataclass(frozen=True)
class Member:
    name: str  # gwNN
    address: str
    # "correct", a key of LEAKS, "unknown-key" (left out of known_hosts) or
    # "refused-login" (authorizes no key)
    kind: str
    ssh: sshd.Instance

    @property
    def target(self) -> str:
        return f"ssh://root@{self.address}"


@dataclass(frozen=True)
class Fleet:
    run: lifecycle.Run
    members: tuple[Member, ...]
    known_hosts: Path  # every gateway's key but the unknown one's
    key: Path  # authorized on every gateway
    inventory: Path  # an Ansible inventory of them all, each with its own key

    def named(self, *kinds: str) -> set[str]:
        return {m.name for m in self.members if m.kind in kinds}

    def in_admin(self, *argv: str, timeout: float = 600) -> tuple[int, str, str]:
        """A program in the auditor's namespace."""
        done = subprocess.run(["nsenter", f"--net=/run/netns/{self.run.netns('admin')}",
                               *argv], capture_output=True, text=True, timeout=timeout,
                              check=False)
        return done.returncode, done.stdout, done.stderr

    def audit(self, *args: str) -> tuple[int, str, str]:
        """`port25lab audit ARGS` as the auditor runs it, trusting the fleet's keys."""
        return self.in_admin(CLI, "audit", "--known-hosts", str(self.known_hosts),
                             "--management", "ens20", *args)


def _ip(namespace: str, commands: list[str]) -> None:
    """`ip` commands in one namespace, in one batch (one process, not one per command)."""
    subprocess.run(["ip", "-n", namespace, "-batch", "-"], input="\n".join(commands) + "\n",
                   text=True, check=True, timeout=60)


def _build(run: lifecycle.Run, count: int) -> None:
    admin = run.netns("admin")
    names = [f"gw{n:02d}" for n in range(1, count + 1)]
    for name in ["admin", *names]:
        subprocess.run(["ip", "netns", "add", run.netns(name)], check=True, timeout=30)
    _ip(admin, ["link set lo up", "link add br0 type bridge", f"addr add {AUDITOR}/24 dev br0",
                f"addr add {AUDITOR6}/64 dev br0 nodad",
                "link set br0 up",
                *(c for n, name in enumerate(names, 1) for c in (
                    f"link add v{n} type veth peer name ens20 netns {run.netns(name)}",
                    f"link set v{n} master br0", f"link set v{n} up"))])
    for n, name in enumerate(names, 1):
        _ip(run.netns(name), [
            "link set lo up",
            # each end's peer stays in the gateway: the link is up, nothing is behind it
            "link add ens18 type veth peer name lan", "addr add 192.0.2.1/24 dev ens18",
            "addr add 2001:db8:cafe::1/64 dev ens18 nodad", "link set ens18 up",
            "link set lan up",
            "link add ens19 type veth peer name wan", "addr add 198.51.100.1/24 dev ens19",
            "addr add 2001:db8:ffff:1::1/64 dev ens19 nodad", "link set ens19 up",
            "link set wan up",
            f"addr add {NETWORK}.{n}/24 dev ens20",
            f"addr add {NETWORK6}:{n:x}/64 dev ens20 nodad", "link set ens20 up",
            "route add default via 198.51.100.254",
            "route add default via 2001:db8:ffff:1::fe"])  # ip tells the family by the address


def _inside(run: lifecycle.Run, name: str, argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(["nsenter", f"--net=/run/netns/{run.netns(name)}", *argv],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{name}: {argv}: {done.stderr}"
    return done.stdout


def _rules(run: lifecycle.Run, names: list[str]) -> None:
    """The correct rules on every gateway: written once, then restored from that one's save."""
    first = names[0]
    _inside(run, first, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                         "net.ipv6.conf.all.forwarding=1"])
    _inside(run, first, ["sh", "-e"], stdin=RULES)
    saved = {tool: _inside(run, first, [f"{tool}-save"]) for tool in ("iptables", "ip6tables")}
    for name in names[1:]:
        _inside(run, name, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                            "net.ipv6.conf.all.forwarding=1"])
        for tool, text in saved.items():
            _inside(run, name, [f"{tool}-restore"], stdin=text)


@contextmanager
def fleet(kinds: list[str]) -> Iterator[Fleet]:
    """A gateway per kind (gw01 is the first), all up and ready; torn down on leaving."""
    run = lifecycle.new_run()
    services: list[Service] = []
    holders: list[subprocess.Popen[Any]] = []
    try:
        names = [f"gw{n:02d}" for n in range(1, len(kinds) + 1)]
        _build(run, len(kinds))
        _rules(run, names)
        for name, kind in zip(names, kinds, strict=True):
            if kind in LEAKS:
                _inside(run, name, LEAKS[kind])
        admin = Namespace(run.netns("admin"))
        holders.append(admin.holder)
        log = run.folder / "firewall.log"  # the jail's log: nothing is ever written to it
        log.touch()
        banner = trap.Fail2ban(NodeHandle("admin", admin, run.folder / "admin"), (JAIL,),
                               {"firewall_log": str(log)})
        services.append(banner)
        members = []
        for n, (name, kind) in enumerate(zip(names, kinds, strict=True), 1):
            namespace = Namespace(run.netns(name))
            holders.append(namespace.holder)
            server = sshd.Sshd(NodeHandle(name, namespace, run.folder / name),
                               (f"{NETWORK}.{n}", f"{NETWORK6}:{n:x}"),
                               mounts={"/etc/fail2ban": banner.instance.conf})
            services.append(server)
            members.append(Member(name, f"{NETWORK}.{n}", kind, server.instance))
        assert service.start(services) == {}
        service.wait_ready(services)
        shared = members[0].ssh.client_key
        for m in members[1:]:  # gw01's key opens every gateway (besides each one's own) ...
            with (m.ssh.root / "authorized_keys").open("a") as keys:
                keys.write(Path(f"{shared}.pub").read_text())
            if m.kind == "refused-login":  # ... but this one, which takes no key at all
                (m.ssh.root / "authorized_keys").write_text("")
        known = run.folder / "known_hosts"
        known.write_text("".join(m.ssh.known_hosts.read_text() for m in members
                                 if m.kind != "unknown-key"))
        inventory = run.folder / "hosts.ini"
        inventory.write_text("[gateways]\n" + "".join(
            f"{m.name} ansible_host={m.address} ansible_user=root "
            f"ansible_ssh_private_key_file={m.ssh.client_key}\n" for m in members) +
            f"[elsewhere]\nunreachable ansible_host={UNREACHABLE} ansible_user=root\n")
        yield Fleet(run, tuple(members), known, shared, inventory)
    finally:
        service.stop_all(services, also=holders)
        lifecycle.destroy(run)
    assert leftovers(run.prefix) == []
