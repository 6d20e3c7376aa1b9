"""The `port25lab` command line (a contract: see DESIGN.md).

Exit status: 0 every expectation holds; 1 at least one does not; 2 bad input
or usage (one line on stderr); 3 the lab failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lab.compliance.addressing import Addressing
from lab.errors import BadInput, LabFailure
from lab.runtime.lifecycle import Interrupted, interrupt_on_signals

OK, FAILED, BAD_INPUT, LAB_FAILED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message} (see `port25lab --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="port25lab", description="Emulate outbound-mail gateway rules in "
                     "real network namespaces and verify what they block, divert and allow.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    listing = commands.add_parser("list", help="list the built-in scenarios (or the probes)")
    listing.add_argument("--probes", action="store_true",
                         help="list the probes a scenario can name, with their variants")
    verify = commands.add_parser("verify", help="run scenarios and check their expectations")
    verify.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help="a built-in scenario name or a scenario folder")
    verify.add_argument("--all", action="store_true", help="every built-in scenario")
    verify.add_argument("--json", type=Path, metavar="FILE", help="write a JSON report")
    verify.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    verify.add_argument("--rules-v4", type=Path, metavar="FILE",
                        help="IPv4 policy for the policy router instead of the scenario's "
                             "(iptables-save file or script of iptables commands)")
    verify.add_argument("--rules-v6", type=Path, metavar="FILE",
                        help="IPv6 policy for the policy router instead of the scenario's")
    verify.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    suspects = commands.add_parser(
        "suspects", help="run scenarios and list the internal hosts their firewall logs "
                         "caught trying 25/465 of the world")
    suspects.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    suspects.add_argument("--json", type=Path, metavar="FILE", help="write a JSON report")
    shell = commands.add_parser("shell", help="boot a scenario's lab and open Mininet's CLI")
    shell.add_argument("scenario", metavar="SCENARIO")
    _audit_parser(commands)
    return parser


def _audit_parser(commands: Any) -> None:
    default = Addressing()
    audit = commands.add_parser(
        "audit", help="read a live gateway over SSH (read-only), check it, and optionally "
                      "replay its rules in a twin lab")
    audit.add_argument("target", metavar="ssh://USER@HOST[:PORT]", help="the gateway")
    audit.add_argument("--mx", metavar="ssh://USER@HOST[:PORT]",
                       help="the mail server: also read its Postfix and Dovecot settings")
    login = audit.add_argument_group("login (password never on the command line)")
    login.add_argument("-i", "--identity", type=Path, action="append", default=[],
                       metavar="KEY", help="private key file (repeatable)")
    login.add_argument("--agent", action="store_true", help="use the SSH agent")
    login.add_argument("--password-env", metavar="VAR",
                       help="take the password from this environment variable")
    login.add_argument("--password-prompt", action="store_true",
                       help="ask for the password on the terminal")
    login.add_argument("--known-hosts", type=Path, metavar="FILE",
                       help="known_hosts to verify host keys (default ~/.ssh/known_hosts)")
    login.add_argument("--accept-host-key", action="append", default=[],
                       metavar="SHA256:…", help="accept this host key fingerprint although "
                       "known_hosts does not have it (or has another)")
    login.add_argument("--timeout", type=float, default=20, metavar="S",
                       help="deadline for each remote command (default 20 s)")
    checks = audit.add_argument_group("what the checks assume (default: published addressing)")
    checks.add_argument("--clients", default=",".join(default.clients), metavar="CIDR,…",
                        help="client networks (default %(default)s)")
    checks.add_argument("--mail-server", default=",".join(default.mail_server),
                        metavar="ADDR,…", help="mail server addresses (default %(default)s)")
    checks.add_argument("--inside", default=default.inside, metavar="IFACE",
                        help="the gateway's inside interface (default %(default)s)")
    twin = audit.add_argument_group("twin: replay the gateway's rules in a lab (needs root)")
    twin.add_argument("--twin", metavar="SCENARIO",
                      help="run this scenario's topology and probe matrix with the "
                           "gateway's rules on its policy router")
    twin.add_argument("--map-interface", action="append", default=[], metavar="GATEWAY=LAB",
                      help="the gateway's interface name and the lab's (repeatable)")
    audit.add_argument("--json", type=Path, metavar="FILE", help="write a JSON report")
    audit.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    audit.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _require_mininet() -> None:
    if importlib.util.find_spec("mininet") is None:
        raise BadInput("Mininet is not importable: run `make setup` (Debian package mininet) "
                       "and use .venv/bin/port25lab")


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise BadInput(f"`port25lab {command}` needs root (it creates network namespaces)")


def _output(path: Path | None, option: str) -> None:
    if path is None:
        return
    if not path.parent.is_dir():
        raise BadInput(f"{option} {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a folder, not a file name")


def _progress(quiet: bool) -> Any:
    def say(message: str) -> None:
        if not quiet:
            print(f"  … {message}", file=sys.stderr, flush=True)
    return say


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


def cmd_verify(args: argparse.Namespace) -> int:
    from lab import report
    from lab.engine.verify import verify
    from lab.model import scenario
    from lab.netfilter.policy import read_policy
    from lab.runtime import lifecycle

    if args.all and args.scenarios:
        raise BadInput("give scenario names or --all, not both")
    names = scenario.builtin_names() if args.all else args.scenarios
    if not names:
        raise BadInput("no scenario given: name one (see `port25lab list`) or use --all")
    scenarios = [scenario.load(n) for n in names]
    for option, family in (("rules_v4", 4), ("rules_v6", 6)):
        path = getattr(args, option)
        if path is None:
            continue
        policy = read_policy(path, family)
        if policy.only(family).empty:
            raise BadInput(f"{path}: has no {'iptables' if family == 4 else 'ip6tables'} "
                           f"rules for --{option.replace('_', '-')}")
        scenarios = [s.with_rules(family, policy) for s in scenarios]
    _output(args.json, "--json")
    _output(args.junit, "--junit")
    _require_root("verify")

    lifecycle.remove_stale()
    say = _progress(args.quiet)
    results = []
    for s in scenarios:
        run = lifecycle.new_run()
        try:
            result = verify(s, run, say)
        finally:
            lifecycle.destroy(run)
        results.append(result)
        print(report.matrix(result), flush=True)
    print(report.summary(results))
    if args.json:
        report.write_json(args.json, results)
    if args.junit:
        report.write_junit(args.junit, results)
    if any(r.lab_error for r in results):
        return LAB_FAILED
    return OK if all(r.passed for r in results) else FAILED


def cmd_suspects(args: argparse.Namespace) -> int:
    from lab import report
    from lab.engine.verify import verify
    from lab.model import scenario
    from lab.runtime import lifecycle

    scenarios = [scenario.load(n) for n in args.scenarios]
    _output(args.json, "--json")
    _require_root("suspects")
    lifecycle.remove_stale()
    results = []
    for s in scenarios:
        run = lifecycle.new_run()
        try:
            result = verify(s, run, lambda _: None)
        finally:
            lifecycle.destroy(run)
        results.append(result)
        print(f"== {s.name} [{s.topology}]")
        if result.lab_error:
            print(f"   lab error: {result.lab_error}")
        print("\n".join(report.suspect_lines(result)), flush=True)
    if args.json:
        report.write_json(args.json, results)
    return LAB_FAILED if any(r.lab_error for r in results) else OK


def _addressing(args: argparse.Namespace) -> Any:
    from ipaddress import ip_address, ip_network

    from lab.compliance.addressing import Addressing

    clients = tuple(c.strip() for c in args.clients.split(",") if c.strip())
    servers = tuple(a.strip() for a in args.mail_server.split(",") if a.strip())
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
    if not clients:
        raise BadInput("--clients: name at least one network")
    return Addressing(clients, servers, args.inside)


def cmd_audit(args: argparse.Namespace) -> int:
    from lab import report
    from lab.audit import gateway as audit
    from lab.audit import remote
    from lab.audit.twin import parse_mapping, twin_scenario
    from lab.engine.verify import verify
    from lab.model import scenario
    from lab.runtime import lifecycle

    target = remote.parse_target(args.target)
    mx = remote.parse_target(args.mx, "--mx") if args.mx else None
    addressing = _addressing(args)
    mapping = parse_mapping(args.map_interface)
    if mapping and not args.twin:
        raise BadInput("--map-interface is for --twin")
    base = scenario.load(args.twin) if args.twin else None
    if args.timeout <= 0:
        raise BadInput("--timeout must be a positive number of seconds")
    _output(args.json, "--json")
    _output(args.junit, "--junit")
    if base is not None:
        _require_mininet()
        _require_root("audit --twin")
    password = remote.password_from(args.password_env, args.password_prompt, str(target))
    access = audit.Access(
        target, remote.Login(tuple(args.identity), args.agent, password),
        remote.Trust(args.known_hosts or remote.default_known_hosts(),
                     tuple(args.accept_host_key)), mx, args.timeout)
    say = _progress(args.quiet)
    result = audit.audit(access, addressing)
    print(audit.table(result), flush=True)
    twins = []
    if base is not None:
        twin, notes = twin_scenario(result.facts, base, mapping)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        lifecycle.remove_stale()
        run = lifecycle.new_run()
        try:
            twins.append(verify(twin, run, say))
        finally:
            lifecycle.destroy(run)
        print(report.matrix(twins[0]), flush=True)
    if args.json:
        audit.write_json(args.json, result, report.as_json(twins) if twins else None)
    if args.junit:
        audit.write_junit(args.junit, result, twins)
    if any(t.lab_error for t in twins):
        return LAB_FAILED
    return OK if result.passed and all(t.passed for t in twins) else FAILED


def cmd_shell(args: argparse.Namespace) -> int:
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    from lab.engine.verify import load_policies, start_traps
    from lab.model import scenario
    from lab.runtime import lifecycle
    from lab.runtime.lab import Lab

    s, notes = scenario.load(args.scenario).with_nflog()
    _require_root("shell")
    lifecycle.remove_stale()
    run = lifecycle.new_run()
    try:
        with Lab(s.topology, run) as lab:
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            for error in load_policies(lab, s) + start_traps(lab, s, lambda _: None):
                print(f"load error: {error}", file=sys.stderr)
            print(f"{s.name} is up (namespaces {run.prefix}-ROLE); roles: "
                  f"{', '.join(lab.plan.role_names)}. Leave with `exit`.", file=sys.stderr)
            setLogLevel("output")  # the CLI prints what commands print at this level

            class LabCLI(CLI):  # type: ignore[misc]
                identchars = CLI.identchars + "-"  # so that `remote-mx ping …` names a node

            LabCLI(lab.net)
            setLogLevel("error")
    finally:
        lifecycle.destroy(run)
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
        print(f"{prog}: interrupted by signal {exc.signum}; lab torn down", file=sys.stderr)
        return 128 + exc.signum


def main(argv: Sequence[str] | None = None) -> int:
    def run() -> int:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise BadInput("no command given: list, verify, suspects, shell or audit "
                           "(see `port25lab --help`)")
        if args.command == "audit":  # reading a gateway needs no Mininet; its twin does
            return cmd_audit(args)
        _require_mininet()
        if args.command == "list":
            return cmd_list(args.probes)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "suspects":
            return cmd_suspects(args)
        return cmd_shell(args)
    return reported("port25lab", run)


if __name__ == "__main__":
    sys.exit(main())
