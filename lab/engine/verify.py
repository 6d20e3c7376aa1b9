"""Run a scenario: boot its lab, load its policy, probe its matrix, decide verdicts."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial

from lab.engine.mailflow import Reached, await_delivery, describe, dialogue_for, refused
from lab.errors import LabFailure
from lab.evidence.firewall_log import Suspect, logged_at, suspects
from lab.model.scenario import Expectation, Scenario
from lab.model.site import TEREDO_SERVER, TUNNEL_END
from lab.model.verdict import Decision, Observation, Verdict, decide
from lab.netfilter.counters import Hit, hits
from lab.netfilter.policy import LoadError, apply_policy, shown
from lab.netfilter.rules import Rule
from lab.runtime.lab import Lab
from lab.runtime.lifecycle import Run
from lab.services.trap import Ban, BanWatcher
from probes.guessing import LIMIT, TRIVIAL_PASSWORDS
from probes.tcp import PROBES
from probes.tunnel import VARIANTS, Variant

Progress = Callable[[str], None]

FIRST_WAIT = 0.025  # s: an answer on an open path comes back well within this
SECOND_WAIT = 1.5   # s: only when neither an answer nor a router rule explains silence
DIALOGUE_TIMEOUT = 5.0  # s: per SMTP command
TUNNEL_FIRST_WAIT = 0.3  # s: over a qualified tunnel an open path answers in ms
TUNNEL_CONNECT_TIMEOUT = 2.0  # s: only when silence has no rule to explain it
BAN_WAIT = 10.0  # s: a trap that has not fired by then has failed
UNBAN_WAIT = 90.0  # s: the lab's bantimes are seconds; a ban still there by then stays
GUESS_TIMEOUT = 3.0  # s: per guessing connection


@dataclass(frozen=True)
class Result:
    source: str
    target: str
    probe: str
    family: int
    expected: Verdict
    observed: Verdict
    rule: str | None
    detail: str
    elapsed_ms: float  # the sender's wait for an answer
    wall_ms: float = 0.0  # the whole probe: sender, far side and router evidence
    variant: str = ""  # for tunnel probes: which shape of the packet
    after: str = ""  # "ban" / "unban": probed once the source was (no longer) banned
    weak_account: str = ""  # guessing: the account that accepted a trivial password

    @property
    def passed(self) -> bool:
        return self.observed == self.expected and self.observed != Verdict.ERROR


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    topology: str
    load_errors: tuple[LoadError, ...] = ()
    results: tuple[Result, ...] = ()
    lab_error: str | None = None
    boot_ms: float = 0.0
    notes: tuple[str, ...] = field(default=())
    suspects: tuple[Suspect, ...] = ()
    expected_suspects: tuple[str, ...] | None = None
    bans: tuple[Ban, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)  # banned address → role

    @property
    def weak_accounts(self) -> tuple[str, ...]:
        return tuple(sorted({r.weak_account for r in self.results if r.weak_account}))

    @property
    def suspects_match(self) -> bool:
        """The firewall logs name exactly the expected hosts (True when not checked)."""
        return self.expected_suspects is None or tuple(
            sorted({s.role for s in self.suspects})) == self.expected_suspects

    @property
    def passed(self) -> bool:
        return (not self.load_errors and self.lab_error is None and bool(self.results)
                and all(r.passed for r in self.results) and self.suspects_match)


def source_ports() -> Iterator[int]:
    """Probe source ports: unique within a run, below Linux's ephemeral range."""
    return itertools.cycle(range(20000, 32000))


def load_policies(lab: Lab, scenario: Scenario) -> list[LoadError]:
    errors: list[LoadError] = []
    for router, files in scenario.policies.items():
        def run(argv: list[str], stdin: str | None, router: str = router) -> tuple[int, str]:
            status, _, err = lab.exec(router, argv, stdin=stdin)
            return status, err
        for policy in files:
            errors.extend(apply_policy(policy, run))
    return errors


@dataclass(frozen=True)
class Network:
    """The SYN's evidence and what it decides about the path."""

    role: str
    address: str
    port: int
    decision: Decision
    observation: Observation


def syn_probe(lab: Lab, source: str, role: str, port: int, family: int,
              sport: int, udp: bool = False) -> Network:
    """One SYN from `source` to `role`:`port`, with evidence from sender, far side and routers.

    With `udp`, a DNS query instead of the SYN: nobody has to answer it.
    """
    address = lab.site.role(role).address(family)
    agent = lab.agent(source)
    assert lab.far_side is not None
    before = lab.rules(family)
    request: dict[str, object] = {"op": "udp", "family": family, "dst": address,
                                  "sport": sport} if udp else {
        "op": "syn", "family": family, "dst": address, "dport": port, "sport": sport}
    seen = agent.ask({**request, "wait": FIRST_WAIT}, timeout=10)
    after = lab.rules(family)
    rule_hits = hits(before, after)
    decided_by_router = any(h.rule.drops for h in rule_hits)
    if seen["reply"] == "none" and not decided_by_router:
        # Silence that no rule explains: wait as TCP would, with a retransmission.
        seen = agent.ask({**request, "wait": SECOND_WAIT}, timeout=10)
        after = lab.rules(family)
        rule_hits = hits(before, after)
    # Unless a router rule already dropped it, the packet should be on record
    # somewhere: give the recorders time to write (a REJECT's RST is no reason).
    sightings = lab.far_side.sightings(sport, expect=not decided_by_router,
                                       kind="udp" if udp else "tcp")
    observation = Observation(
        sport=sport, reply=seen["reply"], source=seen.get("source"),
        source_port=seen.get("source_port"), ttl=seen.get("ttl"), icmp=seen.get("icmp"),
        elapsed_ms=seen["elapsed_ms"])
    return Network(role, address, port,
                   decide(role, address, port, observation, sightings, rule_hits,
                          expects_answer=not udp), observation)


def real_teredo_probe(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """A kernel TCP connection to the target's port 25 over a real Teredo tunnel."""
    from lab.services import teredo

    variant = VARIANTS[expectation.probe][expectation.variant]
    assert lab.far_side is not None
    qualifying = lab.rules(4)

    def drops_since(before: list[Rule]) -> list[Hit]:
        return [h for h in hits(before, lab.rules(4)) if h.rule.drops]

    try:
        with teredo.tunnel(lab, expectation.source, expectation.target,
                           explained=lambda: bool(drops_since(qualifying))) as address:
            return _over_tunnel(lab, expectation, variant, address, sport)
    except teredo.QualificationFailed as failed:
        # A rule that dropped the clients' packets to the Teredo server is the policy
        # working: the tunnel never opens. Silence no rule explains is the lab's fault.
        drops = drops_since(qualifying)
        if not drops:
            raise
        detail = (f"{variant.name} ({variant.summary}): Teredo qualification of "
                  f"{', '.join(failed.roles)} with the server {teredo.server_address(lab)} "
                  f"UDP 3544 failed: {drops[0].packets} packet(s) dropped by "
                  f"{drops[0].rule.cite()}; the tunnel never opened")
        return Result(expectation.source, expectation.target, expectation.probe, 4,
                      expectation.verdict, Verdict.BLOCKED, drops[0].rule.cite(), detail,
                      round(failed.waited * 1000, 2), variant=variant.name)


def _over_tunnel(lab: Lab, expectation: Expectation, variant: Variant, address: str,
                 sport: int) -> Result:
    """The connection through a qualified Teredo tunnel, and its verdict."""
    assert lab.far_side is not None
    before = lab.rules(4)
    request = {"op": "connect", "family": 6, "dst": address,
               "dport": variant.inner_port, "sport": sport}
    seen = lab.agent(expectation.source).ask(
        {**request, "timeout": TUNNEL_FIRST_WAIT}, timeout=30)
    rule_hits = hits(before, lab.rules(4))
    dropped = any(h.rule.drops for h in rule_hits)
    if seen["reply"] == "none" and not dropped:
        # no answer and no rule explains it: give the connection its full time
        seen = lab.agent(expectation.source).ask(
            {**request, "timeout": TUNNEL_CONNECT_TIMEOUT}, timeout=30)
        rule_hits = hits(before, lab.rules(4))
        dropped = any(h.rule.drops for h in rule_hits)
    sightings = lab.far_side.sightings(sport, expect=not dropped)
    observation = Observation(sport=sport, reply=seen["reply"], source=seen.get("source"),
                              source_port=seen.get("source_port"),
                              banner=seen.get("banner"), elapsed_ms=seen["elapsed_ms"])
    decision = decide(expectation.target, address, variant.inner_port, observation,
                      sightings, rule_hits)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary} {address}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name)


def tunnel_probe(lab: Lab, expectation: Expectation, sport: int) -> Result:
    """A SYN for the target's IPv6 address, tunnelled in IPv4 to the site's tunnel end."""
    variant = VARIANTS[expectation.probe][expectation.variant]
    if variant.real:
        return real_teredo_probe(lab, expectation, sport)
    end = lab.site.one(TUNNEL_END if expectation.probe == "tunnel6in4" else TEREDO_SERVER)
    relay = end.address(4)
    target6 = lab.site.role(expectation.target).address(6)
    assert lab.far_side is not None
    before = lab.rules(4)
    seen = lab.agent(expectation.source).ask(
        {"op": "tunnel", "kind": expectation.probe, "variant": variant.name, "relay": relay,
         "target6": target6, "sport": sport, "wait": FIRST_WAIT}, timeout=10)
    rule_hits = hits(before, lab.rules(4))
    dropped = any(h.rule.drops for h in rule_hits)
    kind = "6in4" if expectation.probe == "tunnel6in4" else "udp"
    sightings = lab.far_side.sightings(sport, expect=not dropped, kind=kind)
    observation = Observation(sport=sport, reply=seen["reply"], source=seen.get("source"),
                              ttl=seen.get("ttl"), icmp=seen.get("icmp"),
                              elapsed_ms=seen["elapsed_ms"])
    port = 0 if expectation.probe == "tunnel6in4" else variant.udp_port
    decision = decide(end.name, relay, port, observation, sightings, rule_hits,
                      expects_answer=False)
    return Result(expectation.source, expectation.target, expectation.probe, 4,
                  expectation.verdict, decision.verdict, decision.rule,
                  f"{variant.name} ({variant.summary}): {decision.detail}",
                  observation.elapsed_ms, variant=variant.name)


def guess_probe(lab: Lab, expectation: Expectation, watcher: BanWatcher | None) -> Result:
    """Password guessing on the target's submission port (probes.guessing)."""
    probe = PROBES[expectation.probe]
    family = expectation.family
    address = lab.site.role(expectation.target).address(family)
    source = lab.site.role(expectation.source).address(family)

    def result(verdict: Verdict, rule: str | None, detail: str, elapsed: float = 0.0,
               weak: str = "") -> Result:
        return Result(expectation.source, expectation.target, expectation.probe, family,
                      expectation.verdict, verdict, rule, detail, elapsed, weak_account=weak)

    server = lab.mail.get(expectation.target)
    if server is None or not server.server.users:
        return result(Verdict.ERROR, None, f"{expectation.target} has no submission accounts")
    users = [u.name for u in server.server.users]
    before = lab.rules(family)
    started = time.monotonic()
    answer = lab.agent(expectation.source).ask(
        {"op": "guess", "dst": address, "port": probe.port, "users": users,
         "timeout": GUESS_TIMEOUT}, timeout=LIMIT * GUESS_TIMEOUT * 4 + 10)
    elapsed = round((time.monotonic() - started) * 1000, 2)
    if "error" in answer:
        return result(Verdict.ERROR, None, str(answer["error"]), elapsed)
    rule_hits = hits(before, lab.rules(family))
    guesses = answer["guesses"]
    refusals = [g for g in guesses if 500 <= g["code"] < 600]
    where = f"{expectation.target}:{probe.port}"
    tried = f"{len(guesses)} guesses for {len(users)} accounts"
    accepted = [g for g in guesses if g["code"] == 235]
    if accepted:
        g = accepted[0]
        return result(Verdict.ALLOWED, None,
                      f"{where} accepted a guess after {len(refusals)} refusals: account "
                      f"{g['user']} has a trivial password (no. {g['index'] + 1} of "
                      f"{len(TRIVIAL_PASSWORDS)} in the built-in list)", elapsed, g["user"])
    bans = [h for h in rule_hits if h.rule.is_ban]
    if guesses and guesses[-1]["code"] == 0:
        failure = guesses[-1]["error"]
        if bans:
            # the guesser saw the ban first: give the watcher its next look
            ban = watcher.wait_banned(source, 1.0) if watcher else None
            if ban is not None and watcher is not None:
                retry = _maxretry(lab, ban)
                if retry and len(refusals) >= retry:
                    watcher.explain(source, refusals[retry - 1]["at"],
                                    f"refused guess no. {retry}")
            return result(Verdict.BANNED, bans[0].rule.cite(),
                          f"{where} refused {len(refusals)} guesses, then the guesser was cut "
                          f"off ({failure})", elapsed)
        return result(Verdict.ERROR, None,
                      f"{where} refused {len(refusals)} guesses, then stopped answering "
                      f"({failure}) and no ban rule explains it", elapsed)
    return result(Verdict.REFUSED, None,
                  f"{where} refused all {tried} ({refusals[-1]['code'] if refusals else '-'}) "
                  "and never cut the guesser off", elapsed)


def _maxretry(lab: Lab, ban: Ban) -> int | None:
    """The maxretry of the jail whose chain holds `ban` (fail2ban's chain: f2b-<jail>)."""
    inst = lab.traps.get(ban.node)
    if inst is None:
        return None
    status, out, _ = lab.exec(ban.node, inst.client_argv("get", ban.jail, "maxretry"),
                              timeout=10)
    return int(out.strip()) if status == 0 and out.strip().isdigit() else None


def probe_once(lab: Lab, expectation: Expectation, sport: int,
               watcher: BanWatcher | None = None) -> Result:
    """One probe: the SYN decides the path; where it is open, the SMTP dialogue follows."""
    probe = PROBES[expectation.probe]
    if probe.kind == "tunnel":
        return tunnel_probe(lab, expectation, sport)
    if probe.kind == "guess":
        return guess_probe(lab, expectation, watcher)
    family = expectation.family
    role = lab.submission_server() if probe.via_submission_server else expectation.target
    net = syn_probe(lab, expectation.source, role, probe.port, family, sport,
                    udp=probe.kind == "udp")

    def result(verdict: Verdict, rule: str | None, detail: str) -> Result:
        return Result(expectation.source, expectation.target, expectation.probe, family,
                      expectation.verdict, verdict, rule, detail, net.observation.elapsed_ms)

    if probe.kind in ("syn", "udp"):
        return result(net.decision.verdict, net.decision.rule, net.decision.detail)
    if net.decision.verdict not in (Verdict.ALLOWED, Verdict.DIVERTED):
        return result(net.decision.verdict, net.decision.rule, net.decision.detail)
    if net.observation.reply != "synack":
        return result(net.decision.verdict, net.decision.rule, net.decision.detail)
    token = f"port25lab-{lab.run.prefix}-{sport}"
    talk = dialogue_for(probe, lab, expectation.target, family, token)
    # counters from before the dialogue: a relay starts as soon as DATA is accepted
    before = lab.rules(family)
    transcript = lab.agent(expectation.source).ask(
        {"op": "smtp", "dst": net.address, "dport": probe.port, "dialogue": asdict(talk),
         "timeout": DIALOGUE_TIMEOUT}, timeout=DIALOGUE_TIMEOUT * 4)
    said = describe(transcript)
    detail = f"{net.decision.detail}; {said}"
    if probe.kind == "connect":
        return result(net.decision.verdict, net.decision.rule, detail)
    refusal = refused(transcript)
    if refusal is not None:
        return result(Verdict.REFUSED, net.decision.rule, f"{detail}; refused: {refusal}")
    if transcript.get("error"):
        # the dialogue broke off: that proves nothing about the server's policy
        return result(Verdict.ERROR, net.decision.rule, f"{detail}; the dialogue broke off")
    if probe.kind == "rfc2142":
        return result(Verdict.ALLOWED, net.decision.rule, detail)
    queue_id = transcript.get("queue_id")
    if not queue_id:
        return result(Verdict.ERROR, net.decision.rule, f"{detail}; the message was not queued")
    delivery = await_delivery(lab, Reached(net.role, net.decision), expectation.target, family,
                              token, queue_id, before)
    if delivery.delivered:
        return result(net.decision.verdict, net.decision.rule, f"{detail}; {delivery.detail}")
    return result(delivery.verdict, delivery.rule, f"{detail}; {delivery.detail}")


def verify(scenario: Scenario, run: Run, progress: Progress) -> ScenarioResult:
    """Boot, load, probe, read the firewall logs, tear down. Lab failures are reported."""
    started = time.monotonic()
    ports = source_ports()
    results: list[Result] = []
    load_errors: list[LoadError] = []
    found: list[Suspect] = []
    bans: tuple[Ban, ...] = ()
    boot_ms = 0.0
    scenario, notes = scenario.with_nflog()
    outcome = partial(ScenarioResult, scenario.name, scenario.topology, notes=tuple(notes),
                      expected_suspects=scenario.suspects)
    try:
        progress(f"{scenario.name}: booting {scenario.topology} as {run.prefix}")
        with Lab(scenario.site, run) as lab:
            boot_ms = (time.monotonic() - started) * 1000
            load_errors = load_policies(lab, scenario) + start_traps(lab, scenario, progress)
            for error in load_errors:
                progress(f"{scenario.name}: load error {error}")
            lab.start_agents(sorted({e.source for e in scenario.expectations}))
            total = len(scenario.expectations)
            watching = BanWatcher(list(lab.traps), lab.exec) if lab.traps else None
            with watching or contextlib.nullcontext():
                for number, expectation in enumerate(scenario.expectations, 1):
                    waited = wait_for_ban(lab, scenario.name, watching, expectation, progress)
                    probe_started = time.perf_counter()
                    result = probe_once(lab, expectation, next(ports), watching)
                    result = replace(result, after=expectation.after, wall_ms=round(
                        (time.perf_counter() - probe_started) * 1000, 2),
                        detail=f"{waited}; {result.detail}" if waited else result.detail)
                    results.append(result)
                    mark = "ok" if result.passed else f"expected {result.expected}"
                    label = (f"{result.probe}:{result.variant}" if result.variant
                             else result.probe)
                    progress(f"{scenario.name}: [{number}/{total}] {result.source} → "
                             f"{result.target} {label}/v{result.family}"
                             f"{' after ' + result.after if result.after else ''}: "
                             f"{result.observed} ({mark})")
            if watching is not None:
                bans = tuple(watching.bans())
                if watching.error:
                    raise LabFailure(watching.error)
            found = suspects_of(lab)
    except LabFailure as exc:
        return outcome(tuple(load_errors), tuple(results), lab_error=str(exc), boot_ms=boot_ms,
                       suspects=tuple(found), bans=bans, owners=owners_of(scenario, bans))
    return outcome(tuple(load_errors), tuple(results), boot_ms=boot_ms, suspects=tuple(found),
                   bans=bans, owners=owners_of(scenario, bans))


def start_traps(lab: Lab, scenario: Scenario, progress: Progress) -> list[LoadError]:
    """Start the scenario's fail2ban instances; what fail2ban refused is a load error."""
    if not scenario.traps:
        return []
    progress(f"{scenario.name}: starting fail2ban in {', '.join(scenario.traps)}")
    errors = []
    for role, problems in lab.start_traps(scenario.traps).items():
        files = ", ".join(shown(p) for p in scenario.traps[role])
        errors += [LoadError(files, 0, f"fail2ban in {role}: {p}") for p in problems]
    return errors


def wait_for_ban(lab: Lab, name: str, watcher: BanWatcher | None, expectation: Expectation,
                 progress: Progress) -> str:
    """Before an `after: ban|unban` expectation: wait for the source's ban (or its end).

    Returns what happened, for the result's detail ("" when there was nothing to wait for).
    """
    if not expectation.after:
        return ""
    address = lab.site.role(expectation.source).address(expectation.family)
    if watcher is None:
        return "no trap runs: nothing to wait for"
    if expectation.after == "ban":
        # once a trap failed to fire for an address, waiting again proves nothing new
        ban = watcher.wait_banned(address, 0.0 if address in watcher.gave_up else BAN_WAIT)
        if ban is None:
            watcher.gave_up.add(address)
            return f"no ban of {address} within {BAN_WAIT:.0f} s"
        if ban.fired_at is None and not ban.fired_by:
            nth = _maxretry(lab, ban) or 1
            fired = logged_at(lab.firewall_logs.values(), address, since=watcher.lifted(address),
                              until=ban.seen_at, nth=nth)
            said = "its firewall log line" + (f" no. {nth}" if nth > 1 else "")
            watcher.explain(address, fired, said if fired is not None else "unknown")
            ban = watcher.active(address) or ban
            reaction = (f" {ban.reaction_ms:.0f} ms after {ban.fired_by}"
                        if ban.reaction_ms is not None else "")
            progress(f"{name}: {expectation.source} ({address}) banned{reaction}")
        return f"banned by {ban.describe()}"
    if watcher.active(address) is not None:
        progress(f"{name}: waiting for the ban of {expectation.source} ({address}) to end")
    lifted = watcher.wait_lifted(address, UNBAN_WAIT)
    if lifted is None:
        return (f"still banned after {UNBAN_WAIT:.0f} s" if watcher.active(address)
                else f"{address} was never banned")
    return f"ban lifted {lifted.lifted_after_s} s after it was seen"


def owners_of(scenario: Scenario, bans: tuple[Ban, ...]) -> dict[str, str]:
    return {b.address: scenario.site.owner_of(b.address) or "?" for b in bans}


def suspects_of(lab: Lab) -> list[Suspect]:
    """The internal hosts the routers' firewall logs caught on 25/465."""
    inside = [r.name for r in lab.site.nodes if r.kind in ("client", "server")]
    return suspects(lab.firewall_logs.values(), lab.site.owner_of, inside)
