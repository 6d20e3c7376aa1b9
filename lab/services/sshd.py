"""A private OpenSSH server in a lab node: the "live gateway" an audit reads.

Everything lives in the node's folder of the run: host key, the client's key
pair, authorized_keys, known_hosts, sshd_config, pid file and log. Nothing
under /etc/ssh is read or written; the host's own sshd is not started. The
only thing outside the run folder is sshd's privilege-separation directory
/run/sshd, which sshd requires and which Debian's openssh-server tmpfiles
would create at boot: it is created (root, 0755) if missing and left there.

A server may see some folders replaced by the lab's own (`mounts`): sshd then
runs in a private mount namespace where they are bind-mounted, so that its
sessions' plain commands read the lab's files — `/etc/fail2ban` of the node's
private fail2ban, for `fail2ban-client status` — while the host sees nothing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabFailure
from lab.runtime.handle import NodeHandle
from lab.services.service import Service

if TYPE_CHECKING:
    from lab.runtime.lab import Lab

SSHD = Path("/usr/sbin/sshd")
PRIVSEP = Path("/run/sshd")
PORT = 22


@dataclass(frozen=True)
class Instance:
    """A running sshd's files: what a client needs to log in and to trust it."""

    root: Path
    addresses: tuple[str, ...]
    port: int = PORT

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        """The private key authorized to log in as root."""
        return self.root / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file naming this server's key under each of its addresses."""
        return self.root / "known_hosts"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
        out = _keygen(["-l", "-E", "sha256", "-f", str(self.host_key)])
        return out.split()[1]


def _keygen(argv: list[str]) -> str:
    done = subprocess.run(["ssh-keygen", "-q", *argv], capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0:
        raise LabFailure(f"ssh-keygen {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def require_binaries() -> None:
    for program in (str(SSHD), "ssh-keygen"):
        if shutil.which(program) is None:
            raise LabFailure(f"{program} is missing: run `make setup` (openssh-server)")


def prepare(root: Path, addresses: tuple[str, ...],
            environment: Mapping[str, str] | None = None, port: int = PORT,
            force_command: str | None = None) -> Instance:
    """Keys, authorized_keys, known_hosts and sshd_config for one server.

    `force_command` replaces whatever a session asks to run (a gateway that hangs:
    `sleep 60`).
    `environment` is set in every session (sshd's SetEnv): the lab's mail server
    uses it so that `postconf` and `doveconf` read its private configuration.
    """
    require_binaries()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    inst = Instance(root, addresses, port)
    _keygen(["-t", "ed25519", "-N", "", "-C", "port25lab-host", "-f", str(inst.host_key)])
    _keygen(["-t", "ed25519", "-N", "", "-C", "port25lab-auditor", "-f", str(inst.client_key)])
    (root / "authorized_keys").write_text(
        Path(f"{inst.client_key}.pub").read_text())
    public = Path(f"{inst.host_key}.pub").read_text().split()
    names = [f"[{a}]:{inst.port}" if inst.port != PORT else a for a in addresses]
    inst.known_hosts.write_text(f"{','.join(names)} {public[0]} {public[1]}\n")
    lines = [
        f"Port {inst.port}",
        *(f"ListenAddress {a}" for a in addresses),
        f"HostKey {inst.host_key}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        # root may log in with the run's key only; any password is refused
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "MaxAuthTries 3",
        "LoginGraceTime 10",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "LogLevel VERBOSE",
    ]
    if environment:
        lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in environment.items()))
    if force_command:
        lines.append(f"ForceCommand {force_command}")
    inst.config.write_text("\n".join(lines) + "\n")
    return inst


def in_private_mounts(argv: list[str], mounts: Mapping[str, Path]) -> list[str]:
    """`argv` in a mount namespace of its own where each target shows its source folder."""
    binds = "; ".join(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}"
                      for target, source in mounts.items())
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", f'set -e; {binds}; exec "$@"', "sh", *argv]


def dry_run_errors(status: int, said: str) -> list[str]:
    """What `sshd -t` said is wrong (its status and output; nothing: [])."""
    if status == 0:
        return []
    # "FILE: line 18: Bad configuration option: X", then "FILE: terminating, 1 bad ..."
    lines = [ln for ln in said.strip().splitlines() if ": terminating, " not in ln]
    return lines or [f"sshd -t exited {status}"]


class Sshd(Service):
    """sshd in the foreground (`-D`), held; optionally in a mount namespace of its own."""

    name = "sshd"

    def __init__(self, node: NodeHandle, addresses: tuple[str, ...],
                 environment: Mapping[str, str] | None = None, port: int = PORT,
                 force_command: str | None = None,
                 mounts: Mapping[str, Path] | None = None) -> None:
        super().__init__(node)
        self.instance = Instance(node.folder / f"sshd-{port}", addresses, port)
        self.environment = environment
        self.force_command = force_command
        self.mounts = mounts

    def prepare(self) -> None:
        PRIVSEP.mkdir(mode=0o755, exist_ok=True)
        inst = self.instance
        prepare(inst.root, inst.addresses, self.environment, inst.port, self.force_command)

    def dry_run(self) -> list[str]:
        # -t: the configuration and the keys, as the daemon would read them
        status, out, err = self.node.exec([str(SSHD), "-t", "-f", str(self.instance.config)],
                                          timeout=30)
        return dry_run_errors(status, err + out)

    def start(self) -> None:
        argv = [str(SSHD), "-D", "-e", "-f", str(self.instance.config)]
        self.spawn(in_private_mounts(argv, self.mounts) if self.mounts else argv,
                   self.instance.log)

    def ready(self) -> bool:
        return self.instance.port in self.node.listening()

    def not_ready(self) -> str:
        log = self.instance.log
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        return f"sshd did not start{': ' + tail[0] if tail else ''}"


def serve(lab: Lab, role: str, environment: Mapping[str, str] | None = None,
          port: int = PORT, force_command: str | None = None,
          mounts: Mapping[str, Path] | None = None) -> Instance:
    """An sshd on a lab node, on each of its addresses; the lab's teardown stops it."""
    service = Sshd(lab.nodes[role], lab.site.role(role).addresses(), environment, port,
                   force_command, mounts)
    refused = lab.start_services([service])
    if refused:
        raise LabFailure(f"{role}: sshd refused its configuration: {refused[service][0]}")
    return service.instance
