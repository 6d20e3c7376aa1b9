"""Password guessing against authenticated submission, as bots do it — bounded.

The `guessing` probes log in to the target's submission port (587 with
STARTTLS, or 465 with implicit TLS) with a small built-in list of trivial
passwords for the target's accounts: one connection per guess, at most
`limit` guesses, at most `rate` guesses per second, stopping at the first
accepted password or when the server stops answering (a ban).

It never guesses against an address outside the lab's documentation
prefixes unless the auditor names that address in `authorised` — and no
command of port25lab does so today (auditing a live gateway is read-only).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from probes.dialogue import Dialogue, run
from probes.requests import Guess

# The top of every leaked-password list. The order is the guesser's: each
# password is tried for every account before the next (password spraying).
TRIVIAL_PASSWORDS = ("123456", "password", "12345678", "qwerty", "letmein", "111111",
                     "admin", "welcome", "123123", "iloveyou")
LIMIT = 40  # guesses per probe, at most
RATE = 20.0  # guesses per second, at most
# The documentation prefixes (RFC 5737, RFC 3849): a fence that holds whatever a site
# says, not a site's addressing.
LAB_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "2001:db8::/32"))


class NotAuthorised(ValueError):
    """A guessing target outside the lab that the auditor did not authorise."""


def check_target(address: str, authorised: tuple[str, ...] = ()) -> None:
    ip = ipaddress.ip_address(address)
    if any(ip in net for net in LAB_NETWORKS) or address in authorised:
        return
    raise NotAuthorised(f"refusing to guess passwords on {address}: outside the lab "
                        "(only documentation addresses, unless the auditor authorises "
                        "this very address)")


def guess(dst: str, port: int, users: Sequence[str], limit: int = LIMIT, rate: float = RATE,
          timeout: float = 3.0, authorised: tuple[str, ...] = ()) -> tuple[Guess, ...]:
    """Guess until a password is accepted, the server stops answering, or `limit`."""
    check_target(dst, authorised)
    limit = max(0, min(limit, LIMIT, len(users) * len(TRIVIAL_PASSWORDS)))
    tls = "implicit" if port == 465 else "starttls"
    guesses: list[Guess] = []
    attempts = ((u, i) for i in range(len(TRIVIAL_PASSWORDS)) for u in users)
    next_at = time.monotonic()
    for user, index in attempts:
        if len(guesses) >= limit:
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = time.monotonic() + 1.0 / rate
        out = run(dst, port, Dialogue(tls=tls, user=user, password=TRIVIAL_PASSWORDS[index]),
                  timeout)
        auth = [s for s in out.steps if s[0] == "AUTH"]
        code = auth[-1][1] if auth else 0
        guesses.append(Guess(user, index, code, time.time(),
                             "" if auth else (out.error or "no AUTH step")))
        if code == 235 or not auth:
            break
    return tuple(guesses)
