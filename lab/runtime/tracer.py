"""Each router's nftables trace of the probes' packets, read as it happens.

Per node, once (after its policy loaded): the lab's table `inet p25` marks the
probes' packets (`meta nftrace set 1` at priority -500, before every other
chain, in prerouting and output), one long-lived `nft -a monitor trace` prints
their steps and a thread reads them. Nothing is spawned per probe. A probe's
packets are told apart by their tag (lab.netfilter.trace.PacketTrace.carries),
never by timing; the trace is complete once a barrier packet, sent after the
probe, has been read (one netlink socket keeps the kernel's order).

The node's rules are read without spawning too: a libnftables context made
inside the node's network namespace keeps talking to it. The iptables rules
behind an iptables-nft handle come from one `iptables-save` read, read again
only when the kernel's handles changed (fail2ban adding its chain).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabFailure
from lab.netfilter import trace
from lab.netfilter.counters import parse_save
from lab.netfilter.family import family as ip_family
from lab.netfilter.rules import Rule
from lab.runtime.handle import NodeHandle, in_namespace

BARRIER_WAIT = 2.0  # s: a barrier's trace comes back in well under a millisecond


def _nftables() -> Any:
    import nftables  # type: ignore[import-untyped]  # Debian's python3-nftables (make setup)

    ctx = nftables.Nftables()
    ctx.set_json_output(True)
    ctx.set_handle_output(True)
    return ctx


def _nftables_text() -> Any:
    ctx = _nftables()
    ctx.set_json_output(False)
    return ctx


def _barrier_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def marking(barrier_port: int) -> str:
    """The lab's table: nftrace on the probes' packets (and the barrier's), before all else."""
    low, high = trace.PROBE_PORTS.start, trace.PROBE_PORTS.stop - 1
    marks = (f"meta l4proto {{ tcp, udp }} th sport {low}-{high} meta nftrace set 1; "
             f"meta l4proto {{ tcp, udp }} th dport {low}-{high} meta nftrace set 1; "
             f"ip protocol ipv6 ip id {low}-{high} meta nftrace set 1; "
             f"ip frag-off & 0x1fff != 0 ip id {low}-{high} meta nftrace set 1; ")
    return (f"table inet {trace.LAB_TABLE} {{\n"
            f"  chain mark_in {{ type filter hook prerouting priority -500; {marks}}}\n"
            f"  chain mark_out {{ type filter hook output priority -500; {marks}"
            f"udp sport {barrier_port} meta nftrace set 1; }}\n}}\n")


class NodeTracer:
    """One node's trace reader, its lab table and its in-process ruleset reads."""

    def __init__(self, node: NodeHandle, log: Path,
                 native: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.node = node
        self.log = log
        self.native = native  # tables an nft ruleset made: their rules are nft's
        self.lock = threading.Condition()
        self.packets: list[trace.PacketTrace] = []  # every probe packet traced, in order
        self.barriers_seen: set[int] = set()
        self.next_barrier = 0
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None
        self.handles: dict[tuple[str, str, str], list[int]] = {}
        self.xtables: dict[tuple[str, str, str, int], Rule] = {}
        self.xtables_tables: set[tuple[str, str]] = set()
        self.ctx: Any = None
        self.text_ctx: Any = None
        self.barrier: socket.socket | None = None
        # how often a rule change (`flush ruleset`) removed the lab's table, and put back
        self.removals = self.repaired = 0

    # -- start and stop ----------------------------------------------------------
    def start(self) -> None:
        self.ctx = in_namespace(self.node.pid, _nftables)
        self.text_ctx = in_namespace(self.node.pid, _nftables_text)
        self.barrier = in_namespace(self.node.pid, _barrier_socket)
        port = self.barrier.getsockname()[1]
        self.nft(f"delete table inet {trace.LAB_TABLE}", check=False)
        self.nft(marking(port))
        with self.log.open("a") as err:
            # all events, not only traces: the reader learns that the lab's table is gone
            self.process = self.node.popen(["nft", "-a", "monitor"],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=err, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, name=f"trace-{self.node.name}",
                                       daemon=True)
        self.reader.start()
        self._until_listening()
        self.refresh()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.barrier is not None:
            self.barrier.close()

    def nft(self, command: str, check: bool = True) -> str:
        status, out, err = self.ctx.cmd(command)
        if status != 0 and check:
            raise LabFailure(f"{self.node.name}: nft {command.split(chr(10))[0]}: "
                             f"{err.strip()}")
        return str(out)

    # -- the trace ---------------------------------------------------------------
    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        port = self.barrier.getsockname()[1] if self.barrier else 0
        mine = f"udp sport {port} udp dport "
        packets = trace.Packets(self.node.name)
        barriers: set[str] = set()  # trace ids of barrier packets (until another comes)
        for line in self.process.stdout:
            parsed = trace.parse_line(line)
            if parsed is None:
                if trace.removes_lab_table(line):
                    with self.lock:
                        self.removals += 1
                        self.lock.notify_all()
                continue
            trace_id, step = parsed
            with self.lock:
                if step.kind == "packet" and mine in step.text:
                    barriers.add(trace_id)
                    packets.forget(trace_id)
                    self.barriers_seen.add(int(step.text.split(mine, 1)[1].split()[0]))
                    self.lock.notify_all()
                    continue
                if trace_id in barriers and step.kind != "packet":
                    continue
                barriers.discard(trace_id)
                packet, new = packets.add(trace_id, step)
                if new:
                    self.packets.append(packet)
                self.lock.notify_all()
        with self.lock:
            self.lock.notify_all()

    def mark(self, number: int) -> tuple[int, int]:
        """Where the packets traced from now on begin, and the table's removals so far.

        The trace is read up to the barrier `number` (sent) first: a lab table that a
        rule change removed (`flush ruleset`) is put back before the probe is sent.
        """
        with self.lock:
            self._wait(number, BARRIER_WAIT, until_removed=True)
            removed = self.removals > self.repaired
        if removed and self.barrier is not None:
            self.nft(marking(self.barrier.getsockname()[1]))
        with self.lock:
            self.repaired = self.removals
            return len(self.packets), self.removals

    def _until_listening(self, tries: int = 100) -> None:
        """The monitor subscribes some time after it starts: barriers until one is read."""
        for _ in range(tries):
            try:
                self.wait_for(self.send_barrier(), wait=0.02)
                return
            except LabFailure:
                if self.process is not None and self.process.poll() is not None:
                    raise
        self.sync()  # the last chance, with the full wait and its error

    def sync(self) -> None:
        """Return once every trace line the kernel wrote before this call has been read."""
        self.wait_for(self.send_barrier())

    def send_barrier(self) -> int:
        """Send a barrier packet through the node's output hook; its number."""
        if self.barrier is None:
            raise LabFailure(f"{self.node.name}: the trace reader is not running")
        with self.lock:
            self.next_barrier = (self.next_barrier + 1) % 20000
            number = 40000 + self.next_barrier
            self.barriers_seen.discard(number)
        self.barrier.sendto(b"p25", ("127.0.0.1", number))
        return number

    def wait_for(self, number: int, wait: float = BARRIER_WAIT) -> None:
        """Until the barrier's trace was read: every line written before it was too."""
        with self.lock:
            self._wait(number, wait)

    def _wait(self, number: int, wait: float, until_removed: bool = False) -> None:
        deadline = time.monotonic() + wait
        while number not in self.barriers_seen:
            if self.removals > self.repaired:
                if until_removed:
                    return  # the caller puts the table back
                raise LabFailure(f"{self.node.name}: a rule change removed the lab's table "
                                 f"inet {trace.LAB_TABLE} while a probe ran")
            left = deadline - time.monotonic()
            if left <= 0 or (self.process is not None and self.process.poll() is not None):
                raise LabFailure(f"{self.node.name}: nft monitor did not see the lab's "
                                 f"barrier packet (see {self.log})")
            self.lock.wait(left)

    def traced(self, tag: int, since: int = 0) -> list[trace.PacketTrace]:
        """The packets carrying `tag` traced since the mark `since`."""
        with self.lock:
            return [p for p in self.packets[since:] if p.carries(tag)]

    def dropped_silently(self, tag: int, since: int = 0) -> bool:
        """A packet of the probe's was dropped without an answer (as read so far)."""
        with self.lock:
            return any(p.carries(tag) and p.dropped_silently for p in self.packets[since:])

    # -- its rules -------------------------------------------------------------
    def _kernel_handles(self) -> dict[tuple[str, str, str], list[int]]:
        listed = json.loads(self.nft("list ruleset") or '{"nftables": []}')
        handles: dict[tuple[str, str, str], list[int]] = {}
        for item in listed["nftables"]:
            if "chain" in item:
                c = item["chain"]
                handles.setdefault((c["family"], c["table"], c["name"]), [])
            elif "rule" in item:
                r = item["rule"]
                handles.setdefault((r["family"], r["table"], r["chain"]), []).append(
                    r["handle"])
        return handles

    def refresh(self) -> None:
        """Read the iptables rules again if the kernel's handles changed since last time."""
        handles = self._kernel_handles()
        if handles == self.handles:
            return
        save: dict[int, Sequence[Rule]] = {}
        for version in (4, 6):
            tool = ip_family(version).save
            status, out, err = self.node.exec([tool, "-c"], timeout=10)
            if status != 0:
                raise LabFailure(f"{self.node.name}: {tool} failed: {err.strip()}")
            save[version] = parse_save(self.node.name, version, out)
        self.handles = handles
        self.xtables = trace.xtables_rules(save, handles)
        self.xtables_tables = {(("ip" if r.family == 4 else "ip6"), r.table)
                               for rules in save.values() for r in rules}

    def rule_text(self, family: str, table: str, chain: str, handle: int) -> str:
        """A rule's text as `nft -a list` prints it (for a rule newer than the monitor)."""
        _, listed, _ = self.text_ctx.cmd(f"list chain {family} {table} {chain}")
        suffix = f" # handle {handle}"
        return next((line.strip()[:-len(suffix)] for line in str(listed).splitlines()
                     if line.endswith(suffix)), f"handle {handle}")

    def rule(self, family: str, table: str, chain: str, handle: int) -> Rule | None:
        """The iptables rule at that handle (None: a native nft rule)."""
        if (family, table) not in self.xtables_tables or (family, table) in self.native:
            return None
        key = (family, table, chain, handle)
        if key not in self.xtables:
            self.refresh()
        return self.xtables.get(key)


class Tracer:
    """The trace readers of a lab's routers (and trap nodes), started when first needed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes: dict[str, NodeTracer] = {}
        # per node, the tables an nft ruleset made (never iptables', whatever iptables-save
        # prints of them): lab.engine.verify.load_policies says
        self.native: dict[str, frozenset[tuple[str, str]]] = {}

    def of(self, nodes: Sequence[NodeHandle]) -> list[NodeTracer]:
        """The nodes' tracers; those not yet running are started side by side."""
        fresh = [NodeTracer(n, self.folder / f"{n.name}.trace.log",
                            self.native.get(n.name, frozenset()))
                 for n in nodes if n.name not in self.nodes]
        self.nodes.update((t.node.name, t) for t in fresh)
        with ThreadPoolExecutor(max_workers=max(1, len(fresh))) as pool:
            for started in [pool.submit(t.start) for t in fresh]:
                started.result()  # its failure, raised here
        return [self.nodes[n.name] for n in nodes]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.nodes = {}

    @property
    def processes(self) -> list[subprocess.Popen[str]]:
        return [n.process for n in self.nodes.values() if n.process is not None]
