"""Firewall logs inside the lab: NFLOG to a private ulogd2 per router.

The kernel's LOG target writes nothing from a network namespace unless the
host-wide `net.netfilter.nf_log_all_netns` is set, which the lab must not
change. NFLOG groups are per namespace, so each router gets its own ulogd2
writing the run folder, and the published `-j LOG` rules are run as
`-j NFLOG` (each translation is reported; the scenario's files are not
touched). Each router's ulogd2 writes the same packets twice: JSON lines
(`firewall.jsonl`, read by the lab) and the kernel LOG target's own text format
(`firewall.log`, `IN=eth0 OUT=eth1 ... SRC=... DPT=25`), which is what a
fail2ban filter on a real gateway's kern.log reads.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.model.evidence import Suspect
from lab.netfilter.policy import Command, PolicyFile, shown

GROUP = 25
_LOG_FLAGS = {"--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid",
              "--log-macdecode"}


def nflog_argv(argv: Iterable[str]) -> list[str] | None:
    """The argv with `-j LOG` (and its options) turned into `-j NFLOG`, or None if no LOG."""
    words = list(argv)
    for i in range(len(words) - 1):
        if words[i] in ("-j", "--jump") and words[i + 1] == "LOG":
            break
    else:
        return None
    head, tail = words[:i], words[i + 2:]
    out = [*head, "-j", "NFLOG", "--nflog-group", str(GROUP)]
    rest = iter(tail)
    for word in rest:
        if word == "--log-prefix":
            out += ["--nflog-prefix", next(rest, "")]
        elif word == "--log-level":
            next(rest, None)  # a syslog level means nothing to NFLOG
        elif word not in _LOG_FLAGS:
            out.append(word)
    return out


def log_file(folder: Path) -> Path:
    return folder / "firewall.jsonl"


def text_log_file(folder: Path) -> Path:
    """The same records in the kernel LOG target's format (ulogd2's LOGEMU)."""
    return folder / "firewall.log"


def as_nflog(policy: PolicyFile) -> tuple[PolicyFile, list[str]]:
    """The policy with every LOG rule run as NFLOG, and a note per translated line."""
    notes: list[str] = []
    if policy.kind == "script":
        commands: list[Command] = []
        for cmd in policy.commands:
            argv = nflog_argv(cmd.argv)
            if argv is None:
                commands.append(cmd)
                continue
            notes.append(f"{cmd.file}:{cmd.line}: -j LOG run as "
                         f"-j NFLOG --nflog-group {GROUP} (LOG is silent in a namespace)")
            commands.append(replace(cmd, argv=tuple(argv)))
        return replace(policy, commands=tuple(commands)), notes
    lines = []
    for number, line in enumerate(policy.save_text.splitlines(), 1):
        argv = nflog_argv(shlex.split(line)) if line.startswith("-A ") else None
        if argv is None:
            lines.append(line)
            continue
        notes.append(f"{shown(policy.path)}:{number}: -j LOG run as -j NFLOG --nflog-group "
                     f"{GROUP} (LOG is silent in a namespace)")
        # iptables-restore reads double quotes
        lines.append(" ".join(f'"{w}"' if " " in w or not w else w for w in argv))
    return replace(policy, save_text="\n".join(lines) + "\n"), notes


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


def read_records(log_files: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every JSON record of the logs that exist (a line being written is skipped)."""
    for path in log_files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def suspects(log_files: Iterable[Path], owner: Callable[[str], str | None],
             inside: Iterable[str], ports: tuple[int, ...] = (25, 465)) -> list[Suspect]:
    """Internal hosts in the firewall logs that tried `ports`, most attempts first."""
    inside_roles = set(inside)
    seen: dict[str, list[dict[str, object]]] = {}
    for record in read_records(log_files):
        if record.get("dest_port") in ports and record.get("src_ip"):
            seen.setdefault(str(record["src_ip"]), []).append(record)
    found = []
    for address, records in seen.items():
        role = owner(address)
        if role is None or role not in inside_roles:
            continue
        times = sorted(str(r.get("timestamp", "")) for r in records)
        found.append(Suspect(
            role, address, len(records),
            tuple(sorted({int(str(r["dest_port"])) for r in records})),
            tuple(sorted({str(r.get("dest_ip")) for r in records})), times[0], times[-1]))
    return sorted(found, key=lambda s: (-s.count, s.role, s.address))


def logged_at(log_files: Iterable[Path], address: str, since: float, until: float,
              nth: int = 1) -> float | None:
    """When the logs recorded `address`'s `nth` packet in (since, until] (wall clock).

    The last one in that window when there are fewer; None when there is none.
    """
    times = []
    for record in read_records(log_files):
        try:
            when = int(record["oob.time.sec"]) + int(record["oob.time.usec"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("src_ip") == address and since < when <= until:
            times.append(when)
    times.sort()
    return (times[nth - 1] if len(times) >= nth else times[-1]) if times else None
