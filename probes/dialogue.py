"""An SMTP dialogue, as a mail program or a spambot would hold it.

    220 banner → EHLO → [STARTTLS → EHLO] → [AUTH] → MAIL → RCPT → DATA → 250 queued

Runs inside the agent (kernel TCP through smtplib); every reply is recorded,
so that the report can say which server answered and what it refused.
"""

from __future__ import annotations

import functools
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

EHLO_NAME = "client.port25lab.test"


@dataclass(frozen=True)
class Dialogue:
    """What to say: the transport security, the account (if any) and the message."""

    tls: str = "none"  # "none", "starttls" (when offered) or "implicit"
    user: str | None = None
    password: str | None = None
    mail_from: str | None = None
    rcpts: tuple[str, ...] = ()
    message: str | None = None  # sent with DATA when every RCPT was accepted
    mail_before_auth: str | None = None  # a sender to try MAIL with before any AUTH


@dataclass
class Transcript:
    """What the server said, step by step."""

    banner: str | None = None
    ehlo_name: str | None = None
    auth_before_tls: bool | None = None
    starttls_offered: bool | None = None
    tls_subject: str | None = None
    steps: list[tuple[str, int, str]] = field(default_factory=list)
    queue_id: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _context() -> ssl.SSLContext:
    # Lab servers have per-run self-signed certificates; the subject is recorded.
    # Nothing is verified, so no CA store is loaded (create_default_context's costs
    # 20 ms a dialogue); one context per agent, as a mail program keeps one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def prepare() -> None:
    """Load at the agent's start what a TLS dialogue needs (the certificate decoder
    import alone is 20 ms): not inside the first TLS row's time."""
    from cryptography import x509  # noqa: F401

    _context()


class _ImplicitTls(smtplib.SMTP_SSL):
    """SMTP over TLS from the first byte (port 465) that acknowledges the handshake's
    last record at once: else the server's banner, written right after that record,
    waits out Nagle on its side and the delayed ACK (40 ms) on ours."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return sock  # type: ignore[no-any-return]


def _subject(conn: smtplib.SMTP) -> str | None:
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):
        return None
    der = sock.getpeercert(binary_form=True)
    if der is None:
        return None
    # Without verification getpeercert() is empty: decode the subject from DER
    # (cryptography imported here: only the agent inside a node reads certificates).
    from cryptography import x509

    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


def run(dst: str, dport: int, talk: Dialogue, timeout: float) -> Transcript:
    """Hold the dialogue; a refusal ends it (recorded), a network error too."""
    out = Transcript()
    try:
        conn: smtplib.SMTP
        # An explicit EHLO name: smtplib would otherwise ask DNS for ours (none here).
        if talk.tls == "implicit":
            conn = _ImplicitTls(local_hostname=EHLO_NAME, timeout=timeout,
                                    context=_context())
        else:
            conn = smtplib.SMTP(local_hostname=EHLO_NAME, timeout=timeout)
        conn._host = dst  # type: ignore[attr-defined]  # the TLS layer reads it
        code, text = conn.connect(dst, dport)
        out.banner = f"{code} {text.decode(errors='replace')}"
        with conn:
            _dialogue(conn, talk, out)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        out.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return out


def _step(out: Transcript, command: str, reply: tuple[int, bytes]) -> bool:
    code, text = reply
    out.steps.append((command, code, text.decode(errors="replace")))
    return 200 <= code < 400


def _dialogue(conn: smtplib.SMTP, talk: Dialogue, out: Transcript) -> None:
    code, text = conn.ehlo()
    out.steps.append(("EHLO", code, text.decode(errors="replace")))
    out.ehlo_name = text.decode(errors="replace").splitlines()[0].split()[0] if text else None
    out.tls_subject = _subject(conn)
    out.auth_before_tls = conn.has_extn("auth") and out.tls_subject is None
    out.starttls_offered = conn.has_extn("starttls")
    if talk.mail_before_auth:
        _step(out, "MAIL before AUTH", conn.mail(talk.mail_before_auth))
        _step(out, "RSET", conn.rset())
    if talk.tls == "starttls" and conn.has_extn("starttls"):
        if not _step(out, "STARTTLS", conn.starttls(context=_context())):
            return
        out.tls_subject = _subject(conn)
        _step(out, "EHLO", conn.ehlo())
    if talk.user and talk.password:
        if not conn.has_extn("auth"):
            out.steps.append(("AUTH", 0, "not offered"))
        else:
            try:
                # One AUTH per dialogue: smtplib's login() would try the next
                # mechanism after a refusal, and a guess would count twice.
                conn.user, conn.password = talk.user, talk.password
                offered = conn.esmtp_features.get("auth", "").upper().split()
                mechanism = "PLAIN" if "PLAIN" in offered else "LOGIN"
                authobject = conn.auth_plain if mechanism == "PLAIN" else conn.auth_login
                conn.auth(mechanism, authobject)
                out.steps.append(("AUTH", 235, "authenticated"))
            except smtplib.SMTPAuthenticationError as exc:
                said = exc.smtp_error
                reason = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
                out.steps.append(("AUTH", exc.smtp_code, reason))
                return
    if not talk.mail_from:
        return
    if not _step(out, "MAIL", conn.mail(talk.mail_from)):
        return
    accepted = [_step(out, f"RCPT {rcpt}", conn.rcpt(rcpt)) for rcpt in talk.rcpts]
    if talk.message is None or not all(accepted):
        _step(out, "RSET", conn.rset())
        return
    try:
        code, text = conn.data(talk.message.encode())
    except smtplib.SMTPResponseException as exc:  # DATA refused: a reply, not an error
        said = exc.smtp_error
        reason = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        out.steps.append(("DATA", exc.smtp_code, reason))
        return
    reply = text.decode(errors="replace")
    out.steps.append(("DATA", code, reply))
    if code == 250 and "queued as " in reply:
        out.queue_id = reply.rsplit("queued as ", 1)[1].strip()
