"""Mininet node classes for the lab: hosts and routers configured from a site,
and a Linux bridge that lives in a namespace of its own."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any

from mininet.link import Link
from mininet.node import Host
from mininet.nodelib import LinuxBridge

from lab.model.site import Interface, Route
from lab.runtime import lifecycle


def sysctls(settings: tuple[tuple[str, int], ...], optional: bool = False) -> str:
    """A shell command that sets sysctls with the shell's own `echo` (no process spawned).

    /proc/sys shows the namespace of the process reading it: the node's shell writes its
    node's. `optional`: a key that does not exist (a module not loaded) is skipped.
    """
    writes = [f"echo {value} > /proc/sys/{key.replace('.', '/')}"
              for key, value in settings]
    return "; ".join(f"{{ {w}; }} 2>/dev/null" if optional else w for w in writes)


_NO_DAD = (("net.ipv6.conf.all.accept_dad", 0), ("net.ipv6.conf.default.accept_dad", 0),
           ("net.ipv6.conf.default.dad_transmits", 0), ("net.ipv6.conf.all.dad_transmits", 0),
           ("net.ipv6.conf.default.accept_ra", 0),
           ("net.ipv6.conf.default.router_solicitations", 0))


def host_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The name servers the host's resolver would ask (nodes share its /etc)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.ip_address(words[1].split("%")[0])))
    return tuple(found)


class LabHost(Host):  # type: ignore[misc]
    """A host whose interfaces and routes come from the site.

    Duplicate address detection is off before any link exists: otherwise IPv6
    addresses stay tentative for about a second after boot. Its addresses, links and
    routes are one `ip -batch` (one process, not one shell command each), and at the end
    its interfaces go in one command (their bridge-side peers with them).
    """

    settings: tuple[tuple[str, int], ...] = _NO_DAD

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        said = self.cmd(sysctls(self.settings))
        if said.strip():
            raise RuntimeError(f"{name}: {said.strip()}")

    def config(self, interfaces: tuple[Interface, ...] = (), routes: tuple[Route, ...] = (),
               **params: Any) -> dict[str, Any]:
        # Mininet's own config would only bring lo up (`ifconfig lo up`: a command more):
        # the site says everything else, and lo comes up in the batch
        commands = ["link set lo up"]
        for interface in interfaces:
            commands += [f"addr add {cidr} dev {interface.name}" for cidr in interface.addresses]
            commands.append(f"link set {interface.name} up")
        # (in a batch the family comes from the addresses: no -4/-6 per line)
        commands += [f"route replace {route.destination} via {route.via}" for route in routes]
        # No name service in the lab. A query for the host's resolver would
        # otherwise travel the lab's default routes and wait for a timeout
        # (Postfix's master waited 2 s); unreachable routes fail it at once, and
        # no packet for an address outside the lab is ever sent.
        for resolver in host_resolvers():
            if not resolver.startswith("127.") and resolver != "::1":
                commands.append(f"route replace unreachable {resolver}")
        ip_batch(self, commands)
        return {}

    def delete_links(self) -> None:
        """Start deleting its interfaces (deleting a veth end deletes its peer); the caller
        waits for it (`waitOutput`), so that many hosts delete theirs at once.

        Through the node's shell, as Mininet's own stop would: Mininet refuses a node whose
        shell is still busy with a command.
        """
        names = [name for name in self.intfNames() if name != "lo"]
        self.sendCmd("; ".join(f"ip link del {name}" for name in names) or "true")


def ip_batch(node: Any, commands: list[str]) -> None:
    """Run `ip` commands in a node as one `ip -batch`; RuntimeError naming one that failed."""
    failed = lifecycle.ip_batch(commands, node.popen)
    if failed:
        raise RuntimeError(f"{node.name}: {failed}")


class LabRouter(LabHost):
    """A Linux router (forwarding on for both families)."""

    settings = (*_NO_DAD, ("net.ipv4.ip_forward", 1), ("net.ipv6.conf.all.forwarding", 1))


class LabLink(Link):  # type: ignore[misc]
    """A veth pair made from the bridge's side, its bridge port up as it is made.

    The kernel tells a bridge that its port has carrier only at its next link-watch run
    (up to a second after the one before): the earlier both ends are up, the sooner the
    lab can forward. The host brings its end up in its batch (LabHost.config); Mininet
    neither brings ends up one by one nor deletes them one by one: at the end the host
    deletes its ends (LabHost.delete_links) and the peers go with them.
    """

    def __init__(self, node1: Any, node2: Any, **params: Any) -> None:
        # up=None: Mininet's Intf skips its `ifconfig up` (one shell command per end)
        for side in ("params1", "params2"):
            params[side] = {**(params.get(side) or {}), "up": None}
        super().__init__(node1, node2, **params)

    @classmethod
    def makeIntfPair(cls, intfname1: str, intfname2: str, addr1: Any = None,
                     addr2: Any = None, node1: Any = None, node2: Any = None,
                     deleteIntfs: bool = True) -> None:
        said = node1.cmd(f"ip link add name {intfname1} up type veth peer name {intfname2} "
                         f"netns {node2.pid}")
        if said.strip():
            raise RuntimeError(f"cannot make the link {intfname1}-{intfname2}: {said.strip()}")

    def stop(self) -> None:
        pass


class LabBridge(LinuxBridge):  # type: ignore[misc]
    """A Linux bridge created inside its own network namespace.

    The host's root namespace has bridge-nf-call-iptables=1, which would push
    bridged lab traffic through the host's own firewall; inside a fresh
    namespace the lab sets it to 0. Mininet's addSwitch passes
    inNamespace=False, so it is forced here. It is made, given its ports and brought
    up with one `ip -batch`; it ends with its namespace.
    """

    def __init__(self, name: str, **params: Any) -> None:
        params["inNamespace"] = True
        params.setdefault("dpid", "1")  # unused (no OpenFlow), but Switch wants one
        super().__init__(name, **params)

    def start(self, controllers: Any) -> None:
        # br_netfilter's sysctls only exist where the module is loaded; a missing
        # key is fine (then nothing calls iptables for bridged frames here).
        self.cmd(sysctls((("net.bridge.bridge-nf-call-iptables", 0),
                          ("net.bridge.bridge-nf-call-ip6tables", 0),
                          ("net.bridge.bridge-nf-call-arptables", 0)), optional=True)
                 + "; " + sysctls(_NO_DAD))
        ports = [i.name for i in self.intfList() if self.name in i.name]
        ip_batch(self, [f"link add {self.name} type bridge",
                        *(f"link set {port} master {self.name}" for port in ports),
                        f"link set {self.name} up"])

    def stop(self, deleteIntfs: bool = True) -> None:
        # its ports were deleted with their peers; the bridge goes with its namespace
        self.terminate()
