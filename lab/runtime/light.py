"""Light clients: a bare network namespace each, with its veth to its segment's bridge.

A client declared in bulk (a site file's `clients:`) needs no shell: no Mininet
host, no process at all until a probe runs from it (its agent is started then).
A thousand are made in a few batches of `ip -batch` (one process for all the
namespaces, one for all the links, one per bridge) and one `ip -n NS -batch` per
client for its addresses and routes: namespaces are the run's (`PREFIX-clientN`),
so the run's teardown removes them with the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabFailure
from lab.model.site import Node, Site
from lab.runtime.handle import NodeHandle
from lab.runtime.lifecycle import NETNS_ROOT, Run
from lab.runtime.nodes import host_resolvers

# Each client's own batch is a process; the kernel's rtnl lock serialises most of
# the work, so a few at a time fill two cores.
WORKERS = 4


def port_name(index: int) -> str:
    """The bridge's side of light client number `index`.

    A '_' is in no name of a site (nodes' and segments' are [a-z0-9-]): it never
    meets the ports Mininet's builder names SEGMENT-NODE.
    """
    return f"c_{index}"


class LightHandle(NodeHandle):
    """A light client: programs run in its namespace by nsenter (it has no shell)."""

    def __init__(self, name: str, namespace: str, folder: Path) -> None:
        super().__init__(name, None, folder)
        self.namespace = namespace

    @property
    def pid(self) -> int:
        raise LabFailure(f"{self.name} is a light client (a bare namespace, no process of "
                         "its own): give it as a host of the site's hosts: for this")

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(["nsenter", f"--net={NETNS_ROOT / self.namespace}", "--",
                                 *argv], **options)

    def listening(self) -> set[int]:
        ports: dict[str, set[int]] = {}
        for table in ("tcp", "tcp6"):
            _, out, _ = self.exec(["cat", f"/proc/self/net/{table}"], timeout=10)
            ports[table] = {int(ln.split()[1].rsplit(":", 1)[1], 16)
                            for ln in out.splitlines()[1:] if ln.split()[3] == "0A"}
        return ports["tcp"] & ports["tcp6"]


def _batch(lines: Iterable[str], namespace: str | None = None) -> None:
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    done = subprocess.run(argv, input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise LabFailure(f"cannot make the light clients: {' '.join(argv)}: "
                         f"{said[0] if said else f'status {done.returncode}'}")


def mac(index: int) -> str:
    """Light client number `index`'s MAC address (locally administered)."""
    return "02:25:" + ":".join(f"{b:02x}" for b in index.to_bytes(4, "big"))


def _router_macs(site: Site, run: Run) -> dict[str, list[tuple[str, str, str]]]:
    """Per segment: each router's (interface, MAC, address) there."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for name in site.routers:
        router = site.role(name)
        done = subprocess.run(["ip", "-n", run.netns(name), "-j", "link", "show"],
                              capture_output=True, text=True, check=False)
        macs = {link["ifname"]: link.get("address", "") for link in json.loads(done.stdout or "[]")}
        for interface in router.interfaces:
            found.setdefault(interface.segment, []).extend(
                (interface.name, macs.get(interface.name, ""), cidr.split("/")[0])
                for cidr in interface.addresses)
    return found


def _own_lines(node: Node, routers: list[tuple[str, str, str]]) -> list[str]:
    """A light client's addresses, links, routes and neighbours, as `ip -batch` lines."""
    (interface,) = node.interfaces
    # no duplicate address detection: its IPv6 addresses are usable at once
    lines = ["link set lo up",
             *(f"addr add {cidr} dev {interface.name}{' nodad' if ':' in cidr else ''}"
               for cidr in interface.addresses),
             f"link set {interface.name} up"]
    # Permanent neighbours both ways: the kernel's neighbour tables are the host's, shared
    # by every namespace, and full at gc_thresh3 (1024) entries; permanent ones do not
    # count (a thousand clients and their router need two thousand; the host is not ours
    # to change).
    lines += [f"neigh replace {address} lladdr {lladdr} dev {interface.name} nud permanent"
              for _, lladdr, address in routers if node.has(6 if ":" in address else 4)]
    lines += [f"route replace {r.destination} via {r.via}" for r in node.routes]
    # as LabHost: the host's resolvers unreachable (no query leaves for the world)
    lines += [f"route replace unreachable {r}" for r in host_resolvers()
              if node.has(6 if ":" in r else 4) and not r.startswith("127.") and r != "::1"]
    return lines


def make(site: Site, run: Run, inodes: set[int]) -> dict[str, NodeHandle]:
    """Make the site's light clients in the run; their handles by name.

    Their namespaces' inodes join `inodes` (teardown kills by them) as they are made.
    The segments' bridges must be up, in their namespaces `PREFIX-SEGMENT`.
    """
    light = site.light_nodes
    if not light:
        return {}
    _batch(f"netns add {run.netns(n.name)}" for n in light)
    for node in light:
        inodes.add(os.stat(NETNS_ROOT / run.netns(node.name)).st_ino)
    _batch(f"link add name {n.interfaces[0].name} address {mac(i)} netns {run.netns(n.name)} "
           "type veth "
           f"peer name {port_name(i)} netns {run.netns(n.interfaces[0].segment)}"
           for i, n in enumerate(light))
    for segment in site.segments:
        ports = [port_name(i) for i, n in enumerate(light) if n.interfaces[0].segment ==
                 segment.name]
        if ports:
            _batch((f"link set {p} master {segment.name} up" for p in ports),
                   run.netns(segment.name))
    routers = _router_macs(site, run)
    for name in site.routers:
        lines = [f"neigh replace {cidr.split('/')[0]} lladdr {mac(i)} dev {own.name} "
                 "nud permanent"
                 for own in site.role(name).interfaces
                 for i, n in enumerate(light) if n.interfaces[0].segment == own.segment
                 for cidr in n.interfaces[0].addresses
                 if own.of_family(6 if ":" in cidr else 4)]
        if lines:
            _batch(lines, run.netns(name))
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda n: _batch(_own_lines(n, routers.get(n.interfaces[0].segment, [])),
                                       run.netns(n.name)), light))
    return {n.name: LightHandle(n.name, run.netns(n.name), run.folder / n.name) for n in light}
