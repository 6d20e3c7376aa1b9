"""The `port25lab` command line (a contract: see DESIGN.md).

Exit status: 0 every expectation holds; 1 at least one does not; 2 bad input
or usage (one line on stderr), also a report or the output that cannot be
written; 3 the lab failed; 128+N signal N (141: the output's reader is gone).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.metadata
import importlib.util
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.text import Text

from lab.compliance.addressing import OPTIONS
from lab.errors import BadInput, LabFailure
from lab.runtime.lifecycle import Interrupted, interrupt_on_signals
from lab.terminal import Progress, printer

OK, FAILED, BAD_INPUT, LAB_FAILED = 0, 1, 2, 3


NAME_MAX, PATH_MAX = 255, 4096  # Linux: bytes in one name of a path, in a whole path


def _name(value: str) -> str:
    """An argparse type for every file or folder argument: a name the kernel can look up.

    Path operations raise ValueError on a NUL and OSError (ENAMETOOLONG) on an overlong
    name wherever they happen, so such names are refused here, before anything is read.
    """
    shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "…"
    if "\0" in value:
        raise argparse.ArgumentTypeError(f"{shown}: a file name cannot hold a NUL character")
    encoded = os.fsencode(value)
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"{shown}: a name in it is {longest} bytes long; file systems allow {NAME_MAX}")
    if len(encoded) >= PATH_MAX:
        raise argparse.ArgumentTypeError(
            f"{shown}: {len(encoded)} bytes long; a path may have {PATH_MAX - 1}")
    return value


def _jobs(value: str) -> int:
    """An argparse type for --jobs: a whole number of labs, at least one."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number of labs, 1 or more")
    return number


def _default_jobs() -> int:
    """Labs side by side when --jobs is not given: three per core.

    A lab mostly waits (a ban, Dovecot's refusals): on 2 cores 6 ran the built-in matrix
    fastest (4: 64 s, 6: 44 s, 8: 51 s, 14: 49 s, on a machine busy with other work).
    """
    return max(2, 3 * (os.cpu_count() or 1))


def _file_name(value: str) -> Path:
    return Path(_name(value))


def _version() -> str:
    """The installed package's version (what pip and the wheel say, not a copy of it)."""
    try:
        return importlib.metadata.version("port25lab")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run `make setup`)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message} (see `port25lab --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="port25lab", description="Emulate outbound-mail gateway rules in "
                     "real network namespaces and verify what they block, divert and allow.")
    parser.add_argument("--version", action="version", version=f"port25lab {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    listing = commands.add_parser("list", help="list the built-in scenarios (or the probes)")
    listing.add_argument("--probes", action="store_true",
                         help="list the probes a scenario can name, with their variants")
    verify = commands.add_parser("verify", help="run scenarios and check their expectations")
    verify.add_argument("scenarios", nargs="*", type=_name, metavar="SCENARIO",
                        help="a built-in scenario name or a scenario folder")
    verify.add_argument("--all", action="store_true", help="every built-in scenario")
    verify.add_argument("--json", type=_file_name, metavar="FILE", help="write a JSON report")
    verify.add_argument("--junit", type=_file_name, metavar="FILE", help="write a JUnit XML report")
    verify.add_argument("--html", type=_file_name, metavar="FILE",
                        help="write an HTML report (one self-contained page)")
    verify.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                        help="labs side by side, each scenario in its own (default: "
                             f"{_default_jobs()} here, three per core; 1: one after another)")
    _site_options(verify)
    _terminal_options(verify)
    suspects = commands.add_parser(
        "suspects", help="run scenarios and list the internal hosts their firewall logs "
                         "caught trying 25/465 of the world")
    suspects.add_argument("scenarios", nargs="+", type=_name, metavar="SCENARIO")
    suspects.add_argument("--json", type=_file_name, metavar="FILE", help="write a JSON report")
    _site_options(suspects)
    shell = commands.add_parser("shell", help="boot a scenario's lab and explore it: Mininet's "
                                "CLI with probe, rules, logs, accounts, pingall (see `help`)")
    shell.add_argument("scenario", type=_name, metavar="SCENARIO")
    _site_options(shell)
    _audit_parser(commands)
    _exercise_parser(commands)
    return parser


def _exercise_parser(commands: Any) -> None:
    exercise = commands.add_parser(
        "exercise", help="guided exercises: list, start N, check, hint (in en or pt-BR)")
    actions = exercise.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    language = argparse.ArgumentParser(add_help=False)
    language.add_argument("--lang", choices=("pt-BR", "en"),
                          help="the exercises' language (default: from LANG; pt* is pt-BR)")
    actions.add_parser("list", parents=[language], help="the exercises, by number")
    start = actions.add_parser("start", parents=[language],
                               help="make ./port25lab-exercise-N/ with the rules to edit "
                                    "(never overwriting your edits) and say the goal")
    start.add_argument("number", type=_name, metavar="N",
                       help="an exercise's number, or an exercise folder")
    check = actions.add_parser("check", parents=[language],
                               help="in the work folder: run the exercise in a lab on your "
                                    "rules and say what still fails (needs root)")
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                       help="colour the matrix (auto: on a terminal, unless NO_COLOR is set)")
    actions.add_parser("hint", parents=[language],
                       help="in the work folder: the next hint (one at a time)")


def _site_options(command: argparse.ArgumentParser) -> None:
    """Where a scenario runs and with which rules: --site, --rules, --rules-v4/-v6."""
    command.add_argument("--site", type=_file_name, metavar="FILE",
                         help="run on the network in this site file (YAML) instead of the "
                              "scenario's topology; give its policy router's rules too")
    command.add_argument("--rules", type=_file_name, action="append", default=[],
                         metavar="FILE", help="the policy router's whole policy, both "
                         "families, instead of the scenario's: a script of iptables and "
                         "ip6tables commands, or iptables-save/ip6tables-save files "
                         "(repeatable)")
    command.add_argument("--rules-v4", type=_file_name, metavar="FILE",
                         help="IPv4 policy for the policy router instead of the scenario's "
                              "(iptables-save file or script of iptables commands)")
    command.add_argument("--rules-v6", type=_file_name, metavar="FILE",
                         help="IPv6 policy for the policy router instead of the scenario's")


def _terminal_options(command: argparse.ArgumentParser) -> None:
    said = command.add_mutually_exclusive_group()
    said.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    said.add_argument("-v", "--verbose", action="store_true",
                      help="a progress line per step and probe (as where standard error is "
                           "not a terminal; on a terminal: one line that each step replaces)")
    command.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour the report: auto (the default) where standard output "
                              "is a terminal and NO_COLOR is not set")


def _audit_parser(commands: Any) -> None:
    audit = commands.add_parser(
        "audit", help="read a live gateway over SSH (read-only), check it, and optionally "
                      "replay its rules in a twin lab")
    audit.add_argument("targets", nargs="*", metavar="ssh://USER@HOST[:PORT]",
                       help="the gateway; several (or ansible://PATTERN, or --inventory): "
                            "a fleet, audited in parallel into one report")
    fleet = audit.add_argument_group("a fleet of gateways")
    fleet.add_argument("--inventory", type=_file_name, metavar="FILE",
                       help="an Ansible inventory (read by ansible-inventory): its hosts "
                            "matching the ansible://PATTERN targets, or all of them")
    fleet.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="gateways read at once (default 8)")
    audit.add_argument("--mx", metavar="ssh://USER@HOST[:PORT]",
                       help="the mail server: also read its Postfix and Dovecot settings")
    login = audit.add_argument_group("login (password never on the command line)")
    login.add_argument("-i", "--identity", type=_file_name, action="append", default=[],
                       metavar="KEY", help="private key file (repeatable)")
    login.add_argument("--agent", action="store_true", help="use the SSH agent")
    login.add_argument("--password-env", metavar="VAR",
                       help="take the password from this environment variable")
    login.add_argument("--password-prompt", action="store_true",
                       help="ask for the password on the terminal")
    login.add_argument("--known-hosts", type=_file_name, metavar="FILE",
                       help="known_hosts to verify host keys (default ~/.ssh/known_hosts)")
    login.add_argument("--accept-host-key", action="append", default=[],
                       metavar="SHA256:…", help="accept this host key fingerprint although "
                       "known_hosts does not have it (or has another)")
    login.add_argument("--timeout", type=float, default=20, metavar="S",
                       help="deadline for each remote command (default 20 s)")
    checks = audit.add_argument_group(
        "what the checks assume (default: taken from the gateway, and said in a note)")
    for name, (metavar, repeats, said) in OPTIONS.items():
        checks.add_argument(f"--{name}", metavar=metavar, help=said,
                            **({"action": "append", "default": []} if repeats else {}))
    twin = audit.add_argument_group("twin: replay the gateway's rules in a lab (needs root)")
    twin.add_argument("--twin", type=_name, metavar="SCENARIO",
                      help="run this scenario's probe matrix with the gateway's rules, on the "
                           "gateway's own network (its interfaces, addresses, default route)")
    twin.add_argument("--write-site", type=_file_name, metavar="FILE",
                      help="save the network derived from the gateway as a site file "
                           "(for `verify SCENARIO --site FILE`)")
    twin.add_argument("--map-interface", action="append", default=[], metavar="GATEWAY=LAB",
                      help="rename an interface in the gateway's rules for the lab "
                           "(repeatable; needed only where the twin's names differ)")
    audit.add_argument("--json", type=_file_name, metavar="FILE", help="write a JSON report")
    audit.add_argument("--junit", type=_file_name, metavar="FILE", help="write a JUnit XML report")
    audit.add_argument("--html", type=_file_name, metavar="FILE",
                       help="write an HTML report (one self-contained page)")
    _terminal_options(audit)


def _require_mininet() -> None:
    try:
        found = importlib.util.find_spec("mininet")
    except ImportError:  # an import hook that refuses it
        found = None
    if found is None:
        raise BadInput("Mininet is not importable: run `make setup` (Debian package mininet) "
                       "and use .venv/bin/port25lab")


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise BadInput(f"`port25lab {command}` needs root (it creates network namespaces)")


def _output(path: Path | None, option: str) -> None:
    """Refuse a report file that cannot be written, before any lab boots.

    It is really tried, and nothing is lost by trying: an existing file is opened for
    appending (not truncated: an earlier report stays until this run has its own), a new
    one is created and removed again.
    """
    if path is None:
        return
    if not path.parent.is_dir():
        if path.parent.exists():
            raise BadInput(f"{option} {path}: {path.parent} is not a folder")
        raise BadInput(f"{option} {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a folder, not a file name")
    try:
        if os.path.exists(path):  # the kernel follows links, /dev/stdout's to a pipe too
            # O_NONBLOCK: a FIFO nobody reads fails now rather than hang the run's end
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        else:
            new = os.path.realpath(path)  # a dangling symbolic link: its target is made
            os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(new)
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot write there ({exc.strerror}); "
                       "give another file") from None


def _apart(*reports: tuple[str, Path | None]) -> None:
    """Refuse two report options naming one file: the second report would replace the first."""
    given = [(option, path) for option, path in reports if path is not None]
    for n, (option, path) in enumerate(given):
        for other, elsewhere in given[n + 1:]:
            _two(option, path, other, elsewhere)


def _two(option: str, path: Path, other: str, elsewhere: Path) -> None:
    same = os.path.realpath(path) == os.path.realpath(elsewhere)
    # Where both exist the files decide: hard links are one file, and a terminal or a pipe
    # takes one report after the other.
    with contextlib.suppress(OSError):
        first, second = os.stat(path), os.stat(elsewhere)
        same = stat.S_ISREG(first.st_mode) and (
            (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino))
    if same:
        raise BadInput(f"{option} {path} and {other} {elsewhere} are the same file: one report "
                       "would overwrite the other; give two file names")


def _reports(args: argparse.Namespace) -> None:
    """The report files, checked before any lab boots: writable, and the HTML drawable."""
    for option in ("json", "junit", "html"):
        _output(getattr(args, option), f"--{option}")
    if args.html is not None:
        from lab.html_report.diagram import require_dot

        require_dot()


def _html() -> Any:
    """The HTML report's module, imported only when a page is written (Jinja2 is not light)."""
    from lab import html_report

    return html_report


def _timed(s: Any, say: Callable[[str], None]) -> tuple[Any, Any]:
    """Run one scenario in a lab of its own: its result, and its record (site, rules, time)."""
    from lab.engine.parallel import timed

    return timed(s, say)


def _record(args: argparse.Namespace, records: Sequence[Any]) -> Any:
    """The run's record: version, start, command, its scenarios' records, its time so far."""
    from lab.model.record import RunRecord

    return RunRecord(_version(), args.started, tuple(args.argv), tuple(records),
                     round(time.monotonic() - args.clock, 3))


def _write(reports: Sequence[tuple[str, Path | None, Callable[[Path], None]]]) -> bool:
    """Write the reports asked for; one that fails is a line on stderr, the others are written.

    The terminal report is printed before, so the run's results are not lost.
    """
    written = True
    for option, path, write in reports:
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            print(f"port25lab: {option} {path}: the report could not be written "
                  f"({exc.strerror or exc}); the run's results are the terminal report "
                  "above", file=sys.stderr)
            written = False
    return written


def cmd_list(probes: bool = False) -> int:
    from lab.model import scenario

    if probes:
        from probes.registry import PROBES

        width = max(map(len, PROBES))
        for name, probe in PROBES.items():
            port = f"{probe.port}" if probe.port else "-"
            print(f"{name.ljust(width)}  {port:>5}  {probe.summary}")
            if probe.variants:
                print(f"{'':{width}}         variants: {', '.join(probe.variants)}")
        return OK

    names = scenario.builtin_names()
    width = max(map(len, names), default=0)
    for name in names:
        s = scenario.load(name)
        print(f"{name.ljust(width)}  {s.topology:<13}  {s.summary}")
    return OK


def _scenarios(args: argparse.Namespace, names: Sequence[str]) -> tuple[list[Any], list[str]]:
    """The scenarios asked for, on --site if given, with the policy router's rules from
    --rules or --rules-v4/--rules-v6; and the notes to say once the input is known good."""
    from lab.model import scenario
    from lab.netfilter.family import family as ip_family
    from lab.netfilter.policy import override, read_policy
    from lab.userfiles import shown

    split = {4: args.rules_v4, 6: args.rules_v6}
    if args.rules and any(split.values()):
        raise BadInput("give --rules (the whole policy) or --rules-v4/--rules-v6, not both")
    scenarios = [scenario.load(n, args.site) for n in names]
    notes: list[str] = []
    if args.site is not None and not args.rules and any(s.policies for s in scenarios):
        if not any(split.values()):
            own = next(s for s in scenarios if s.policies)
            raise BadInput(f"--site {args.site}: scenario {own.name}'s own rules are written "
                           f"for its topology, not this site: give the policy router's rules "
                           "with --rules FILE (or --rules-v4 and --rules-v6)")
        missing = next(f for f, path in split.items() if path is None) if not all(
            split.values()) else None
        if missing is not None:
            raise BadInput(f"--site {args.site}: give --rules-v{missing} too (the scenario's "
                           f"own IPv{missing} rules are written for its topology; an empty "
                           "file is an empty policy), or the whole policy with --rules FILE")
        scenarios = [s.with_policy(()) for s in scenarios]
    for family, path in split.items():
        if path is None:
            continue
        policy, said = override(path, family, split[ip_family(family).other.version])
        notes += said
        scenarios = [s.with_rules(family, policy) for s in scenarios]
    if args.rules:
        if len(set(args.rules)) < len(args.rules):
            twice = next(p for p in args.rules if args.rules.count(p) > 1)
            raise BadInput(f"--rules {twice} is given twice: its rules would load twice "
                           "(give it once)")
        files = tuple(read_policy(path) for path in args.rules)
        held = {f for p in files for f in p.families}
        for s in scenarios:
            router = s.site.role(s.site.policy_router)
            for family in (4, 6):
                if family not in held and router.has(family):
                    notes.append(f"--rules {', '.join(shown(p) for p in args.rules)}: no "
                                 f"{ip_family(family).tool} rules: {router.name}'s IPv"
                                 f"{family} chains accept everything (an empty policy)")
        scenarios = [s.with_policy(files) for s in scenarios]
    return scenarios, list(dict.fromkeys(notes))


def cmd_verify(args: argparse.Namespace) -> int:
    from lab import report
    from lab.model import scenario

    if args.all and args.scenarios:
        raise BadInput("give scenario names or --all, not both")
    _apart(("--json", args.json), ("--junit", args.junit), ("--html", args.html))
    names = scenario.builtin_names() if args.all else args.scenarios
    if not names:
        raise BadInput("no scenario given: name one (see `port25lab list`) or use --all")
    # the notes are said once the input is known good: bad input is one line
    scenarios, notes = _scenarios(args, names)
    _reports(args)
    _require_root("verify")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    show = printer(args.color)
    started = time.monotonic()
    results, records = [], []
    jobs = min(args.jobs or _default_jobs(), len(scenarios))
    with Progress(args.quiet, args.verbose) as say:
        def done(n: int, result: Any, record: Any) -> None:
            results.append(result)
            records.append(record)
            say.clear()
            show(report.styled(result, scenarios[n]))
        if jobs == 1:  # one after another, in this process
            for n, s in enumerate(scenarios):
                done(n, *_timed(s, say))
        else:
            from lab.engine.parallel import run_side_by_side

            run_side_by_side(scenarios, jobs, say, done)
    show(Text(report.totals(results, time.monotonic() - started)))
    show(Text(report.summary(results), report.GOOD if all(r.passed for r in results)
              else report.BAD))
    ran = _record(args, records)
    if not _write([("--json", args.json, lambda p: report.write_json(p, results, ran)),
                   ("--junit", args.junit, lambda p: report.write_junit(p, results, ran)),
                   ("--html", args.html,
                    lambda p: _html().write_html(p, list(zip(scenarios, results,
                                                             strict=True)), ran))]):
        return BAD_INPUT
    if any(r.lab_error for r in results):
        return LAB_FAILED
    return OK if all(r.passed for r in results) else FAILED


def cmd_suspects(args: argparse.Namespace) -> int:
    from lab import report
    from lab.engine.verify import verify
    from lab.runtime import lifecycle

    scenarios, notes = _scenarios(args, args.scenarios)
    _output(args.json, "--json")
    _require_root("suspects")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    results = []
    for s in scenarios:
        with lifecycle.opened() as run:
            result = verify(s, run, lambda _: None)
        results.append(result)
        print(f"== {s.name} [{report.site_label(result)}]")
        if result.lab_error:
            print(f"   lab error: {result.lab_error}")
        print("\n".join(report.suspect_lines(result)), flush=True)
    if not _write([("--json", args.json, lambda p: report.write_json(p, results))]):
        return BAD_INPUT
    return LAB_FAILED if any(r.lab_error for r in results) else OK


def _requested(args: argparse.Namespace) -> Any:
    """What the auditor said of the network (what she did not say comes from the gateway)."""
    from ipaddress import ip_address, ip_network

    from lab.compliance.addressing import Requested

    def split(value: str | None) -> tuple[str, ...]:
        return tuple(v.strip() for v in (value or "").split(",") if v.strip())

    clients, servers = split(args.clients), split(args.mail_server)
    for value in clients:
        try:
            ip_network(value, strict=False)
        except ValueError:
            raise BadInput(f"--clients: {value!r} is not a network (CIDR)") from None
    for value in servers:
        try:
            ip_address(value)
        except ValueError:
            raise BadInput(f"--mail-server: {value!r} is not an address") from None
    if args.clients is not None and not clients:
        raise BadInput("--clients: name at least one network")
    both = sorted(set(args.inside) & set(args.management))
    if both:
        raise BadInput(f"--inside {both[0]} and --management {both[0]}: an interface is one "
                       "or the other")
    return Requested(clients, servers, tuple(dict.fromkeys(args.inside)),
                     tuple(dict.fromkeys(args.management)))


def cmd_audit(args: argparse.Namespace) -> int:
    from lab import report
    from lab.audit import gateway as audit
    from lab.audit import remote
    from lab.audit.twin import derived_site, parse_mapping, twin_scenario
    from lab.model import scenario

    if not args.targets and args.inventory is None:
        raise BadInput("the following arguments are required: ssh://USER@HOST[:PORT] (or "
                       "--inventory FILE) (see `port25lab --help`)")
    if len(args.targets) != 1 or args.targets[0].startswith("ansible:") or args.inventory:
        return cmd_fleet(args)
    if args.jobs is not None:
        raise BadInput("--jobs is for a fleet: give several gateways or --inventory FILE")
    target = remote.parse_target(args.targets[0])
    mx = remote.parse_target(args.mx, "--mx") if args.mx else None
    requested = _requested(args)
    mapping = parse_mapping(args.map_interface)
    if mapping and not args.twin:
        raise BadInput("--map-interface is for --twin")
    base = scenario.load(args.twin) if args.twin else None
    if not 0 < args.timeout <= remote.MAX_COMMAND_TIMEOUT:  # also false for nan
        raise BadInput(f"--timeout must be a positive number of seconds, at most "
                       f"{remote.MAX_COMMAND_TIMEOUT:g} (given {args.timeout:g})")
    _reports(args)
    _output(args.write_site, "--write-site")
    _apart(("--json", args.json), ("--junit", args.junit), ("--html", args.html))
    if base is not None:
        _require_mininet()
        _require_root("audit --twin")
    password = remote.password_from(args.password_env, args.password_prompt, str(target))
    access = audit.Access(
        target, remote.Login(tuple(args.identity), args.agent, password),
        remote.Trust(args.known_hosts or remote.default_known_hosts(),
                     tuple(args.accept_host_key)), mx, args.timeout)
    show = printer(args.color)
    say = Progress(args.quiet, args.verbose)
    result = audit.audit(access, requested)
    print(audit.table(result), flush=True)
    twins = []
    twin = None
    if base is not None or args.write_site is not None:
        router = base.site.policy_router if base is not None else "gw"
        site, notes = derived_site(result.facts, requested, result.addressing, router)
        if args.write_site is not None:  # the site the twin runs on
            _write_site(args.write_site, site or (base.site if base else None), result,
                        args.twin, notes)
        if base is not None:
            twin, said = twin_scenario(result.facts, base, mapping, site)
            notes += said
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    records = []
    if twin is not None:
        with say:
            ran, record = _timed(twin, say)
        twins.append(ran)
        records.append(record)
        show(report.styled(twins[0], twin))
    run = _record(args, records)
    if not _write([
            ("--json", args.json,
             lambda p: audit.write_json(p, result, report.as_json(twins, run))),
            ("--junit", args.junit, lambda p: audit.write_junit(p, result, twins)),
            ("--html", args.html, lambda p: _html().write_html(
                p, [(twin, twins[0])] if twins else [], run, result))]):
        return BAD_INPUT
    if any(t.lab_error for t in twins):
        return LAB_FAILED
    return OK if result.passed and all(t.passed for t in twins) else FAILED


def cmd_fleet(args: argparse.Namespace) -> int:
    """`audit` over several gateways: the static checks of each, in parallel, one report."""
    from lab.audit import fleet, gateway, remote

    for option, given in (("--twin", args.twin), ("--write-site", args.write_site),
                          ("--map-interface", args.map_interface), ("--mx", args.mx)):
        if given:
            raise BadInput(f"{option} is for one gateway; a fleet gets the static checks")
    jobs = fleet.JOBS if args.jobs is None else args.jobs
    if not 1 <= jobs <= fleet.MAX_JOBS:
        raise BadInput(f"--jobs must be a number 1-{fleet.MAX_JOBS} (given {jobs})")
    requested = _requested(args)
    if not 0 < args.timeout <= remote.MAX_COMMAND_TIMEOUT:  # also false for nan
        raise BadInput(f"--timeout must be a positive number of seconds, at most "
                       f"{remote.MAX_COMMAND_TIMEOUT:g} (given {args.timeout:g})")
    _reports(args)
    _apart(("--json", args.json), ("--junit", args.junit), ("--html", args.html))
    for identity in args.identity:
        if not identity.is_file():
            raise BadInput(f"--identity {identity}: no such key file")
    trust = remote.Trust(args.known_hosts or remote.default_known_hosts(),
                         tuple(args.accept_host_key))
    plain = [t for t in args.targets if not t.startswith("ansible:")]
    patterns = [fleet.parse_ansible(t, args.inventory) for t in args.targets
                if t.startswith("ansible:")]
    if args.inventory is not None and not patterns:
        patterns = [("all", args.inventory)]
    targets = [remote.parse_target(t) for t in plain]  # every target checked before any login
    password = remote.password_from(args.password_env, args.password_prompt,
                                    "the fleet's gateways")
    login = remote.Login(tuple(args.identity), args.agent, password)
    members = [fleet.Member(str(t), gateway.Access(t, login, trust, None, args.timeout))
               for t in targets]
    for pattern, path in patterns:
        members += fleet.from_inventory(pattern, path, login, trust, args.timeout)
    members = fleet.unique(members)
    say = Progress(args.quiet, args.verbose)
    finished: list[Any] = []

    def done(one: Any) -> None:
        finished.append(one)
        say(f"audit {len(finished)}/{len(members)}: {one.name} {one.status}")

    with say:
        result = fleet.audit(members, requested, jobs, done)
    print(fleet.table(result), flush=True)
    if not _write([
            ("--json", args.json, lambda p: fleet.write_json(p, result)),
            ("--junit", args.junit, lambda p: fleet.write_junit(p, result)),
            ("--html", args.html, lambda p: _html().write_html(
                p, [], _record(args, []), fleet=result))]):
        return BAD_INPUT
    return OK if result.passed else FAILED


def _write_site(path: Path, site: Any, result: Any, scenario: str | None,
                notes: tuple[str, ...]) -> None:
    """The twin's site as a site file, with how it was made and how to run it again."""
    from lab.model import site_file

    if site is None:  # --write-site alone, on a gateway without a default route
        raise BadInput(f"--write-site {path}: nothing derived: {notes[0]}")
    gateway = result.facts.gateway
    header = [f"port25lab site: derived by `port25lab audit --write-site` from {gateway}",
              f"on {time.strftime('%Y-%m-%d %H:%M:%S %z')}.",
              *(f"assumed: {n}" for n in (*result.assumed, *notes)), "",
              "To run the twin again without SSH, save the gateway's `iptables-save` and",
              "`ip6tables-save` output (also in the --json report) and run",
              f"  port25lab verify {scenario or 'SCENARIO'} --site {path.name} "
              "--rules-v4 V4 --rules-v6 V6"]
    try:
        path.write_text(site_file.dump(site, header), encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--write-site {path}: cannot write there ({exc.strerror}); give "
                       "another file") from None


def cmd_shell(args: argparse.Namespace) -> int:
    from lab.engine.verify import load_policies, start_traps
    from lab.runtime import lifecycle
    from lab.runtime.lab import Lab
    from lab.shell import open_shell

    (loaded,), said = _scenarios(args, [args.scenario])
    s, notes = loaded.with_nflog()
    notes = said + notes
    _require_root("shell")
    with lifecycle.opened() as run, Lab(s.site, run) as lab:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        for error in load_policies(lab, s) + start_traps(lab, s, lambda _: None):
            print(f"load error: {error}", file=sys.stderr)
        print(f"{s.name} is up (namespaces {run.prefix}-ROLE); roles: "
              f"{', '.join(lab.site.role_names)}. Leave with `exit`.", file=sys.stderr)
        open_shell(lab, s)
    return OK


def reported(prog: str, work: Callable[[], int]) -> int:
    """Run `work` with the lab's exit contract: teardown on signals, one line per failure."""
    interrupt_on_signals()
    try:
        return work()
    except BadInput as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return BAD_INPUT
    except LabFailure as exc:
        print(f"{prog}: lab failed: {exc}", file=sys.stderr)
        return LAB_FAILED
    except Interrupted as exc:
        # "torn down" only when a lab was: a signal may come before any boots
        done = (f"; lab torn down ({', '.join(exc.torn_down)})" if exc.torn_down
                else " while no lab was up")
        import contextlib

        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone; the status tells
            print(f"{prog}: interrupted by signal {exc.signum}{done}", file=sys.stderr)
        return 128 + exc.signum


def main(argv: Sequence[str] | None = None) -> int:
    def run() -> int:
        args = _parser().parse_args(argv)
        # what the reports say of the run: its words, when it started (UTC)
        args.argv = ["port25lab", *(sys.argv[1:] if argv is None else argv)]
        args.started, args.clock = datetime.now(UTC), time.monotonic()
        if args.command is None:
            raise BadInput("no command given: list, verify, suspects, shell, audit or exercise "
                           "(see `port25lab --help`)")
        if args.command == "audit":  # reading a gateway needs no Mininet; its twin does
            return cmd_audit(args)
        if args.command == "list":  # scenarios and sites are data
            return cmd_list(args.probes)
        if args.command == "exercise":  # only `check` boots a lab
            from lab import exercises

            if args.action is None:
                raise BadInput("exercise: give list, start N, check or hint "
                               "(see `port25lab exercise --help`)")
            if args.action == "check":
                _require_mininet()
            return exercises.main(args)
        _require_mininet()
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "suspects":
            return cmd_suspects(args)
        return cmd_shell(args)
    try:
        try:
            return reported("port25lab", run)
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not in Python's exit
    except BrokenPipeError:  # `port25lab list | head -1`: the reader has what it wanted
        if not _reader_gone():
            raise
        _discard_output()
        return OUTPUT_CLOSED
    except OSError as exc:  # `> /dev/full`, a full disk or quota: no file names these
        if exc.errno not in _FULL or exc.filename is not None:
            raise
        with contextlib.suppress(OSError):
            print(f"port25lab: cannot write the output: {exc.strerror}", file=sys.stderr,
                  flush=True)
        _discard_output()
        return BAD_INPUT


OUTPUT_CLOSED = 128 + signal.SIGPIPE  # as for a program that SIGPIPE ends
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _reader_gone() -> bool:
    """Whether standard output or error is a pipe (or terminal) nobody reads any more."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # closed, or not a real file
            continue
        poll = select.poll()
        poll.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked for
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0)):
            return True
    return False


def _discard_output() -> None:
    """Point standard output and error at /dev/null, so that Python's exit cannot fail too."""
    with contextlib.suppress(OSError):
        sys.stdout.flush()  # what can still go out (another stream may be the full one)
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
