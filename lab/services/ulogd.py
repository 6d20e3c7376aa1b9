"""A private ulogd2 per router, for the NFLOG rules (see lab.netfilter.nflog).

Each router's ulogd2 writes the same packets twice: JSON lines (`firewall.jsonl`,
read by the lab) and the kernel LOG target's own text format (`firewall.log`,
`IN=eth0 OUT=eth1 ... SRC=... DPT=25`), which is what a fail2ban filter on a
real gateway's kern.log reads.
"""

from __future__ import annotations

from pathlib import Path

from lab.netfilter.nflog import GROUP


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
    raise FileNotFoundError("ulogd2's NFLOG plugin is not installed: run `make setup`")


def config(folder: Path) -> Path:
    """Write a ulogd2 configuration for one router; returns its path."""
    conf = folder / "ulogd.conf"
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
