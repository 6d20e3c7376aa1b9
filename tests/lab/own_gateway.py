"""A gateway built outside the lab's sites: plain network namespaces, its own names and addresses.

The namespaces are made here, not by the lab: a LAN on ens18 (192.0.2.0/24 and
2001:db8:cafe::/64, its mail server .25 and ::25), the WAN on ens19
(198.51.100.1/24, 2001:db8:ffff:1::1/64, default routes via .254 and ::fe),
management on ens20 (203.0.113.1/28 and 2001:db8:e20::1/64), a private sshd there
(the lab's own sshd service, on a handle of the plain namespace). Its rules are
whatever the test loads. The auditor runs `port25lab audit` in the management
namespace. The namespaces carry a run's prefix (so that the lab's teardown removes
them and what runs in them) and none is linked to the host's.

    PREFIX-lan ── ens18 ┐
                        PREFIX-gw ── ens19 ── PREFIX-up (198.51.100.254)
    PREFIX-admin ─ ens20 ┘
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lab.runtime import lifecycle
from lab.runtime.handle import NodeHandle
from lab.services import service, sshd
from tests.audit_support import Namespace
from tests.support import CLI, leftovers

GW = "203.0.113.1"
MANAGEMENT = ("203.0.113.1/28", "2001:db8:e20::1/64")  # ens20: where its sshd listens


@dataclass(frozen=True)
class Gateway:
    run: lifecycle.Run
    ssh: sshd.Instance

    def inside(self, name: str, *argv: str, stdin: str | None = None) -> str:
        """Run a program in one of the gateway's namespaces (network only; it must succeed)."""
        done = subprocess.run(["nsenter", f"--net=/run/netns/{self.run.netns(name)}", *argv],
                              input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, f"{name}: {argv}: {done.stderr}"
        return done.stdout

    def audit(self, *args: str) -> tuple[int, str, str]:
        """`port25lab audit` as the auditor on the management network runs it."""
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.run.netns('admin')}", CLI, "audit",
             f"ssh://root@{GW}", "-i", str(self.ssh.client_key), "--known-hosts",
             str(self.ssh.known_hosts), "--management", "ens20", "-q", *args],
            capture_output=True, text=True, timeout=600, check=False)
        return done.returncode, done.stdout, done.stderr


def _build(run: lifecycle.Run) -> None:
    """The namespaces, links, addresses and routes: nothing of it in the host's namespace."""
    def ip(namespace: str, *argv: str) -> None:
        subprocess.run(["ip", "-n", run.netns(namespace), *argv], check=True, timeout=30)

    for name in ("gw", "lan", "up", "admin"):
        subprocess.run(["ip", "netns", "add", run.netns(name)], check=True, timeout=30)
        ip(name, "link", "set", "lo", "up")
    links = {"ens18": ("lan", ["192.0.2.1/24", "2001:db8:cafe::1/64"],
                       ["192.0.2.2/24", "2001:db8:cafe::2/64"]),
             "ens19": ("up", ["198.51.100.1/24", "2001:db8:ffff:1::1/64"],
                       ["198.51.100.254/24", "2001:db8:ffff:1::fe/64"]),
             "ens20": ("admin", list(MANAGEMENT), ["203.0.113.2/28", "2001:db8:e20::2/64"])}
    for ifname, (peer, mine, theirs) in links.items():
        ip("gw", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns",
           run.netns(peer))
        for namespace, device, addresses in (("gw", ifname, mine), (peer, "eth0", theirs)):
            for cidr in addresses:
                ip(namespace, "address", "add", cidr, "dev", device, *(
                    ["nodad"] if ":" in cidr else []))
            ip(namespace, "link", "set", device, "up")
    ip("gw", "route", "add", "default", "via", "198.51.100.254")
    ip("gw", "-6", "route", "add", "default", "via", "2001:db8:ffff:1::fe")


@contextmanager
def gateway(load: Callable[[Gateway], object]) -> Iterator[Gateway]:
    """The gateway, forwarding, with its rules loaded by `load` and its sshd ready."""
    run = lifecycle.new_run()
    services: list[service.Service] = []
    holders: list[subprocess.Popen[Any]] = []
    try:
        _build(run)
        no_fail2ban = run.folder / "no-fail2ban"  # not the host's fail2ban: none at all
        no_fail2ban.mkdir()
        namespace = Namespace(run.netns("gw"))
        holders.append(namespace.holder)
        server = sshd.Sshd(NodeHandle("gw", namespace, run.folder / "gw"),
                           tuple(c.split("/")[0] for c in MANAGEMENT),
                           mounts={"/etc/fail2ban": no_fail2ban})
        services.append(server)
        found = Gateway(run, server.instance)
        found.inside("gw", "sysctl", "-qw", "net.ipv4.ip_forward=1",
                     "net.ipv6.conf.all.forwarding=1")
        load(found)
        assert service.start(services) == {}
        service.wait_ready(services)
        yield found
    finally:
        service.stop_all(services, also=holders)
        lifecycle.destroy(run)  # what is left in the run's namespaces, and them
    assert leftovers(run.prefix) == []
