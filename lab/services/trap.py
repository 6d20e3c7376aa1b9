"""The fail2ban trap: private fail2ban servers in lab nodes, and the bans they make.

A scenario's `trap:` names, per node, the jail files of a fail2ban that runs in
that node's namespace. Each instance is private to the run: its own
configuration folder (fail2ban's stock configuration from /etc/fail2ban, without
the jails Debian enables in jail.d), socket, pidfile, database and log, all in
the run folder. Jail files reach the node's logs through two variables the lab
defines in `[DEFAULT]`:

    %(firewall_log)s  a router's firewall log, in the kernel LOG target's format
    %(mail_log)s      a mail server's Postfix log

(on a real gateway they would be /var/log/kern.log and /var/log/mail.log). The
lab adds its filter `port25lab-firewall` (lab/services/fail2ban/filter.d) for that log;
a `filter.d/` or `action.d/` folder beside a jail file is copied in as well.

The bans such a trap makes are evidence: lab.evidence.bans watches for them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabFailure

# The engine imports the watcher from here (lab/engine/bans.py, verify.py).
from lab.runtime.handle import NodeHandle
from lab.services.service import Refused, Service

ETC = Path("/etc/fail2ban")
# the lab's own filters (for its firewall log), beside fail2ban's stock ones
FILTERS = Path(__file__).resolve().parent / "fail2ban" / "filter.d"


@dataclass(frozen=True)
class Instance:
    """One private fail2ban: its node and where it keeps its things."""

    role: str
    root: Path
    jails: tuple[Path, ...]

    @property
    def conf(self) -> Path:
        return self.root / "etc"

    @property
    def socket(self) -> Path:
        return self.root / "fail2ban.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "fail2ban.pid"

    @property
    def log(self) -> Path:
        return self.root / "fail2ban.log"

    def server_argv(self) -> list[str]:
        # -x: a stale socket of this very run may be replaced; -b: return when ready
        return ["fail2ban-server", "-c", str(self.conf), "-s", str(self.socket),
                "-p", str(self.pidfile), "-x", "-b"]

    def client_argv(self, *args: str) -> list[str]:
        return ["fail2ban-client", "-c", str(self.conf), "-s", str(self.socket), *args]


def require_binaries() -> None:
    if shutil.which("fail2ban-server") is None or not (ETC / "jail.conf").is_file():
        raise LabFailure("fail2ban is not installed: run `make setup`")


def prepare(role: str, root: Path, jails: Iterable[Path], variables: dict[str, str]) -> Instance:
    """Write a private fail2ban configuration for one node; returns the instance."""
    inst = Instance(role, root, tuple(jails))
    root.mkdir(parents=True, exist_ok=True)
    # The stock configuration, without what Debian enables by default (jail.d).
    shutil.copytree(ETC, inst.conf, ignore=lambda folder, names: names
                    if Path(folder).name in ("jail.d", "fail2ban.d") else [])
    for extra in sorted(FILTERS.glob("*.conf")):
        shutil.copyfile(extra, inst.conf / "filter.d" / extra.name)
    (inst.conf / "fail2ban.local").write_text(
        "[Definition]\n"
        "loglevel = INFO\n"
        f"logtarget = {inst.log}\n"
        f"socket = {inst.socket}\n"
        f"pidfile = {inst.pidfile}\n"
        f"dbfile = {root / 'fail2ban.sqlite3'}\n"
        "allowipv6 = auto\n")
    lines = ["# written by port25lab: where this node's logs are", "[DEFAULT]",
             *(f"{name} = {value}" for name, value in sorted(variables.items()))]
    (inst.conf / "jail.d" / "00-port25lab.conf").write_text("\n".join(lines) + "\n")
    for number, jail in enumerate(inst.jails, 1):
        suffix = ".local" if jail.suffix == ".local" else ".conf"
        shutil.copyfile(jail, inst.conf / "jail.d" / f"{number:02d}-{jail.stem}{suffix}")
        for kind in ("filter.d", "action.d"):
            for extra in sorted((jail.parent / kind).glob("*.conf")):
                shutil.copyfile(extra, inst.conf / kind / extra.name)
    return inst


def dry_run_errors(status: int, said: str) -> list[str]:
    """What `fail2ban-client --test` said is wrong (its status and output; nothing: [])."""
    if status == 0:
        return []
    # "2026-… fail2ban.jailreader [123]: ERROR   Unable to read the filter 'x'": the message
    errors = [ln.split("ERROR", 1)[1].strip(" :") for ln in said.splitlines()
              if "ERROR" in ln and "test configuration failed" not in ln]
    if errors:
        return ["; ".join(dict.fromkeys(errors))]
    return [said.strip().splitlines()[-1] if said.strip()
            else f"fail2ban-client --test exited {status}"]


class Fail2ban(Service):
    """A private fail2ban in one node, for the jail files a scenario's `trap:` names.

    `variables` are the node's logs (`firewall_log`, `mail_log`) for the jails.
    """

    name = "fail2ban"

    def __init__(self, node: NodeHandle, jails: Iterable[Path],
                 variables: Mapping[str, str]) -> None:
        super().__init__(node)
        self.instance = Instance(node.name, node.folder / "fail2ban", tuple(jails))
        self.variables = dict(variables)

    def prepare(self) -> None:
        require_binaries()
        prepare(self.node.name, self.instance.root, self.instance.jails, self.variables)

    def dry_run(self) -> list[str]:
        status, out, err = self.node.exec(self.instance.client_argv("--test"), timeout=30)
        return dry_run_errors(status, out + err)

    def start(self) -> None:
        status, out = self.node.start_daemon(self.instance.server_argv(),
                                             self.instance.root / "start.log")
        if status != 0:
            raise Refused(out.strip().splitlines()[-1] if out.strip()
                          else f"fail2ban-server exited {status}")

    def pidfiles(self) -> list[Path]:
        return [self.instance.pidfile]
