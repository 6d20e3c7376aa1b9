"""fail2ban's stock nftables actions in a real namespace: the bans the lab's watcher sees.

A private fail2ban (lab.services.trap's configuration) with the jails of
seed-trap-nft and fixed-trap-nft runs in a network namespace of its own; its
actions add `table inet f2b-table` and put the banned addresses into its sets,
and the watcher reads them from the kernel (`nft -j list ruleset`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.evidence.bans import BanWatcher
from lab.model import scenario
from lab.services.trap import prepare

pytestmark = pytest.mark.lab

Run = Callable[[str, list[str]], tuple[int, str, str]]
CLIENT2 = {4: "203.0.113.11", 6: "2001:db8:b01a:70da::11"}


@pytest.fixture
def namespace() -> Iterator[Run]:
    """A command runner in a fresh network namespace (held by a sleep this test ends)."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    ns = Path(f"/proc/{holder.pid}/ns/net")
    deadline = time.monotonic() + 5
    while ns.readlink() == Path("/proc/self/ns/net").readlink():
        assert time.monotonic() < deadline, "unshare made no namespace"
        time.sleep(0.01)

    def run(node: str, argv: list[str]) -> tuple[int, str, str]:
        done = subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True,
                              text=True, timeout=30, check=False)
        return done.returncode, done.stdout, done.stderr

    try:
        yield run
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name, hook", [("seed-trap-nft", "input"),
                                        ("fixed-trap-nft", "forward")])
def test_the_stock_nftables_action_bans_into_its_set_on_its_hook(
        namespace: Run, tmp_path: Path, name: str, hook: str) -> None:
    jail = scenario.BUILTIN / name / "jail.local"
    log = tmp_path / "firewall.log"
    log.touch()
    inst = prepare("gw", tmp_path / "f2b", [jail], {"firewall_log": str(log),
                                                    "mail_log": str(log)})
    status, out, err = namespace("gw", inst.server_argv())
    assert status == 0, out + err
    try:
        with BanWatcher(["gw"], namespace) as watcher:
            assert watcher.bans() == []
            status, out, err = namespace("gw", inst.client_argv(
                "set", "port25-trap", "banip", *CLIENT2.values()))
            assert status == 0, out + err
            for family, address in CLIENT2.items():
                ban = watcher.wait_banned(address, 10.0)
                assert ban is not None, (address, watcher.error)
                assert ban.family == family and ban.node == "gw"
                assert ban.jail == "port25-trap"
                assert ban.nft_set == ("addr-set-" if family == 4 else "addr6-set-") + "port25-trap"
                assert ban.chain == "f2b-chain"
                ip = "ip" if family == 4 else "ip6"
                assert ban.rule.startswith("gw: nft inet f2b-table f2b-chain handle ")
                assert f"{ip} saddr @{ban.nft_set} reject" in ban.rule
                # where the ban applies: the stock action's base chain and its hook
                assert ban.hooked == (f"gw: nft inet f2b-table f2b-chain: "
                                      f"type filter hook {hook} priority -1",)
            if name == "fixed-trap-nft":  # every protocol, not TCP to 25/465 alone
                assert all("meta l4proto { icmp, tcp, udp, ipv6-icmp }" in b.rule
                           for b in watcher.bans())
            else:
                assert all("tcp dport { 25, 465 }" in b.rule for b in watcher.bans())
            status, out, err = namespace("gw", inst.client_argv(
                "set", "port25-trap", "unbanip", *CLIENT2.values()))
            assert status == 0, out + err
            for address in CLIENT2.values():
                lifted = watcher.wait_lifted(address, 10.0)
                assert lifted is not None and lifted.lifted_at is not None
            assert watcher.error is None
    finally:
        namespace("gw", inst.client_argv("stop"))
