"""The services' one lifecycle and the node handle, without a lab: programs run on the host
through a node handle whose "node" is this machine; nothing is started that listens or
watches (the daemons' dry runs only read their configuration)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import topologies
from lab.errors import LabFailure
from lab.model import scenario
from lab.runtime import lifecycle
from lab.runtime.handle import NodeHandle
from lab.runtime.lab import Lab
from lab.services import mail, registry, service, sshd, trap, ulogd
from lab.services.recording import Recorder
from lab.services.service import Refused, Service
from lab.services.teredo import MiredoClient, MiredoServer


class ThisMachine:
    """Stands for a Mininet node: its programs run here, its /proc/PID/net is the host's."""

    pid = os.getpid()

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, **options)


def handle(tmp_path: Path, name: str = "gw") -> NodeHandle:
    return NodeHandle(name, ThisMachine(), tmp_path / name)


@pytest.fixture
def node(tmp_path: Path) -> NodeHandle:
    return handle(tmp_path)


@pytest.fixture
def sleepers() -> Iterator[list[int]]:
    """PIDs a test starts; whatever is still running at its end is killed."""
    started: list[int] = []
    yield started
    lifecycle.kill_all([pid for pid in started if lifecycle.is_running(pid)], grace=0)


# -- the node handle ---------------------------------------------------------------

def test_exec_gives_status_output_and_errors(node: NodeHandle) -> None:
    assert node.exec(["sh", "-c", "read line; echo out $line; echo err >&2; exit 3"],
                     stdin="given\n") == (3, "out given\n", "err\n")
    assert node.folder.is_dir() and node.folder.name == "gw"


def test_exec_past_its_timeout_is_a_lab_failure(node: NodeHandle) -> None:
    started = time.monotonic()
    with pytest.raises(LabFailure, match=r"^gw: sleep 30 took over 0.2 s$"):
        node.exec(["sleep", "30"], timeout=0.2)
    assert time.monotonic() - started < 5


def test_start_daemon_waits_for_the_command_not_for_the_daemon(
        node: NodeHandle, sleepers: list[int]) -> None:
    log = node.folder / "start.log"
    started = time.monotonic()
    # the daemon keeps the command's output open: with pipes this would wait 60 s
    status, said = node.start_daemon(["sh", "-c", "sleep 60 & echo $!; echo up"], log)
    sleepers.append(int(said.split()[0]))
    assert time.monotonic() - started < 5
    assert status == 0 and said.endswith("up\n")
    assert lifecycle.is_running(sleepers[0])
    # a second command's output is its own, the log keeps both
    assert node.start_daemon(["sh", "-c", "echo again; exit 4"], log) == (4, "again\n")
    assert log.read_text().endswith("up\nagain\n")


def test_listening_is_a_port_open_on_both_families(node: NodeHandle) -> None:
    with socket.socket(socket.AF_INET) as v4, socket.socket(socket.AF_INET6) as v6, \
            socket.socket(socket.AF_INET) as only4:
        v4.bind(("127.0.0.1", 0))
        port = v4.getsockname()[1]
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", port))
        only4.bind(("127.0.0.1", 0))
        for s in (v4, v6, only4):
            s.listen()
        found = node.listening()
        assert port in found
        assert only4.getsockname()[1] not in found
    assert port not in node.listening()


# -- the lifecycle -------------------------------------------------------------------

class Scripted(Service):
    """A service that only says what it is asked, and does what it is told."""

    name = "scripted"

    def __init__(self, node: NodeHandle, steps: list[str], problems: tuple[str, ...] = (),
                 refuse: str = "", ready_after: float = 0.0) -> None:
        super().__init__(node)
        self.steps, self.problems, self.refuse = steps, problems, refuse
        self.ready_at = time.monotonic() + ready_after

    def prepare(self) -> None:
        self.steps.append(f"{self.node.name} prepare")

    def dry_run(self) -> list[str]:
        self.steps.append(f"{self.node.name} dry run")
        return list(self.problems)

    def start(self) -> None:
        self.steps.append(f"{self.node.name} start")
        if self.refuse:
            raise Refused(self.refuse)

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    def not_ready(self) -> str:
        return "scripted is still asleep"


def test_each_service_is_prepared_checked_and_started_in_turn(tmp_path: Path) -> None:
    steps: list[str] = []
    fine = Scripted(handle(tmp_path, "a"), steps)
    bad = Scripted(handle(tmp_path, "b"), steps, problems=("line 3: no such option",))
    refusing = Scripted(handle(tmp_path, "c"), steps, refuse="address in use")
    refused = service.start([fine, bad, refusing])
    assert steps == ["a prepare", "a dry run", "a start", "b prepare", "b dry run",
                     "c prepare", "c dry run", "c start"]  # b's problems: never started
    assert refused == {bad: ["line 3: no such option"], refusing: ["address in use"]}
    assert (fine.checked, bad.checked, refusing.checked) == (True, False, True)


def test_waiting_for_readiness_names_the_service_that_is_not(tmp_path: Path) -> None:
    soon = Scripted(handle(tmp_path, "a"), [], ready_after=0.1)
    started = time.monotonic()
    service.wait_ready([soon], timeout=5)
    assert 0.1 <= time.monotonic() - started < 5
    never = Scripted(handle(tmp_path, "b"), [], ready_after=60)
    with pytest.raises(LabFailure, match=r"^b: scripted is still asleep$"):
        service.wait_ready([soon, never], timeout=0.05)


class Sleeper(Service):
    """One process held in the foreground and one detached with a pidfile."""

    def start(self) -> None:
        self.spawn(["sleep", "60"], self.node.folder / "held.log")
        self.node.start_daemon(["sh", "-c", f"sleep 60 & echo $! > {self.pidfiles()[0]}"],
                               self.node.folder / "start.log")

    def pidfiles(self) -> list[Path]:
        return [self.node.folder / "sleeper.pid"]


def test_stop_ends_held_and_detached_processes_of_every_service_and_nothing_else(
        tmp_path: Path, sleepers: list[int]) -> None:
    services = [Sleeper(handle(tmp_path, "a")), Sleeper(handle(tmp_path, "b"))]
    assert service.start(services) == {}
    held = [p for s in services for p in s.held]
    detached = service.pids_in([f for s in services for f in s.pidfiles()])
    bystander = subprocess.Popen(["sleep", "60"])
    sleepers.extend([*detached, bystander.pid])
    assert len(held) == 2 and len(detached) == 2
    assert all(lifecycle.is_running(pid) for pid in detached)
    started = time.monotonic()
    service.stop_all(services)
    assert time.monotonic() - started < 1.5  # one grace period, not one per service
    assert all(p.poll() is not None for p in held)  # ended and reaped
    assert not any(lifecycle.is_running(pid) for pid in detached)
    assert bystander.poll() is None
    assert all(s.held == [] for s in services)
    services[0].stop()  # again: nothing left to stop
    bystander.kill()
    bystander.wait()


def test_pids_in_pidfiles(tmp_path: Path) -> None:
    (tmp_path / "a.pid").write_text("   4242\n")  # Postfix pads its pid
    (tmp_path / "b.pid").write_text("not a pid\n")
    (tmp_path / "c.pid").write_text("")
    assert service.pids_in([tmp_path / n for n in ("a.pid", "b.pid", "c.pid", "d.pid")]) \
        == [4242]


# -- which services a lab runs ----------------------------------------------------------

@pytest.mark.parametrize("name", ["screened-host", "dmz"])
def test_every_end_host_records_every_router_logs_the_mail_roles_run_mail(
        tmp_path: Path, name: str) -> None:
    site = topologies.load(name)
    nodes = {n.name: handle(tmp_path, n.name) for n in site.nodes}
    services = registry.for_site(site, nodes, tmp_path)
    runs = {(type(s).__name__, s.node.name) for s in services}
    hosts = {n.name for n in site.nodes if not n.is_router}
    assert runs == ({("Recorder", h) for h in hosts} | {("Ulogd", r) for r in site.routers}
                    | {("Mail", role) for role in mail.servers_for(site)})
    assert {r for t, r in runs if t == "Mail"} == {"mx", "remote-mx"}
    assert all(s.node is nodes[s.node.name] for s in services)
    # the recorders come first: the slowest to be ready start first
    kinds = [type(s).__name__ for s in services]
    assert kinds == sorted(kinds, key=["Recorder", "Ulogd", "Mail"].index)


def test_a_trap_reads_the_logs_of_its_node(tmp_path: Path) -> None:
    site = topologies.load("screened-host")
    nodes = {n.name: handle(tmp_path, n.name) for n in site.nodes}
    running = registry.for_site(site, nodes, tmp_path)
    jail = (scenario.BUILTIN / "fixed-trap" / "jail.local",)
    made = {t.node.name: t for t in registry.traps(
        {"gw": jail, "mx": jail, "client1": jail}, nodes, running)}
    assert made["gw"].variables == {"firewall_log": str(tmp_path / "gw" / "firewall.log")}
    assert made["mx"].variables == {"mail_log": str(tmp_path / "mx" / "postfix.log")}
    assert made["client1"].variables == {}
    assert made["gw"].instance.root == tmp_path / "gw" / "fail2ban"
    assert made["gw"].instance.jails == jail


# -- each service's files and its daemon's dry run --------------------------------------

def test_fail2ban_dry_run_passes_a_good_jail_and_quotes_a_bad_one(tmp_path: Path) -> None:
    log = tmp_path / "firewall.log"
    log.touch()
    good = trap.Fail2ban(handle(tmp_path, "gw"), [scenario.BUILTIN / "fixed-trap" /
                                                  "jail.local"], {"firewall_log": str(log)})
    good.prepare()
    assert good.dry_run() == []
    jail = tmp_path / "mine" / "jail.local"
    jail.parent.mkdir()
    jail.write_text(f"[port25-trap]\nenabled = true\nfilter = no-such-filter\n"
                    f"logpath = {log}\n")
    bad = trap.Fail2ban(handle(tmp_path, "mx"), [jail], {})
    bad.prepare()
    assert bad.dry_run() == [
        f"Found no accessible config files for 'filter.d/no-such-filter' under "
        f"{bad.instance.conf}; Unable to read the filter 'no-such-filter'; "
        "Errors in jail 'port25-trap'."]
    again = trap.Fail2ban(handle(tmp_path, "relay"), [jail], {})
    assert service.start([again]) == {again: [bad.dry_run()[0].replace(
        str(bad.instance.conf), str(again.instance.conf))]}
    assert not again.checked and not again.instance.pidfile.exists()  # never started


def test_fail2ban_test_output_read_as_problems() -> None:
    said = ("2026-12-01 10:05:51,886 fail2ban.jailreader     [5701]: ERROR   Unable to read "
            "the filter 'x'\n2026-12-01 10:05:51,886 fail2ban.jailreader     [5701]: ERROR   "
            "Unable to read the filter 'x'\n2026-12-01 10:05:51,886 fail2ban   [5701]: ERROR   "
            "ERROR: test configuration failed\n")
    assert trap.dry_run_errors(255, said) == ["Unable to read the filter 'x'"]
    assert trap.dry_run_errors(0, said) == []
    assert trap.dry_run_errors(1, "Traceback\nValueError: odd\n") == ["ValueError: odd"]
    assert trap.dry_run_errors(1, "") == ["fail2ban-client --test exited 1"]


def test_sshd_dry_run_passes_its_configuration_and_names_a_bad_line(tmp_path: Path) -> None:
    server = sshd.Sshd(handle(tmp_path, "gw"), ("192.0.2.1", "2001:db8::1"), port=2222,
                       force_command="sleep 60")
    server.prepare()
    inst = server.instance
    assert inst.root == tmp_path / "gw" / "sshd-2222"
    text = inst.config.read_text()
    assert "Port 2222\nListenAddress 192.0.2.1\nListenAddress 2001:db8::1\n" in text
    assert text.endswith("ForceCommand sleep 60\n")
    assert server.dry_run() == []
    lines = text.count("\n")
    inst.config.write_text(text + "NoSuchOption yes\n")
    assert server.dry_run() == [
        f"{inst.config}: line {lines + 1}: Bad configuration option: NoSuchOption"]
    assert sshd.dry_run_errors(255, "") == ["sshd -t exited 255"]


def test_ulogd_writes_both_logs_of_its_router(node: NodeHandle) -> None:
    logger = ulogd.Ulogd(node)
    logger.prepare()
    conf = (node.folder / "ulogd.conf").read_text()
    assert f'file="{logger.log}"' in conf and f'file="{logger.text_log}"' in conf
    assert logger.log == node.folder / "firewall.jsonl"
    assert logger.text_log == node.folder / "firewall.log"
    assert logger.pidfiles() == [node.folder / "ulogd.pid"]


def test_mail_lives_in_its_nodes_folder_and_says_why_it_did_not_start(tmp_path: Path) -> None:
    site = topologies.load("screened-host")
    server = mail.Mail(handle(tmp_path, "mx"), mail.servers_for(site)["mx"])
    assert server.instance.root == tmp_path / "mx"
    assert server.pidfiles() == server.instance.pidfiles()
    assert server.not_ready() == "Postfix did not start: not listening in 10 s"
    server.instance.log.write_text(
        "Dec  1 10:00:00 mx postfix/master[12]: fatal: bind 0.0.0.0 port 25: Address "
        "already in use\n")
    assert server.not_ready() == ("Postfix did not start: bind 0.0.0.0 port 25: Address "
                                  "already in use")


def test_recorder_file_beside_the_others_and_ready_once_it_says_so(tmp_path: Path) -> None:
    recorder = Recorder(handle(tmp_path, "sink"), tmp_path)
    recorder.prepare()
    assert recorder.file == tmp_path / "sink.packets.jsonl" and recorder.file.exists()
    assert not recorder.ready()
    assert recorder.not_ready() == "recorder did not start: sink.packets.jsonl"
    recorder.log.write_text("Traceback ...\nPermissionError: [Errno 1] Operation not "
                            "permitted\n")
    assert recorder.not_ready() == ("recorder did not start: PermissionError: [Errno 1] "
                                    "Operation not permitted")
    recorder.file.write_text('{"ready": true}\n')
    assert recorder.ready()


def test_miredo_configurations(tmp_path: Path) -> None:
    folder = tmp_path / "teredo"
    relay = MiredoServer(handle(tmp_path, "relay"), folder, ("192.0.2.1", "192.0.2.2"),
                         "eth0", 24)
    client = MiredoClient(handle(tmp_path, "client1"), folder, "192.0.2.1")
    folder.mkdir()
    (folder / "client1.pid").write_text("4242\n")  # an earlier tunnel's
    for daemon in (relay, client):
        daemon.prepare()
    assert (folder / "server.conf").read_text() == (
        "ServerBindAddress 192.0.2.1\nServerBindAddress2 192.0.2.2\nPrefix 2001:db8::\n")
    assert (folder / "client1.conf").read_text() == (
        "RelayType client\nInterfaceName teredo\nServerAddress 192.0.2.1\n")
    assert relay.pidfiles() == [folder / "server.pid"]
    assert client.pidfiles() == [folder / "client1.pid"]
    assert service.pids_in(client.pidfiles()) == []


def test_a_lab_that_is_not_up_has_no_nodes(tmp_path: Path) -> None:
    lab = Lab(topologies.load("screened-host"), lifecycle.Run("p25-000000", tmp_path))
    with pytest.raises(LabFailure, match="screened-host is not up: no node gw"):
        lab.node("gw")
