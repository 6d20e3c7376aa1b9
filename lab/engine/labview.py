"""What the engine needs of a lab, and nothing more.

The running lab (lab.runtime.lab.Lab) has all of it; a fake lab with scripted
agent answers and counters (tests/unit/fake_lab.py) has it too, so that the
engine's ladders run in milliseconds without namespaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from lab.model.evidence import Sighting
from lab.model.site import Site
from lab.netfilter.counters import Hit
from lab.netfilter.rules import Rule
from lab.runtime.lifecycle import Run
from lab.services import mail as mail_service
from lab.services import trap as trap_service
from probes.requests import Request

A = TypeVar("A")


class Agent(Protocol):
    """The probe agent of one node."""

    def ask(self, request: Request[A], timeout: float,
            stop_when: Callable[[], bool] | None = None) -> A:
        """Send `request`; its answer within `timeout` seconds (else LabFailure).

        `stop_when()` true while it waits: no answer can come, the agent answers now.
        """


class PacketWatch(Protocol):
    """The kernel's own record of the rules one probe's packets met (nftables traces)."""

    def begin(self) -> None:
        """What the routers traced before now is not this probe's."""

    def dropped_silently(self) -> bool:
        """A router dropped one of its packets without answering (as read so far)."""

    def hits(self) -> list[Hit]:
        """Every router's trace read to now: the rules its packets met."""


class FarSideView(Protocol):
    """The recorders' files: where a probe's first packet arrived."""

    def sightings(self, sport: int, expect: bool, wait: float = 1.0,
                  kind: str = "tcp") -> list[Sighting]:
        """Where the probe from `sport` arrived; if `expect`, give recorders `wait` s."""


class LabView(Protocol):
    """A booted lab as the engine sees it."""

    @property
    def site(self) -> Site: ...

    @property
    def run(self) -> Run: ...

    @property
    def far_side(self) -> FarSideView | None: ...

    @property
    def mail(self) -> Mapping[str, mail_service.Instance]: ...

    @property
    def mail_servers(self) -> dict[str, mail_service.MailServer]: ...

    @property
    def traps(self) -> Mapping[str, trap_service.Instance]: ...

    @property
    def firewall_logs(self) -> Mapping[str, Path]: ...

    def agent(self, role: str) -> Agent: ...

    def start_agents(self, roles: list[str]) -> None: ...

    def rules(self, family: int) -> list[Rule]:
        """Every router's (and trap node's) rules with their counters, for one family."""

    def packet_evidence(self, tag: int) -> PacketWatch | None:
        """The routers' traces of the packets tagged `tag` (None: counters only)."""

    def exec(self, role: str, argv: list[str], stdin: str | None = None,
             timeout: float = 30) -> tuple[int, str, str]: ...

    def submission_server(self) -> str: ...

    def start_traps(self, jails: dict[str, tuple[Path, ...]]) -> dict[str, list[str]]: ...
