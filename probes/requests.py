"""What the lab asks a probe agent, and what the agent answers: one JSON line each way.

    → {"op": "syn", "family": 4, "dst": "198.51.100.25", "dport": 25, "sport": 20001,
       "wait": 0.025}
    ← {"reply": "synack", "sport": 20001, "source": "198.51.100.25", "source_port": 25,
       "ttl": 62, "elapsed_ms": 0.41}

Requests and answers are frozen dataclasses, and each request names the type
of its answer: the lab's `ask(request)` returns that type, and the agent
(probes.agent) parses the same request types from its standard input. Only
this module sees the untyped JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Generic, Self, TypeVar

from probes.dialogue import Dialogue, Transcript

A = TypeVar("A")

# The lab's line while a packet probe waits: the kernel dropped the probe's packet (its
# trace says so), no answer can come; the agent stops waiting and answers "none".
STOP = "stop"


class AgentError(ValueError):
    """The agent could not carry out a request (it says why), or answered nonsense."""


def _wire(value: Any) -> dict[str, Any]:
    """A dataclass as JSON fields, without the ones that are not set."""
    return {k: v for k, v in asdict(value).items() if v is not None}


FAILED = "agent_error"  # the answer's only key when the agent could not serve a request


def failure_line(message: str) -> str:
    """The agent's answer to a request it could not carry out."""
    return json.dumps({FAILED: message})


def _error(data: dict[str, Any]) -> None:
    if FAILED in data:
        raise AgentError(str(data[FAILED]))


class Answer:
    """An answer the evidence round can read: was it silence?"""

    @property
    def silent(self) -> bool:
        return False


@dataclass(frozen=True)
class PacketAnswer(Answer):
    """The first answer to the probe's source port: a SYN-ACK, RST, ICMP error or datagram."""

    reply: str  # "synack", "rst", "icmp", "udp" (a datagram back) or "none"
    sport: int
    elapsed_ms: float = 0.0
    source: str | None = None  # address the answer came from
    source_port: int | None = None
    ttl: int | None = None
    icmp: str | None = None  # e.g. "unreachable/code 3"
    banner: str | None = None  # a kernel connection's greeting line

    @property
    def silent(self) -> bool:
        return self.reply == "none"


@dataclass(frozen=True)
class Guess:
    """One guessing attempt: the account, the password's position in the list and the reply."""

    user: str
    index: int  # position in probes.guessing.TRIVIAL_PASSWORDS (the password is not reported)
    code: int  # 235 accepted, 535 refused, 0: no SMTP answer (see `error`)
    at: float  # wall clock when the answer (or the failure) came
    error: str = ""


@dataclass(frozen=True)
class GuessAnswer(Answer):
    """Every guess in order, or why guessing did not start (an unauthorised target)."""

    guesses: tuple[Guess, ...] = ()
    error: str | None = None


class Request(Generic[A]):
    """A request to the agent; `A` is its answer's type."""

    op: ClassVar[str]

    def line(self) -> str:
        return json.dumps({"op": self.op, **_wire(self)})

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        return cls(**data)

    def waiting(self, seconds: float) -> Self:
        """The same request with another wait for its answer."""
        raise NotImplementedError

    def read_answer(self, data: dict[str, Any]) -> A:
        raise NotImplementedError

    def answer_line(self, answer: A) -> str:
        return json.dumps(_wire(answer))


class _PacketRequest(Request[PacketAnswer]):
    def read_answer(self, data: dict[str, Any]) -> PacketAnswer:
        _error(data)
        return PacketAnswer(**data)


@dataclass(frozen=True)
class SynRequest(_PacketRequest):
    """One SYN, built with scapy; the first answer to `sport` within `wait` seconds."""

    op: ClassVar[str] = "syn"
    family: int
    dst: str
    dport: int
    sport: int
    wait: float = 0.0

    def waiting(self, seconds: float) -> Self:
        return replace(self, wait=seconds)


@dataclass(frozen=True)
class UdpRequest(_PacketRequest):
    """One DNS query to port 53; an answer (or an ICMP error) within `wait` seconds."""

    op: ClassVar[str] = "udp"
    family: int
    dst: str
    sport: int
    wait: float = 0.0

    def waiting(self, seconds: float) -> Self:
        return replace(self, wait=seconds)


@dataclass(frozen=True)
class TunnelRequest(_PacketRequest):
    """One tunnelled SYN (probes.tunnel) to the relay; an ICMP error about it, if any."""

    op: ClassVar[str] = "tunnel"
    kind: str  # the tunnel probe's name: "teredo" or "tunnel6in4"
    variant: str
    relay: str
    target6: str
    sport: int
    wait: float = 0.0

    def waiting(self, seconds: float) -> Self:
        return replace(self, wait=seconds)


@dataclass(frozen=True)
class ConnectRequest(_PacketRequest):
    """A kernel TCP connection from a chosen source port; its greeting line once open."""

    op: ClassVar[str] = "connect"
    family: int
    dst: str
    dport: int
    sport: int
    timeout: float = 0.0

    def waiting(self, seconds: float) -> Self:
        return replace(self, timeout=seconds)


@dataclass(frozen=True)
class SmtpRequest(Request[Transcript]):
    """An SMTP dialogue over the kernel's TCP (probes.dialogue); `timeout` per command."""

    op: ClassVar[str] = "smtp"
    dst: str
    dport: int
    dialogue: Dialogue
    timeout: float = 0.0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        talk = data["dialogue"]
        return cls(**{**data, "dialogue": Dialogue(**{**talk, "rcpts": tuple(talk["rcpts"])})})

    def waiting(self, seconds: float) -> Self:
        return replace(self, timeout=seconds)

    def read_answer(self, data: dict[str, Any]) -> Transcript:
        _error(data)
        return Transcript(**{**data, "steps": [tuple(step) for step in data["steps"]]})

    def answer_line(self, answer: Transcript) -> str:
        return json.dumps(answer.as_dict())


@dataclass(frozen=True)
class GuessRequest(Request[GuessAnswer]):
    """Password guessing (probes.guessing) on `port`; `timeout` per connection."""

    op: ClassVar[str] = "guess"
    dst: str
    port: int
    users: tuple[str, ...] = ()
    timeout: float = 0.0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        return cls(**{**data, "users": tuple(data["users"])})

    def waiting(self, seconds: float) -> Self:
        return replace(self, timeout=seconds)

    def read_answer(self, data: dict[str, Any]) -> GuessAnswer:
        _error(data)
        return GuessAnswer(tuple(Guess(**g) for g in data.get("guesses", ())),
                           data.get("error"))


REQUESTS: dict[str, type[Request[Any]]] = {r.op: r for r in (
    SynRequest, UdpRequest, TunnelRequest, ConnectRequest, SmtpRequest, GuessRequest)}


def parse_request(line: str) -> Request[Any]:
    """A request as the agent reads it from one line (AgentError: not a request)."""
    try:
        data = json.loads(line)
        kind = REQUESTS[data.pop("op")]
        return kind.from_wire(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AgentError(f"not a request: {line.strip()[:120]} ({exc!r})") from None


def parse_answer(request: Request[A], line: str) -> A:
    """The agent's answer to `request`, typed (AgentError: an error or not an answer)."""
    try:
        data = json.loads(line)
        return request.read_answer(data)
    except AgentError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AgentError(f"not an answer to {request.op}: {line.strip()[:120]} "
                         f"({exc!r})") from None
