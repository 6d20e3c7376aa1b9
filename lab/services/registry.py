"""Which services a lab runs, read from its site: the one place that says so.

Every end host records what arrives (the far side's evidence), every router
logs its NFLOG rules (ulogd2), every mail role runs its mail server. A trap is
a scenario's: a fail2ban in each node that has jail files, started once the
policy is loaded, whose jails read that node's logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.model.site import Site
from lab.runtime.handle import NodeHandle
from lab.services import mail
from lab.services.recording import Recorder
from lab.services.service import Service
from lab.services.trap import Fail2ban
from lab.services.ulogd import Ulogd


def for_site(site: Site, nodes: Mapping[str, NodeHandle], run_folder: Path) -> list[Service]:
    """The services every lab of `site` runs, in the order they start."""
    # the recorders first: a Python program each, the slowest to be ready
    # (not the light clients: no probe aims at one, lab.model.scenario)
    services: list[Service] = [Recorder(nodes[n.name], run_folder)
                               for n in site.nodes if not n.is_router and not n.light]
    services += [Ulogd(nodes[router]) for router in site.routers]
    services += [mail.Mail(nodes[role], server)
                 for role, server in mail.servers_for(site).items()]
    return services


def traps(jails: Mapping[str, tuple[Path, ...]], nodes: Mapping[str, NodeHandle],
          running: Sequence[Service]) -> list[Fail2ban]:
    """A fail2ban for each node with jail files; `running` has the logs its jails read."""
    made = []
    for role, files in jails.items():
        variables = {}
        for service in running:
            if service.node.name != role:
                continue
            if isinstance(service, Ulogd):
                variables["firewall_log"] = str(service.text_log)
            elif isinstance(service, mail.Mail):
                variables["mail_log"] = str(service.instance.log)
        made.append(Fail2ban(nodes[role], files, variables))
    return made
