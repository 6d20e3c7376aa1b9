"""The running lab: a site booted in namespaces, with its services and agents.

This is the only module that touches Mininet. Everything it makes lives in
namespaces named after the run's prefix (see `lab.runtime.lifecycle`); `stop()`
removes all of it, and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import LabFailure
from lab.model.evidence import Sighting
from lab.model.site import Site
from lab.netfilter.counters import parse_save
from lab.netfilter.family import family as ip_family
from lab.netfilter.rules import Rule
from lab.runtime import lifecycle
from lab.runtime.lifecycle import Run
from lab.services import mail, trap, ulogd
from probes.requests import AgentError, Request, parse_answer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
A = TypeVar("A")


def _quiet_mininet() -> Any:
    """Import Mininet without its host-wide side effects.

    `Mininet.init()` raises the root namespace's sysctls (buffer sizes, ARP
    cache) and rlimits; the lab must not change the host, so it is marked done.
    Mininet's own log goes quiet: the lab reports for itself.
    """
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    setLogLevel("error")
    Mininet.inited = True
    return Mininet


@dataclass
class AgentProcess:
    """A probe agent inside one node, spoken to in JSON lines (probes.requests)."""

    role: str
    process: subprocess.Popen[str]
    log: Path

    def ask(self, request: Request[A], timeout: float) -> A:
        """Send `request`; its typed answer within `timeout` seconds (else LabFailure)."""
        if self.process.stdin is None:
            raise LabFailure(f"probe agent on {self.role} has no input")
        self.process.stdin.write(request.line() + "\n")
        self.process.stdin.flush()
        line = self.read(timeout)
        try:
            return parse_answer(request, line)
        except AgentError as exc:
            raise LabFailure(f"probe agent on {self.role}: {exc}") from None

    def read(self, timeout: float) -> str:
        """The agent's next line (its ready line, or an answer)."""
        if self.process.stdout is None:
            raise LabFailure(f"probe agent on {self.role} has no output")
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            last = self.log.read_text().strip().splitlines()[-1:] if self.log.exists() else []
            raise LabFailure(f"probe agent on {self.role} did not answer"
                             + (f": {last[0]}" if last else ""))
        return line


class FarSide:
    """Reads the recorders' files and finds where a probe's first packet arrived.

    Packets are found by the probe's unique source port: a TCP SYN by its own
    port, a UDP datagram (Teredo) by its UDP port, a 6in4 packet by the port of
    the TCP segment inside.
    """

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.offsets = dict.fromkeys(files, 0)
        self.seen: dict[tuple[str, int], list[Sighting]] = {}

    def _read_new(self) -> None:
        for role, path in self.files.items():
            with path.open() as f:
                f.seek(self.offsets[role])
                for line in f:
                    if not line.endswith("\n"):
                        break  # a line being written: read it next time
                    self.offsets[role] += len(line)
                    self._index(role, json.loads(line))

    def _index(self, role: str, seen: dict[str, Any]) -> None:
        inner = seen.get("inner") or {}
        carried = (f"TCP to {inner['dst']} port {inner['dport']}"
                   if inner.get("proto") == 6 and "dport" in inner else "")
        flags = seen.get("flags", "")
        if seen.get("proto") == 6 and "S" in flags and "A" not in flags:
            key = ("tcp", seen["sport"])
        elif seen.get("proto") == 17 and "sport" in seen:
            key = ("udp", seen["sport"])
        elif seen.get("proto") == 41 and "sport" in inner:
            key = ("6in4", inner["sport"])
        else:
            return
        self.seen.setdefault(key, []).append(
            Sighting(role, seen["dst"], seen.get("dport", 0), carried))

    def sightings(self, sport: int, expect: bool, wait: float = 1.0,
                  kind: str = "tcp") -> list[Sighting]:
        """Where the probe from `sport` arrived; if `expect`, give recorders `wait` s to write."""
        deadline = time.monotonic() + (wait if expect else 0.0)
        while True:
            self._read_new()
            found = self.seen.get((kind, sport), [])
            if found or time.monotonic() >= deadline:
                # keep the first record per role: a retransmission is the same probe
                unique = {s.role: s for s in reversed(found)}
                return list(reversed(list(unique.values())))
            time.sleep(0.005)


class Lab:
    """A booted site. Use as a context manager: teardown always runs."""

    def __init__(self, site: Site, run: Run) -> None:
        self.site = site
        self.run = run
        self.mail: dict[str, mail.Instance] = {}
        self.firewall_logs: dict[str, Path] = {}  # router → its ulogd2 JSON lines
        self.traps: dict[str, trap.Instance] = {}  # node → its private fail2ban
        self.net: Any = None
        self.agents: dict[str, AgentProcess] = {}
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.far_side: FarSide | None = None
        self.inodes: set[int] = set()

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.boot()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def boot(self) -> None:
        mininet_cls = _quiet_mininet()
        from lab.runtime.builder import SiteTopo  # imports Mininet

        topo = SiteTopo(self.site)
        try:
            # Mininet's steps must not be cut short: a command interrupted half-way
            # leaves its node "waiting", and every later command on it (its stop)
            # asserts. A signal waits for them (about a second). The steps below
            # stay interruptible: teardown finds their processes by namespace.
            with lifecycle.signals_deferred():
                self.net = mininet_cls(topo=topo, controller=None, build=False,
                                       autoSetMacs=False, waitConnected=False)
                self.net.build()
                for node in (*self.net.hosts, *self.net.switches):
                    self._name_namespace(node)
                self.net.start()
        except LabFailure:
            raise
        except Exception as exc:  # Mininet raises bare Exception for every failure
            raise LabFailure(f"cannot boot {self.site.name}: {exc}") from exc
        self._wait_ready()
        self._start_services()

    def _name_namespace(self, node: Any) -> None:
        """Give the node's namespace the run's name, so users and cleanup can find it."""
        name = self.run.netns(node.name)
        self.inodes.add(os.stat(f"/proc/{node.pid}/ns/net").st_ino)
        done = subprocess.run(["ip", "netns", "attach", name, str(node.pid)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabFailure(f"cannot name namespace {name}: {done.stderr.strip()}")

    def _wait_ready(self, tries: int = 20) -> None:
        """Every host reaches its default gateway on both families (links up, caches warm)."""
        pending = [(r.name, route.via) for r in self.site.nodes for route in r.routes
                   if route.destination == "default"]
        for _ in range(tries):
            procs = [(role, via, self.node(role).popen(["ping", "-c1", "-W1", "-q", via]))
                     for role, via in pending]
            pending = [(role, via) for role, via, p in procs if p.wait() != 0]
            if not pending:
                return
            time.sleep(0.05)
        raise LabFailure(f"lab not ready: {pending[0][0]} cannot reach {pending[0][1]}")

    def _start_services(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        files: dict[str, Path] = {}
        waits: list[Path] = []
        for role in self.site.nodes:
            if role.is_router:
                continue
            files[role.name] = self.run.folder / f"{role.name}.packets.jsonl"
            files[role.name].touch()
            self.daemons.append(self.node(role.name).popen(
                [sys.executable, "-m", "lab.services.recorder", str(files[role.name])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
            waits.append(files[role.name])
        deadline = time.monotonic() + 10
        for path in waits:
            while not (path.exists() and '"ready"' in path.read_text()[:64]):
                if time.monotonic() > deadline:
                    raise LabFailure(f"service did not start: {path.name}")
                time.sleep(0.01)
        self.far_side = FarSide(files)
        self._start_firewall_logs()
        self._start_mail()

    def _start_firewall_logs(self) -> None:
        """A private ulogd2 per router, for the NFLOG rules (see lab.services.ulogd)."""
        try:
            ulogd.plugins()
        except FileNotFoundError as exc:
            raise LabFailure(str(exc)) from None
        for router in self.site.routers:
            folder = self.run.folder / router
            folder.mkdir(exist_ok=True)
            conf = ulogd.config(folder)
            status, out, _ = self.start_daemon(
                router, ["ulogd", "-d", "-c", str(conf), "-p", str(folder / "ulogd.pid")],
                folder / "ulogd.start.log")
            if status != 0:
                raise LabFailure(f"{router}: ulogd failed: {out.strip() or status}")
            self.firewall_logs[router] = ulogd.log_file(folder)

    def _start_mail(self) -> None:
        """Real Postfix (and Dovecot SASL) instances on the mail server roles."""
        mail.require_binaries()
        for role, server in mail.servers_for(self.site).items():
            instance = mail.prepare(server, self.run.folder / role)
            self.mail[role] = instance

            log = self.run.folder / role / "start.log"

            def run(argv: list[str], role: str = role, log: Path = log) -> tuple[int, str, str]:
                return self.start_daemon(role, argv, log)

            def spawn(argv: list[str], role: str = role, log: Path = log) -> None:
                with log.open("a") as out:
                    self.daemons.append(self.node(role).popen(
                        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out))
            def listening(role: str = role) -> set[int]:
                return self.listening(role)
            mail.start(instance, run, spawn, listening)

    def stop(self) -> None:
        """Stop everything the lab started and remove its namespaces; safe to call again.

        A signal waits until it is done: `Interrupted` is raised at the end.
        """
        was_up = self.net is not None
        torn_down = False
        mininet_failed: Exception | None = None
        try:
            with lifecycle.signals_deferred():
                try:
                    for agent in self.agents.values():
                        if agent.process.stdin:
                            # an agent that died has a broken pipe: nothing more to tell it
                            with contextlib.suppress(BrokenPipeError):
                                agent.process.stdin.close()
                    processes: list[subprocess.Popen[Any]] = [
                        a.process for a in self.agents.values()]
                    processes += self.daemons
                    for proc in processes:
                        if proc.poll() is None:
                            proc.terminate()
                    for proc in processes:
                        try:
                            proc.wait(timeout=2)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                    self.agents, self.daemons = {}, []
                    # Mail daemons detach from us: stop them by pidfile while their
                    # namespace exists. (Dovecot takes about a second to stop on SIGTERM;
                    # a lab has no state to keep.)
                    pids = [pid for inst in self.mail.values() for pid in mail.pids(inst)]
                    pidfiles = [log.parent / "ulogd.pid" for log in self.firewall_logs.values()]
                    pidfiles += [inst.pidfile for inst in self.traps.values()]
                    for pidfile in pidfiles:
                        with contextlib.suppress(OSError, ValueError, IndexError):
                            pids.append(int(pidfile.read_text().split()[0]))
                    lifecycle.kill_all(pids, grace=0.2)
                    self.firewall_logs, self.traps = {}, {}
                    self.mail = {}
                    if self.net is not None:
                        try:
                            self.net.stop()
                        except Exception as exc:  # decided below, once the lab is gone
                            mininet_failed = exc
                        finally:
                            self.net = None
                finally:
                    # Everything the lab made lives in the run's namespaces: this removes
                    # it all, also when a step above (or Mininet's own stop) failed.
                    lifecycle.destroy(self.run, self.inodes)
                torn_down = True
        except lifecycle.Interrupted:  # it came while stopping, and is delivered now
            if torn_down and was_up:
                lifecycle.note_torn_down(self.run)
            raise
        # An error being unwound (a signal mid-command leaves a node "waiting", and
        # Mininet's stop asserts on it) is the story; otherwise Mininet's failure is.
        if mininet_failed is not None and sys.exc_info()[1] is None:
            raise LabFailure(f"Mininet could not stop {self.site.name}: {mininet_failed!r} "
                             "(its namespaces are removed)") from mininet_failed

    def start_traps(self, jails: dict[str, tuple[Path, ...]]) -> dict[str, list[str]]:
        """A private fail2ban in each node with jail files (see lab.services.trap).

        Returns, per node, what fail2ban said is wrong with its jails (nothing: []).
        """
        if jails:
            try:
                trap.require_binaries()
            except FileNotFoundError as exc:
                raise LabFailure(str(exc)) from None
        problems: dict[str, list[str]] = {}
        for role, files in jails.items():
            variables = {}
            if role in self.firewall_logs:
                variables["firewall_log"] = str(
                    ulogd.text_log_file(self.firewall_logs[role].parent))
            if role in self.mail:
                variables["mail_log"] = str(self.mail[role].log)
            inst = trap.prepare(role, self.run.folder / role / "fail2ban", files, variables)

            def run(argv: list[str], role: str = role) -> tuple[int, str, str]:
                return self.exec(role, argv, timeout=30)
            problems[role] = trap.config_errors(inst, run)
            if problems[role]:
                continue
            status, out, _ = self.start_daemon(role, inst.server_argv(), inst.root / "start.log")
            self.traps[role] = inst
            if status != 0:
                problems[role] = [out.strip().splitlines()[-1] if out.strip()
                                  else f"fail2ban-server exited {status}"]
        return problems

    @property
    def mail_servers(self) -> dict[str, mail.MailServer]:
        return {role: inst.server for role, inst in self.mail.items()}

    def submission_server(self) -> str:
        """The organisation's mail server role (where clients submit)."""
        try:
            return self.site.submission_server.name
        except LookupError as exc:
            raise LabFailure(str(exc)) from None

    # -- running things in nodes ---------------------------------------------------
    def node(self, role: str) -> Any:
        assert self.net is not None, "lab is not up"
        return self.net[role]

    def exec(self, role: str, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]:
        """Run a program inside a node and wait for it."""
        proc = self.node(role).popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise LabFailure(f"{role}: {' '.join(argv)} took over {timeout} s") from None
        return proc.returncode, out, err

    def start_daemon(self, role: str, argv: list[str], log: Path,
                     timeout: float = 30) -> tuple[int, str, str]:
        """Run a command that leaves a daemon behind; wait for the command, not the daemon.

        The daemon inherits the command's output, so pipes would never close:
        the output goes to `log` instead.
        """
        with log.open("a+") as out:
            start = out.tell()
            proc = self.node(role).popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out)
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise LabFailure(f"{role}: {' '.join(argv)} took over {timeout} s") from None
            out.seek(start)
            return status, out.read(), ""

    def listening(self, role: str) -> set[int]:
        """TCP ports in LISTEN state on both families in the node (read from /proc)."""
        ports: dict[str, set[int]] = {}
        for table in ("tcp", "tcp6"):
            lines = Path(f"/proc/{self.node(role).pid}/net/{table}").read_text().splitlines()
            ports[table] = {int(ln.split()[1].rsplit(":", 1)[1], 16) for ln in lines[1:]
                            if ln.split()[3] == "0A"}  # 0A: LISTEN
        return ports["tcp"] & ports["tcp6"]

    def agent(self, role: str) -> AgentProcess:
        if role not in self.agents:
            self.start_agents([role])
        return self.agents[role]

    def start_agents(self, roles: list[str]) -> None:
        """Start probe agents (in parallel: each imports scapy once)."""
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        fresh = [r for r in roles if r not in self.agents]
        for role in fresh:
            log = self.run.folder / f"{role}.agent.log"
            with log.open("w") as stderr:
                proc = self.node(role).popen(
                    [sys.executable, "-m", "probes.agent", str(self.run.folder)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                    env=env)
            self.agents[role] = AgentProcess(role, proc, log)
        for role in fresh:
            self.agents[role].read(timeout=30)

    def rules(self, family: int) -> list[Rule]:
        """Every router's (and trap node's) rules and counters for one family."""
        rules: list[Rule] = []
        # routers, and every node whose own firewall a trap writes into
        nodes = [*self.site.routers, *(r for r in self.traps if r not in self.site.routers)]
        for router in nodes:
            tool = ip_family(family).save
            status, out, err = self.exec(router, [tool, "-c"], timeout=10)
            if status != 0:
                raise LabFailure(f"{router}: {tool} failed: {err.strip()}")
            rules.extend(parse_save(router, family, out))
        return rules
