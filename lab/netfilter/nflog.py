"""LOG rules run as NFLOG: the kernel's LOG target is silent in a network namespace.

The kernel's LOG target writes nothing from a network namespace unless the
host-wide `net.netfilter.nf_log_all_netns` is set, which the lab must not
change. NFLOG groups are per namespace, so the published `-j LOG` rules are run
as `-j NFLOG` into each router's private ulogd2 (lab.services.ulogd); each
translation is reported, the scenario's files are not touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from lab.netfilter import nft, save
from lab.netfilter.policy import PolicyFile
from lab.netfilter.rules import words_of
from lab.netfilter.script import Command, is_nft

GROUP = 25
_LOG_FLAGS = {"--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid",
              "--log-macdecode"}


def nflog_argv(argv: Iterable[str]) -> list[str] | None:
    """The argv with `-j LOG` (and its options) turned into `-j NFLOG`, or None if no LOG."""
    words = list(argv)
    for i in range(len(words) - 1):
        if words[i] in ("-j", "--jump") and words[i + 1] == "LOG":
            break
    else:
        return None
    head, tail = words[:i], words[i + 2:]
    out = [*head, "-j", "NFLOG", "--nflog-group", str(GROUP)]
    rest = iter(tail)
    for word in rest:
        if word == "--log-prefix":
            out += ["--nflog-prefix", next(rest, "")]
        elif word == "--log-level":
            next(rest, None)  # a syslog level means nothing to NFLOG
        elif word not in _LOG_FLAGS:
            out.append(word)
    return out


def as_nflog(policy: PolicyFile) -> tuple[PolicyFile, list[str]]:
    """The policy with every LOG rule run as NFLOG, and a note per translated line.

    The notes a script's reading left (lines the lab does not run) come first.
    """
    notes: list[str] = list(policy.notes)
    if policy.kind == "nft":
        if policy.ruleset is None:
            return policy, notes
        ruleset, said = _nft_logs(policy.ruleset)
        return replace(policy, ruleset=ruleset), notes + said
    if policy.kind == "script":
        commands: list[Command] = []
        for cmd in policy.commands:
            if cmd.ruleset is not None:
                ruleset, said = _nft_logs(cmd.ruleset)
                notes += said
                commands.append(replace(cmd, ruleset=ruleset))
                continue
            if is_nft(cmd):  # `nft add rule … log …`: its words as one nft command
                words = " ".join(cmd.argv[1:])
                ruleset, said = _nft_logs(nft.Ruleset(policy.path, words,
                                                      ((cmd.file, cmd.line),)))
                notes += said
                commands.append(replace(cmd, argv=(cmd.argv[0], ruleset.text)) if said
                                else cmd)
                continue
            argv = nflog_argv(cmd.argv)
            if argv is None:
                commands.append(cmd)
                continue
            notes.append(f"{cmd.file}:{cmd.line}: -j LOG run as "
                         f"-j NFLOG --nflog-group {GROUP} (LOG is silent in a namespace)")
            commands.append(replace(cmd, argv=tuple(argv)))
        return replace(policy, commands=tuple(commands)), notes
    text = policy.save_text.splitlines()
    for number, line, _ in save.lines(policy.save_text):
        argv = nflog_argv(words_of(line)) if line.startswith("-A ") else None
        if argv is None:
            continue
        notes.append(f"{policy.name}:{number}: -j LOG run as -j NFLOG --nflog-group "
                     f"{GROUP} (LOG is silent in a namespace)")
        # iptables-restore reads double quotes; a rule's counters go (the lab restores
        # without -c, which alone reads them)
        text[number - 1] = " ".join(f'"{w}"' if " " in w or not w else w for w in argv)
    return replace(policy, save_text="\n".join(text) + "\n"), notes


def _nft_logs(ruleset: nft.Ruleset) -> tuple[nft.Ruleset, list[str]]:
    """An nft ruleset with its `log` statements sent to the router's ulogd2, and a note each."""
    new, lines = nft.logs_to_group(ruleset, GROUP)
    notes = []
    for line in dict.fromkeys(lines):
        file, at = ruleset.where(line)
        notes.append(f"{file}:{at}: log run as log group {GROUP} (log is silent in a "
                     "namespace)")
    return new, notes
