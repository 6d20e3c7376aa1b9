"""A real Teredo tunnel with Debian's miredo, for the `teredo` probe's `tunnel` variant.

miredo-server runs on the `relay` role (a Teredo server needs two consecutive
IPv4 addresses: the relay's and the next one); Teredo clients run on the
probing client and on `remote-mx`, which then has a Teredo address of its
own. The tunnel is client to client, directly: the only IPv6 documentation
prefix, 2001:db8::/32, is also the Teredo prefix here, so every native lab
address would look like a Teredo peer; a Teredo `remote-mx` is the honest way
to get a real TCP connection to its port 25 through a Teredo interface.

While a client runs, its `2001:db8::/32 dev teredo` route would capture the
lab's native IPv6: the tunnel is taken down right after its probe.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.errors import LabFailure
from lab.model.site import TEREDO_SERVER
from lab.runtime.handle import NodeHandle
from lab.runtime.lab import Lab
from lab.services.service import Refused, Service

PREFIX = "2001:db8::"  # Teredo prefix (a /32): the documentation prefix
INTERFACE = "teredo"
RUN_DIR = Path("/run/miredo")  # miredo's privilege-separation folder (Debian's path)
QUALIFY_TIMEOUT = 10.0  # s: qualification takes about 0.15 s in the lab
EXPLAIN_AFTER = 1.0  # s: from then on, a router rule dropping the tunnel may explain the wait


class QualificationFailed(LabFailure):
    """A Teredo client did not qualify: a lab failure unless a router rule explains it."""

    def __init__(self, roles: list[str], waited: float) -> None:
        super().__init__(f"Teredo qualification failed on {', '.join(roles)} in "
                         f"{waited:.0f} s")
        self.roles = roles
        self.waited = waited


def _address(node: NodeHandle) -> str | None:
    """The global address of the node's Teredo interface, once qualified."""
    table = Path(f"/proc/{node.pid}/net/if_inet6").read_text()
    for line in table.splitlines():
        fields = line.split()
        if fields[-1] == INTERFACE and fields[3] == "00":  # scope global
            return str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    return None


def _server_addresses(lab: Lab) -> tuple[str, str]:
    first = ipaddress.IPv4Address(lab.site.one(TEREDO_SERVER).address(4))
    return str(first), str(first + 1)


def server_address(lab: Lab) -> str:
    """Where the Teredo clients qualify (the relay's first address, UDP 3544)."""
    return _server_addresses(lab)[0]


class _Miredo(Service):
    """A miredo daemon of the run (detached, with its pidfile in the run's teredo folder)."""

    grace = 1.0  # s: it takes its tunnel interface down on SIGTERM

    def __init__(self, node: NodeHandle, folder: Path, program: str, conf: str) -> None:
        super().__init__(node)
        self.name = program
        self.folder = folder
        self.program = program
        self.conf = conf
        stem = "server" if program == "miredo-server" else node.name
        self.conf_file = folder / f"{stem}.conf"
        self.pidfile = folder / f"{stem}.pid"

    def prepare(self) -> None:
        self.folder.mkdir(exist_ok=True)
        RUN_DIR.mkdir(exist_ok=True)
        self.conf_file.write_text(self.conf)

    def start(self) -> None:
        status, out = self.node.start_daemon(
            [self.program, "-c", str(self.conf_file), "-p", str(self.pidfile)],
            self.folder / f"{self.node.name}.log")
        if status != 0:
            raise Refused(f"{self.program} failed: {out.strip() or status}")

    def pidfiles(self) -> list[Path]:
        return [self.pidfile]


class MiredoServer(_Miredo):
    """The Teredo server on the relay: its address and the next one (RFC 4380 needs two)."""

    def __init__(self, node: NodeHandle, folder: Path, addresses: tuple[str, str],
                 interface: str, length: int) -> None:
        first, second = addresses
        super().__init__(node, folder, "miredo-server",
                         f"ServerBindAddress {first}\nServerBindAddress2 {second}\n"
                         f"Prefix {PREFIX}\n")
        self.second = f"{second}/{length}"
        self.interface = interface

    def start(self) -> None:
        status, _, err = self.node.exec(["ip", "addr", "replace", self.second, "dev",
                                         self.interface])
        if status != 0:
            raise Refused(f"cannot add {self.second.split('/')[0]}: {err.strip()}")
        super().start()


class MiredoClient(_Miredo):
    """A Teredo client; ready once qualified (its interface has a global address)."""

    def __init__(self, node: NodeHandle, folder: Path, server: str, port: int = 0) -> None:
        # `port`: its UDP port (0: the system's choice). The probe's own port tags every
        # packet of the tunnel, the qualification's too, for the routers' traces.
        bind = f"BindPort {port}\n" if port else ""
        super().__init__(node, folder, "miredo",
                         f"RelayType client\nInterfaceName {INTERFACE}\n"
                         f"ServerAddress {server}\n{bind}")

    def prepare(self) -> None:
        self.pidfile.unlink(missing_ok=True)  # an earlier tunnel's
        super().prepare()

    def address(self) -> str | None:
        return _address(self.node)

    def ready(self) -> bool:
        return self.address() is not None


def _start(lab: Lab, services: list[_Miredo]) -> None:
    refused = lab.start_services(services, wait=False)
    if refused:
        service, problems = next(iter(refused.items()))
        raise LabFailure(f"{service.node.name}: {problems[0]}")


@contextmanager
def tunnel(lab: Lab, client: str, peer: str = "remote-mx",
           explained: Callable[[], bool] | None = None, port: int = 0) -> Iterator[str]:
    """Qualify Teredo clients on `client` and `peer`; yield the peer's Teredo address.

    `port`: the UDP port of `client`'s Teredo client (0: the system's choice).

    `explained` says whether a router rule dropped the tunnel's packets: once the
    qualification takes longer than it ever does on an open path, it is asked
    (once), and if it says so the wait ends early with `QualificationFailed`.
    """
    folder = lab.run.folder / "teredo"
    server, server2 = _server_addresses(lab)
    if not any(isinstance(s, MiredoServer) for s in lab.services):  # one per run
        relay = lab.site.one(TEREDO_SERVER)
        interface, cidr = relay.interface_holding(server)
        length = ipaddress.ip_interface(cidr).network.prefixlen
        _start(lab, [MiredoServer(lab.nodes[relay.name], folder, (server, server2),
                                  interface.name, length)])
    clients = {role: MiredoClient(lab.nodes[role], folder, server, port if role == client else 0)
               for role in (peer, client)}
    try:
        _start(lab, list(clients.values()))
        started = time.monotonic()
        ask_at = started + EXPLAIN_AFTER if explained is not None else float("inf")
        while True:
            addresses = {role: c.address() for role, c in clients.items()}
            found = addresses[peer]
            if found is not None and addresses[client] is not None:
                break
            now = time.monotonic()
            if now >= ask_at:
                ask_at = float("inf")
                if explained is not None and explained():
                    now = started + QUALIFY_TIMEOUT
            if now >= started + QUALIFY_TIMEOUT:
                raise QualificationFailed([r for r, a in addresses.items() if not a],
                                          min(now, time.monotonic()) - started)
            time.sleep(0.02)
        yield found
    finally:
        lab.stop_services(list(clients.values()))
