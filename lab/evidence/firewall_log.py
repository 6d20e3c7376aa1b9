"""The routers' firewall logs as evidence: which internal hosts tried the world's 25/465.

Read from the JSON lines each router's ulogd2 writes (lab.services.ulogd).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lab.model.evidence import Suspect


def read_records(log_files: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every JSON record of the logs that exist (a line being written is skipped)."""
    for path in log_files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def suspects(log_files: Iterable[Path], owner: Callable[[str], str | None],
             inside: Iterable[str], ports: tuple[int, ...] = (25, 465)) -> list[Suspect]:
    """Internal hosts in the firewall logs that tried `ports`, most attempts first."""
    inside_roles = set(inside)
    seen: dict[str, list[dict[str, object]]] = {}
    for record in read_records(log_files):
        if record.get("dest_port") in ports and record.get("src_ip"):
            seen.setdefault(str(record["src_ip"]), []).append(record)
    found = []
    for address, records in seen.items():
        role = owner(address)
        if role is None or role not in inside_roles:
            continue
        times = sorted(str(r.get("timestamp", "")) for r in records)
        found.append(Suspect(
            role, address, len(records),
            tuple(sorted({int(str(r["dest_port"])) for r in records})),
            tuple(sorted({str(r.get("dest_ip")) for r in records})), times[0], times[-1]))
    return sorted(found, key=lambda s: (-s.count, s.role, s.address))


def logged_at(log_files: Iterable[Path], address: str, since: float, until: float,
              nth: int = 1) -> float | None:
    """When the logs recorded `address`'s `nth` packet in (since, until] (wall clock).

    The last one in that window when there are fewer; None when there is none.
    """
    times = []
    for record in read_records(log_files):
        try:
            when = int(record["oob.time.sec"]) + int(record["oob.time.usec"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("src_ip") == address and since < when <= until:
            times.append(when)
    times.sort()
    return (times[nth - 1] if len(times) >= nth else times[-1]) if times else None
