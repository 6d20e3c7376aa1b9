"""A fleet of gateways audited at once: one report, a row per gateway per check.

The gateways come from `ssh://` targets and from Ansible inventories, read with
testinfra's Ansible runner (`ansible-inventory --list`, ansible.cfg and the
`ansible_*` variables as testinfra reads them); every one of them is then read with
the audit's own read-only backend (`lab.audit.remote`: known_hosts checked, the
allowlist enforced), never with the connection testinfra would open.

Each gateway is audited in a thread of its own, at most `jobs` at once (paramiko
holds one transport per connection, and the work is waiting on the network). A
gateway that cannot be read (unreachable, refused host key or login) is that
gateway's row, never the end of the run.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paramiko
from testinfra.utils.ansible_runner import AnsibleRunner

from lab.audit import gateway, remote
from lab.compliance.addressing import Requested
from lab.errors import BadInput

JOBS = 8  # gateways read at once by default: each is mostly waiting on its SSH channel
MAX_JOBS = 256
INVENTORY_TIMEOUT = 60.0  # s, for ansible-inventory (a dynamic inventory is a program)
CONNECTIONS = ("ssh", "paramiko")  # what testinfra makes of ansible's smart/ssh/paramiko_ssh
# Ansible's names for a login password (testinfra reads only the second)
PASSWORDS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")


@dataclass(frozen=True)
class Member:
    """One gateway of the fleet: how the report names it, and how to reach it."""

    name: str
    access: gateway.Access | None
    refused: str = ""  # why it is not read at all (an inventory host not reached over SSH)


@dataclass(frozen=True)
class Audited:
    """One gateway's audit, or why it could not be read."""

    name: str
    result: gateway.AuditResult | None
    error: str
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed

    @property
    def status(self) -> str:
        if self.result is None:
            return "NOT READ"
        return "PASS" if self.result.passed else "FAIL"


@dataclass(frozen=True)
class FleetResult:
    audits: tuple[Audited, ...]
    jobs: int
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.audits)

    def count(self, status: str) -> int:
        return sum(a.status == status for a in self.audits)


# --- who is in the fleet ----------------------------------------------------------------

def parse_ansible(url: str, inventory: Path | None) -> tuple[str, Path]:
    """`ansible://PATTERN` (testinfra's form, `?ansible_inventory=FILE` allowed): pattern, file."""
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parsed.query)
    unknown = sorted(set(query) - {"ansible_inventory"})
    if unknown or parsed.fragment or parsed.path not in ("", "/"):
        raise BadInput(f"target {url!r}: give ansible://PATTERN, with --inventory FILE or "
                       "?ansible_inventory=FILE")
    pattern = urllib.parse.unquote(parsed.netloc) or "all"
    given = query.get("ansible_inventory", [])
    if len(given) > 1:
        raise BadInput(f"target {url!r}: one ansible_inventory per target")
    if given and "\0" in given[0]:
        raise BadInput(f"target {url!r}: a file name cannot hold a NUL character")
    path = Path(given[0]) if given else inventory
    if path is None:
        raise BadInput(f"target {url!r}: name the inventory (--inventory FILE)")
    return pattern, path


class Inventory(AnsibleRunner):  # type: ignore[misc]
    """testinfra's Ansible runner, reading the inventory with a deadline and one-line errors."""

    @functools.cached_property
    def inventory(self) -> dict[str, Any]:
        path = Path(self.inventory_file)
        if not path.is_file() and not path.is_dir():
            raise BadInput(f"--inventory {path}: no such file")
        # ansible-core keeps its temporary files under ~/.ansible/tmp unless told otherwise
        with tempfile.TemporaryDirectory(prefix="port25lab-ansible-") as scratch:
            env = {**os.environ, "ANSIBLE_VERBOSITY": "0", "ANSIBLE_LOCAL_TEMP": scratch,
                   "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
                   "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1", "NO_COLOR": "1"}
            # ansible-core installed beside port25lab (its extra) comes first
            found = shutil.which("ansible-inventory", path=os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]))
            try:
                done = subprocess.run([found or "ansible-inventory", "--list", "-i", str(path)],
                                      capture_output=True, text=True, env=env,
                                      timeout=INVENTORY_TIMEOUT, check=False,
                                      stdin=subprocess.DEVNULL)
            except FileNotFoundError:
                raise BadInput("--inventory needs Ansible's ansible-inventory: install "
                               "ansible-core (pip install 'port25lab[ansible]')") from None
            except subprocess.TimeoutExpired:
                raise BadInput(f"--inventory {path}: ansible-inventory did not finish within "
                               f"{INVENTORY_TIMEOUT:g} s") from None
        if done.returncode != 0:
            raise BadInput(f"--inventory {path}: ansible-inventory cannot read it: "
                           f"{_ansible_reason(done.stderr)}")
        data: dict[str, Any] = json.loads(done.stdout)
        return data


def _ansible_reason(stderr: str) -> str:
    """The line of ansible's output that says what is wrong with the file."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("Failed to parse inventory:"):
            return line.removeprefix("Failed to parse inventory:").strip()
    errors = [ln.removeprefix("[ERROR]:").strip() for ln in lines if ln.startswith("[ERROR]")]
    return (errors or lines or ["exit status without a message"])[0]


def from_inventory(pattern: str, path: Path, login: remote.Login, trust: remote.Trust,
                   timeout: float) -> list[Member]:
    """The inventory's hosts matching `pattern`, each with its own address, user and key."""
    runner = Inventory(str(path))
    try:
        names = runner.get_hosts(pattern)
    except RuntimeError:  # testinfra: "No inventory was parsed"
        names = []
    if not names:
        raise BadInput(f"--inventory {path}: no host matches {pattern!r}")
    found = []
    for name in names:
        host = runner.get_host(name)  # testinfra's reading of the ansible_* variables
        kind = host.backend.get_connection_type() if host is not None else None
        if host is None or kind not in CONNECTIONS:
            kind = runner.get_variables(name).get("ansible_connection", kind)
            found.append(Member(name, None, f"ansible_connection {kind}: the audit reads "
                                            "gateways over SSH only"))
            continue
        spec = host.backend.host
        said = runner.get_variables(name)
        if spec.password or any(said.get(v) for v in PASSWORDS):
            raise BadInput(f"--inventory {path}: host {name} has a password in the inventory; "
                           "use --password-env VAR or --password-prompt")
        target = remote.Target(spec.user or getpass.getuser(), spec.name, int(spec.port or 22))
        key = host.backend.ssh_identity_file
        own = replace(login, identities=(Path(key), *login.identities)) if key else login
        found.append(Member(f"{name} ({target})",
                            gateway.Access(target, own, trust, None, timeout)))
    return found


def unique(members: Sequence[Member]) -> list[Member]:
    """Each gateway once (a target named twice, or on the line and in the inventory)."""
    seen: set[str] = set()
    kept = []
    for m in members:
        key = str(m.access.gateway) if m.access is not None else m.name
        if key not in seen:
            seen.add(key)
            kept.append(m)
    return kept


# --- the audit ---------------------------------------------------------------------------

def _one(member: Member, requested: Requested) -> Audited:
    started = time.monotonic()

    def took() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    if member.access is None:
        return Audited(member.name, None, member.refused, 0.0)
    prefix = f"{member.access.gateway}: "
    try:
        result = gateway.audit(member.access, requested)
    except BadInput as exc:  # unreachable, refused key or login, a command it lacks
        return Audited(member.name, None, str(exc).removeprefix(prefix), took())
    except (paramiko.SSHException, OSError, EOFError) as exc:  # the connection broke off
        return Audited(member.name, None, f"the connection failed while reading: "
                                          f"{exc or type(exc).__name__}", took())
    return Audited(member.name, result, "", took())


def audit(members: Sequence[Member], requested: Requested, jobs: int = JOBS,
          done: Callable[[Audited], None] = lambda _: None) -> FleetResult:
    """Every gateway, at most `jobs` at once; the results in the order the fleet was given."""
    started = time.monotonic()
    workers = max(1, min(jobs, len(members)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit")
    try:
        futures = [pool.submit(_one, m, requested) for m in members]
        for future in as_completed(futures):  # said as each ends, from this thread
            done(future.result())
        audits = tuple(f.result() for f in futures)
    finally:  # on a signal: none is started any more (those reading end by their deadlines)
        pool.shutdown(wait=False, cancel_futures=True)
    return FleetResult(audits, workers, round((time.monotonic() - started) * 1000, 1))


# --- the reports -------------------------------------------------------------------------

def _cells(a: Audited) -> list[list[str]]:
    """A gateway's rows: check, IPv4, IPv6 (a check without a family fills IPv4)."""
    if a.result is None:  # why: under the table, with what failed
        return [[a.name, "read", "ERROR", "", ""]]
    rows: dict[str, dict[int | None, str]] = {}
    for f in a.result.findings:
        rows.setdefault(f.check, {})[f.family] = f.status
    return [[a.name, check, *([by[None], ""] if None in by else
                              [by.get(4, "-"), by.get(6, "-")]), ""]
            for check, by in rows.items()]


def table(fleet: FleetResult) -> str:
    """The terminal report: a row per gateway per check, then the evidence of what failed."""
    lines = [f"== fleet audit {'PASS' if fleet.passed else 'FAIL'}: {len(fleet.audits)} "
             f"gateways, {fleet.count('PASS')} pass, {fleet.count('FAIL')} fail, "
             f"{fleet.count('NOT READ')} not read (read in {fleet.elapsed_ms / 1000:.1f} s, "
             f"{fleet.jobs} at a time)"]
    rows = [["gateway", "check", "IPv4", "IPv6", ""]]
    for a in fleet.audits:
        rows += _cells(a)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        lines.append("   " + "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                         row[4]]).rstrip())
    failed = [(a, f) for a in fleet.audits if a.result is not None
              for f in a.result.findings if f.passed is False]
    if failed or fleet.count("NOT READ"):
        lines.append("   what failed:")
        lines += [f"     {a.name}: {f.name}: {f.detail}" for a, f in failed]
        lines += [f"     {a.name}: not read: {a.error}" for a in fleet.audits
                  if a.result is None]
    return "\n".join(lines)


def as_json(fleet: FleetResult) -> dict[str, Any]:
    gateways = []
    for a in fleet.audits:
        entry: dict[str, Any] = {"name": a.name, "status": a.status, "passed": a.passed,
                                 "elapsed_ms": a.elapsed_ms}
        if a.result is None:
            entry["error"] = a.error
        else:
            entry["audit"] = gateway.as_json(a.result)
        gateways.append(entry)
    return {"fleet": {"passed": fleet.passed, "gateways": len(fleet.audits),
                      "pass": fleet.count("PASS"), "fail": fleet.count("FAIL"),
                      "not_read": fleet.count("NOT READ"), "jobs": fleet.jobs,
                      "elapsed_ms": fleet.elapsed_ms},
            "gateways": gateways}


def write_json(path: Path, fleet: FleetResult) -> None:
    path.write_text(json.dumps(as_json(fleet), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def junit(fleet: FleetResult) -> ET.Element:
    """A testsuite per gateway; one that could not be read is a suite with its error."""
    suites = ET.Element("testsuites", name="port25lab fleet audit")
    for a in fleet.audits:
        if a.result is not None:
            suite = gateway.junit_suite(a.result)
            suite.set("name", f"audit {a.name}")
        else:
            suite = ET.Element("testsuite", name=f"audit {a.name}", tests="1", failures="0",
                               errors="1", skipped="0")
            case = ET.SubElement(suite, "testcase", classname="port25lab.audit", name="read")
            ET.SubElement(case, "error", message=a.error[:200]).text = a.error
        suite.set("time", f"{a.elapsed_ms / 1000:.3f}")
        suites.append(suite)
    return suites


def write_junit(path: Path, fleet: FleetResult) -> None:
    from lab import report

    report.write_xml(path, junit(fleet))
