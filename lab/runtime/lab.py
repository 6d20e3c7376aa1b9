"""The running lab: a site booted in namespaces, its nodes, services and agents.

This is the only module that starts Mininet. Everything it makes lives in
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import LabFailure
from lab.model.evidence import Sighting
from lab.model.site import Site
from lab.netfilter import trace
from lab.netfilter.counters import Hit, parse_save
from lab.netfilter.family import family as ip_family
from lab.netfilter.rules import Rule
from lab.runtime import lifecycle
from lab.runtime.handle import PROJECT_ROOT as PROJECT_ROOT
from lab.runtime.handle import NodeHandle, project_env
from lab.runtime.lifecycle import Run
from lab.runtime.tracer import NodeTracer, Tracer
from lab.services import registry, trap
from lab.services import service as service_lifecycle
from lab.services.mail import Instance as MailInstance
from lab.services.mail import Mail, MailServer
from lab.services.recording import Recorder
from lab.services.service import Service
from lab.services.ulogd import Ulogd
from probes.requests import STOP, AgentError, Request, parse_answer

A = TypeVar("A")
S = TypeVar("S", bound=Service)
STOP_POLL = 0.0005  # s: how often a waiting probe looks at the trace for its packet's drop


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

    def ask(self, request: Request[A], timeout: float,
            stop_when: Callable[[], bool] | None = None) -> A:
        """Send `request`; its typed answer within `timeout` seconds (else LabFailure).

        While it waits, `stop_when()` (the kernel dropped the probe's packet) tells
        the agent that no answer can come: it answers at once.
        """
        if self.process.stdin is None:
            raise LabFailure(f"probe agent on {self.role} has no input")
        self.process.stdin.write(request.line() + "\n")
        self.process.stdin.flush()
        if stop_when is not None and self.process.stdout is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.process.stdout], [], [], STOP_POLL)
                if ready:
                    break
                if stop_when():
                    self.process.stdin.write(STOP + "\n")
                    self.process.stdin.flush()
                    break
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

    Packets are found by the probe's unique source port. NAT on the way may rewrite
    the port a packet carries, so each is found by a number NAT leaves alone: a
    crafted TCP SYN by its tag (its sequence number: the port again, probes.tcp), a
    UDP datagram by the port of the TCP segment a Teredo datagram carries, else by
    its tag (a DNS query's id, a fragment's IPv4 id), a 6in4 packet by the port of
    the TCP segment inside. A kernel's own connection (over a Teredo tunnel, where no
    NAT is on the way inside) is found by its port: kind "connect". A record without
    a tag (written before tags were) is found by its ports.
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
        tag = seen.get("tag", seen.get("sport"))  # no tag written: the port
        keys: list[tuple[str, int | None]] = []
        if seen.get("proto") == 6 and "S" in flags and "A" not in flags:
            keys = [("tcp", tag), ("connect", seen["sport"])]
        elif seen.get("proto") == 17 and "sport" in seen:
            keys = [("udp", inner.get("sport") if inner.get("proto") == 6 else tag)]
        elif seen.get("proto") == 41 and "sport" in inner:
            keys = [("6in4", inner["sport"])]
        for kind, number in keys:
            if number is not None:
                self.seen.setdefault((kind, number), []).append(
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


@dataclass
class PacketEvidence:
    """The rules the probe's packets met, from each router's trace (lab.runtime.tracer).

    Each round reads the packets traced since its own start: rounds that overlap
    (probes at once) each find their own packets by their tags.
    """

    tracers: list[NodeTracer]
    tag: int
    since: list[int] = field(default_factory=list)
    removals: list[int] = field(default_factory=list)

    def begin(self) -> None:
        """From now on: what came before is not this probe's."""
        sent = [(t, t.send_barrier()) for t in self.tracers]  # all routers at once
        marks = [t.mark(number) for t, number in sent]
        self.since = [since for since, _ in marks]
        self.removals = [removals for _, removals in marks]

    def dropped_silently(self) -> bool:
        return any(t.dropped_silently(self.tag, since)
                   for t, since in zip(self.tracers, self.since, strict=True))

    def hits(self) -> list[Hit]:
        """Once every router's trace is read to now: the rules the probe's packets met."""
        sent = [(t, t.send_barrier()) for t in self.tracers]  # all routers at once
        for t, number in sent:
            t.wait_for(number)
        for t, removals in zip(self.tracers, self.removals, strict=True):
            if t.removals != removals:  # put back meanwhile: some packets went untraced
                raise LabFailure(f"{t.node.name}: a rule change removed the lab's table "
                                 f"inet {trace.LAB_TABLE} while a probe ran")
        return [h for t, since in zip(self.tracers, self.since, strict=True)
                for h in trace.hits(t.traced(self.tag, since), t.rule, t.rule_text)]


class Lab:
    """A booted site. Use as a context manager: teardown always runs.

    It boots and stops the site and hands out its nodes (`nodes[role]`, a
    `NodeHandle`); the daemons in them are services (lab.services.service), the
    site's own (lab.services.registry) started at boot. The methods below the
    nodes are what the engine asks of a lab.
    """

    def __init__(self, site: Site, run: Run) -> None:
        self.site = site
        self.run = run
        self.net: Any = None  # Mininet's network, for Mininet's own API (its CLI)
        self.nodes: dict[str, NodeHandle] = {}
        self.services: list[Service] = []  # all running; stopped with the lab
        self.agents: dict[str, AgentProcess] = {}
        self.far_side: FarSide | None = None
        self.inodes: set[int] = set()
        self.tracer = Tracer(run.folder)

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
        from lab.runtime import light  # imports Mininet (the resolvers of its hosts)
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
                self._name_namespaces([*self.net.hosts, *self.net.switches])
                self.net.start()
        except LabFailure:
            raise
        except Exception as exc:  # Mininet raises bare Exception for every failure
            raise LabFailure(f"cannot boot {self.site.name}: {exc}") from exc
        self.nodes = {n.name: NodeHandle(n.name, self.net[n.name], self.run.folder / n.name)
                      for n in self.site.nodes if not n.light}
        self.nodes |= light.make(self.site, self.run, self.inodes)
        self._wait_ready()
        services = registry.for_site(self.site, self.nodes, self.run.folder)
        refused = self.start_services(services)
        if refused:  # the lab's own configuration: a daemon that refuses it is a lab failure
            service, problems = next(iter(refused.items()))
            raise LabFailure(f"{service.node.name}: {problems[0]}")
        self.far_side = FarSide({s.node.name: s.file for s in services
                                 if isinstance(s, Recorder)})

    def _name_namespaces(self, nodes: list[Any]) -> None:
        """Give the nodes' namespaces the run's names, so users and cleanup can find them."""
        for node in nodes:
            self.inodes.add(os.stat(f"/proc/{node.pid}/ns/net").st_ino)
        failed = lifecycle.ip_batch([f"netns attach {self.run.netns(node.name)} {node.pid}"
                                     for node in nodes])
        if failed:
            raise LabFailure(f"cannot name the namespaces of {self.site.name}: {failed}")

    def _wait_ready(self, tries: int = 20) -> None:
        """Every host reaches its default gateway on both families (links up, caches warm)."""
        # not the light clients: a thousand pings; their links are made up, with no DAD
        pending = [(r.name, route.via) for r in self.site.nodes for route in r.routes
                   if route.destination == "default" and not r.light]
        for _ in range(tries):
            procs = [(role, via, self.nodes[role].popen(["ping", "-c1", "-W1", "-q", via]))
                     for role, via in pending]
            pending = [(role, via) for role, via, p in procs if p.wait() != 0]
            if not pending:
                return
            time.sleep(0.05)
        raise LabFailure(f"lab not ready: {pending[0][0]} cannot reach {pending[0][1]}")

    def start_services(self, services: Sequence[Service],
                       wait: bool = True) -> dict[Service, list[str]]:
        """Start services in their nodes (and, with `wait`, wait until they are ready).

        Returns the problems of those the daemon refused (lab.services.service.start);
        whatever starts stops with the lab, or with `stop_services`.
        """
        self.services.extend(services)
        refused = service_lifecycle.start(services)
        if wait:
            service_lifecycle.wait_ready([s for s in services if s not in refused])
        return refused

    def stop_services(self, services: Sequence[Service]) -> None:
        service_lifecycle.stop_all(services)
        self.services = [s for s in self.services if s not in services]

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
                    self.tracer.stop()
                    # A lab keeps no state: every daemon and agent in its namespaces goes at
                    # once (SIGKILL, no grace to wait out), all but the nodes' shells, which
                    # Mininet's stop still speaks to; then what is held is reaped.
                    shells = {n.pid for n in (*self.net.hosts, *self.net.switches)
                              if n.shell} if self.net is not None else set()
                    lifecycle.kill_now(self.inodes, spare=shells)
                    service_lifecycle.reap(
                        self.services, also=[a.process for a in self.agents.values()])
                    self.agents, self.services, self.nodes = {}, [], {}
                    if self.net is not None:
                        try:
                            # the hosts delete their links all at once (each peer goes with
                            # its end), then the shells go, then Mininet closes their ptys
                            hosts = [h for h in self.net.hosts if h.shell]
                            for host in hosts:
                                host.delete_links()
                            for host in hosts:
                                host.waitOutput()
                            lifecycle.kill_now(self.inodes)
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

    # -- what the engine asks of a lab ---------------------------------------------
    def _running(self, kind: type[S]) -> list[S]:
        return [s for s in self.services if isinstance(s, kind)]

    @property
    def mail(self) -> dict[str, MailInstance]:
        """The mail servers by role (lab.services.mail)."""
        return {s.node.name: s.instance for s in self._running(Mail)}

    @property
    def firewall_logs(self) -> dict[str, Path]:
        """Each router's ulogd2 JSON lines."""
        return {s.node.name: s.log for s in self._running(Ulogd)}

    @property
    def traps(self) -> dict[str, trap.Instance]:
        """Each trap node's private fail2ban (one whose configuration fail2ban took)."""
        return {s.node.name: s.instance for s in self._running(trap.Fail2ban) if s.checked}

    def start_traps(self, jails: dict[str, tuple[Path, ...]]) -> dict[str, list[str]]:
        """A private fail2ban in each node with jail files (see lab.services.trap).

        Returns, per node, what fail2ban said is wrong with its jails (nothing: []).
        """
        traps = registry.traps(jails, self.nodes, self.services)
        refused = self.start_services(traps)
        return {t.node.name: refused.get(t, []) for t in traps}

    @property
    def mail_servers(self) -> dict[str, MailServer]:
        return {role: inst.server for role, inst in self.mail.items()}

    def submission_server(self) -> str:
        """The organisation's mail server role (where clients submit)."""
        try:
            return self.site.submission_server.name
        except LookupError as exc:
            raise LabFailure(str(exc)) from None

    def node(self, role: str) -> Any:
        """The Mininet node of a role, for Mininet's own API (`lab.nodes` for the rest)."""
        if self.net is None:
            raise LabFailure(f"{self.site.name} is not up: no node {role}")
        return self.net[role]

    def exec(self, role: str, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]:
        """Run a program inside a node and wait for it."""
        return self.nodes[role].exec(argv, stdin, timeout)

    def listening(self, role: str) -> set[int]:
        """TCP ports in LISTEN state on both families in the node."""
        return self.nodes[role].listening()

    def agent(self, role: str) -> AgentProcess:
        if role not in self.agents:
            self.start_agents([role])
        return self.agents[role]

    def start_agents(self, roles: list[str]) -> None:
        """Start probe agents (in parallel: each imports scapy once)."""
        fresh = [r for r in roles if r not in self.agents]
        for role in fresh:
            log = self.run.folder / f"{role}.agent.log"
            with log.open("w") as stderr:
                proc = self.nodes[role].popen(
                    [sys.executable, "-m", "probes.agent", str(self.run.folder)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                    env=project_env())
            self.agents[role] = AgentProcess(role, proc, log)
        for role in fresh:
            self.agents[role].read(timeout=30)

    def _firewalls(self) -> list[str]:
        # routers, and every node whose own firewall a trap writes into
        return [*self.site.routers, *(r for r in self.traps if r not in self.site.routers)]

    def packet_evidence(self, tag: int) -> PacketEvidence:
        """The kernel's trace of the probe's packets (tag: lab.netfilter.trace) on every router."""
        return PacketEvidence(self.tracer.of([self.nodes[n] for n in self._firewalls()]), tag)

    def rules(self, family: int) -> list[Rule]:
        """Every router's (and trap node's) rules and counters for one family."""
        rules: list[Rule] = []
        for router in self._firewalls():
            tool = ip_family(family).save
            status, out, err = self.exec(router, [tool, "-c"], timeout=10)
            if status != 0:
                raise LabFailure(f"{router}: {tool} failed: {err.strip()}")
            rules.extend(parse_save(router, family, out))
        return rules
