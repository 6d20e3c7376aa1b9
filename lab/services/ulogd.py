"""A private ulogd2 per router, for the NFLOG rules (see lab.netfilter.nflog).

Each router's ulogd2 writes the same packets twice: JSON lines (`firewall.jsonl`,
read by the lab) and the kernel LOG target's own text format (`firewall.log`,
`IN=eth0 OUT=eth1 ... SRC=... DPT=25`), which is what a fail2ban filter on a
real gateway's kern.log reads.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabFailure
from lab.netfilter.nflog import GROUP
from lab.runtime.handle import NodeHandle
from lab.services.service import Refused, Service


def log_file(folder: Path) -> Path:
    return folder / "firewall.jsonl"


def text_log_file(folder: Path) -> Path:
    """The same records in the kernel LOG target's format (ulogd2's LOGEMU)."""
    return folder / "firewall.log"


def plugins() -> Path:
    """Where Debian's ulogd2 keeps its plugins (the multiarch folder)."""
    for candidate in sorted(Path("/usr/lib").glob("*/ulogd")):
        if (candidate / "ulogd_inppkt_NFLOG.so").exists():
            return candidate
    raise LabFailure("ulogd2's NFLOG plugin is not installed: run `make setup`")


def config_file(folder: Path) -> Path:
    return folder / "ulogd.conf"


def config(folder: Path) -> Path:
    """Write a ulogd2 configuration for one router; returns its path."""
    conf = config_file(folder)
    PLUGINS = plugins()
    conf.write_text(f"""\
[global]
logfile="{folder / 'ulogd.log'}"
loglevel=5
plugin="{PLUGINS / 'ulogd_inppkt_NFLOG.so'}"
plugin="{PLUGINS / 'ulogd_raw2packet_BASE.so'}"
plugin="{PLUGINS / 'ulogd_filter_IFINDEX.so'}"
plugin="{PLUGINS / 'ulogd_filter_IP2STR.so'}"
plugin="{PLUGINS / 'ulogd_output_JSON.so'}"
plugin="{PLUGINS / 'ulogd_filter_PRINTPKT.so'}"
plugin="{PLUGINS / 'ulogd_output_LOGEMU.so'}"
# two stacks share the one NFLOG input: every packet goes to both files
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group={GROUP}
# without it ulogd batches packets for about a second
netlink_qthreshold=1

[json1]
sync=1
file="{log_file(folder)}"

[emu1]
sync=1
file="{text_log_file(folder)}"
""")
    return conf


class Ulogd(Service):
    """A router's private ulogd2, detached (`-d`) with its pidfile in the router's folder."""

    name = "ulogd"

    def __init__(self, node: NodeHandle) -> None:
        super().__init__(node)
        self.folder = node.folder

    @property
    def log(self) -> Path:
        """The JSON lines (read by the lab)."""
        return log_file(self.folder)

    @property
    def text_log(self) -> Path:
        """The kernel LOG target's format (read by a fail2ban on the router)."""
        return text_log_file(self.folder)

    def prepare(self) -> None:
        config(self.folder)

    def start(self) -> None:
        status, out = self.node.start_daemon(
            ["ulogd", "-d", "-c", str(config_file(self.folder)), "-p", str(self.pidfiles()[0])],
            self.folder / "ulogd.start.log")
        if status != 0:
            raise Refused(f"ulogd failed: {out.strip() or status}")

    def pidfiles(self) -> list[Path]:
        return [self.folder / "ulogd.pid"]
