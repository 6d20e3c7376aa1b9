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
from lab.runtime import lifecycle
from lab.runtime.lab import Lab

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


def _address(lab: Lab, role: str) -> str | None:
    """The global address of the node's Teredo interface, once qualified."""
    table = Path(f"/proc/{lab.node(role).pid}/net/if_inet6").read_text()
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


@contextmanager
def tunnel(lab: Lab, client: str, peer: str = "remote-mx",
           explained: Callable[[], bool] | None = None) -> Iterator[str]:
    """Qualify Teredo clients on `client` and `peer`; yield the peer's Teredo address.

    `explained` says whether a router rule dropped the tunnel's packets: once the
    qualification takes longer than it ever does on an open path, it is asked
    (once), and if it says so the wait ends early with `QualificationFailed`.
    """
    folder = lab.run.folder / "teredo"
    folder.mkdir(exist_ok=True)
    RUN_DIR.mkdir(exist_ok=True)
    server, server2 = _server_addresses(lab)
    relay = lab.site.one(TEREDO_SERVER)
    interface, cidr = relay.interface_holding(server)
    length = ipaddress.ip_interface(cidr).network.prefixlen
    pidfiles: list[Path] = []
    try:
        if not (folder / "server.pid").exists():
            status, _, err = lab.exec(relay.name, ["ip", "addr", "replace",
                                                   f"{server2}/{length}", "dev", interface.name])
            if status != 0:
                raise LabFailure(f"{relay.name}: cannot add {server2}: {err.strip()}")
            (folder / "server.conf").write_text(
                f"ServerBindAddress {server}\nServerBindAddress2 {server2}\nPrefix {PREFIX}\n")
            _start(lab, relay.name, ["miredo-server", "-c", str(folder / "server.conf"),
                                     "-p", str(folder / "server.pid")], folder)
        for role in (peer, client):
            conf = folder / f"{role}.conf"
            conf.write_text(f"RelayType client\nInterfaceName {INTERFACE}\n"
                            f"ServerAddress {server}\n")
            pidfiles.append(folder / f"{role}.pid")
            _start(lab, role, ["miredo", "-c", str(conf), "-p", str(pidfiles[-1])], folder)
        started = time.monotonic()
        ask_at = started + EXPLAIN_AFTER if explained is not None else float("inf")
        addresses: dict[str, str | None] = {}
        while True:
            addresses = {role: _address(lab, role) for role in (peer, client)}
            if all(addresses.values()):
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
        found = addresses[peer]
        assert found is not None
        yield found
    finally:
        pids = []
        for pidfile in pidfiles:
            try:
                pids.append(int(pidfile.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
            pidfile.unlink(missing_ok=True)
        lifecycle.kill_all(pids, grace=1.0)


def _start(lab: Lab, role: str, argv: list[str], folder: Path) -> None:
    status, out, _ = lab.start_daemon(role, argv, folder / f"{role}.log")
    if status != 0:
        raise LabFailure(f"{role}: {argv[0]} failed: {out.strip() or status}")
