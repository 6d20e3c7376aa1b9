"""The lab's mail servers as files: what prepare() writes, and reading their logs and Maildirs.

No daemon is started. prepare() hands folders to the postfix user, so these tests
need root and a `postfix` account (as the lab does): a missing account is a setup
error and fails here.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

import topologies
from lab.model.site import Interface, Node, Segment, Site
from lab.services import mail
from lab.services.mail import Instance, MailServer

SITE = topologies.load("screened-host")
SERVERS = mail.servers_for(SITE)
Service = tuple[list[str], list[str]]  # the service line's columns, its -o options


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Instance]:
    root = tmp_path_factory.mktemp("mail")
    return {role: mail.prepare(server, root / role) for role, server in SERVERS.items()}


@pytest.fixture(scope="module")
def mx(instances: dict[str, Instance]) -> Instance:
    return instances["mx"]


@pytest.fixture(scope="module")
def remote(instances: dict[str, Instance]) -> Instance:
    return instances["remote-mx"]


def _main_cf(inst: Instance) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (inst.config / "main.cf").read_text().splitlines():
        key, sep, value = line.partition(" = ")
        if not sep:
            key, sep, value = line.partition(" =")
        assert sep, f"not a main.cf setting: {line!r}"
        assert key not in settings, f"{key} set twice"
        settings[key] = value.strip()
    return settings


def _inline(table: str) -> dict[str, str]:
    """An `inline:{ key=value, ... }` table of main.cf as a dict."""
    found = re.fullmatch(r"inline:\{ (.*) \}", table)
    assert found, table
    return dict(entry.split("=", 1) for entry in found.group(1).split(", "))


def _master_cf(inst: Instance) -> dict[str, Service]:
    services: dict[str, Service] = {}
    name = ""
    for line in (inst.config / "master.cf").read_text().splitlines():
        if line.startswith((" ", "\t")):
            option, value = line.split()
            assert option == "-o", line
            services[name][1].append(value)
            continue
        columns = line.split()
        assert len(columns) == 8, line
        name = f"{columns[0]}/{columns[1]}"
        assert name not in services, f"{name} defined twice"
        services[name] = (columns, [])
    return services


def _options(service: Service) -> dict[str, str]:
    return dict(o.split("=", 1) for o in service[1])


# --- which servers a topology has


def test_servers_of_the_screened_host() -> None:
    assert sorted(SERVERS) == ["mx", "remote-mx"]
    mx, remote = SERVERS["mx"], SERVERS["remote-mx"]
    assert (mx.role, mx.hostname, mx.domains, mx.submission) == (
        "mx", "mx.example.org", ("example.org",), True)
    assert mx.routes == (("example.net", "[198.51.100.25]"),
                         ("v6.example.net", "[ipv6:2001:db8:ffff:1::25]"))
    assert mx.users == mail.LAB_USERS
    assert mx.ports == (25, 465, 587)
    assert (remote.role, remote.hostname, remote.domains, remote.submission) == (
        "remote-mx", "mx.example.net", ("example.net", "v6.example.net"), False)
    assert remote.routes == () and remote.users == ()
    assert remote.ports == (25, 465)


def test_routes_lead_to_the_remote_mx_of_the_site() -> None:
    for name in topologies.builtin_names():
        site = topologies.load(name)
        remote = site.role("remote-mx")
        assert dict(mail.servers_for(site)["mx"].routes) == {
            "example.net": f"[{remote.address(4)}]",
            "v6.example.net": f"[ipv6:{remote.address(6)}]"}


def test_a_site_without_a_remote_mx_has_no_routes() -> None:
    alone = Site("alone", "one server", (Segment("lan", ("192.0.2.0/24",), outside=True),), (
        Node("hub", "mx", (Interface("eth0", "lan", ("192.0.2.25/24",)),)),
        Node("gw", "router", (Interface("eth0", "lan", ("192.0.2.1/24",)),), policy=True)))
    servers = mail.servers_for(alone)
    assert list(servers) == ["hub"]
    assert servers["hub"].hostname == "hub.example.org"
    assert servers["hub"].submission and servers["hub"].routes == ()


def test_a_remote_mx_without_ipv6_gets_ipv4_mail_only() -> None:
    # a site of one's own may give its foreign MTA one family (before: LookupError at boot)
    site = Site("v4", "", (Segment("lan", ("192.0.2.0/24",)),
                           Segment("wan", ("198.51.100.0/24",), outside=True)), (
        Node("mx", "mx", (Interface("eth0", "lan", ("192.0.2.25/24",)),)),
        Node("remote-mx", "remote-mx", (Interface("eth0", "wan", ("198.51.100.25/24",)),))))
    assert mail.servers_for(site)["mx"].routes == (("example.net", "[198.51.100.25]"),)


def test_domain_for() -> None:
    mx, remote = SERVERS["mx"], SERVERS["remote-mx"]
    assert mail.domain_for(remote, 4) == "example.net"
    assert mail.domain_for(remote, 6) == "v6.example.net"
    # the organisation's server has one domain for both families
    assert mail.domain_for(mx, 4) == mail.domain_for(mx, 6) == "example.org"
    single = MailServer("other", "mx.other.test", ("other.test",), submission=False)
    assert mail.domain_for(single, 6) == "other.test"


def test_instance_paths(tmp_path: Path) -> None:
    inst = Instance(SERVERS["mx"], tmp_path)
    assert inst.config == tmp_path / "etc"
    assert inst.queue == tmp_path / "queue"
    assert inst.mail == tmp_path / "mail"
    assert inst.log == tmp_path / "postfix.log"
    assert inst.dovecot_conf == tmp_path / "dovecot" / "dovecot.conf"
    assert inst.pidfiles() == [tmp_path / "queue" / "pid" / "master.pid",
                               tmp_path / "dovecot" / "run" / "master.pid"]


# --- main.cf


@pytest.mark.parametrize(("role", "hostname"), [("mx", "mx.example.org"),
                                                ("remote-mx", "mx.example.net")])
def test_main_cf_common_settings(instances: dict[str, Instance], role: str,
                                 hostname: str) -> None:
    inst = instances[role]
    cf = _main_cf(inst)
    assert cf["myhostname"] == hostname
    assert cf["mydomain"] == SERVERS[role].domains[0]
    assert cf["smtpd_banner"] == f"$myhostname ESMTP port25lab {role}"
    # everything of the instance lives in its folder
    assert cf["queue_directory"] == str(inst.queue)
    assert cf["data_directory"] == str(inst.root / "data")
    assert cf["virtual_mailbox_base"] == str(inst.mail)
    log = Path(cf["maillog_file"])
    assert log == inst.log and log.is_relative_to(inst.root)
    # Postfix refuses a maillog_file outside maillog_file_prefixes
    prefixes = [p for p in re.split(r"[\s,]+", cf["maillog_file_prefixes"]) if p]
    assert prefixes and any(str(log).startswith(p) for p in prefixes)
    assert all(Path(p).is_relative_to(inst.root) for p in prefixes)
    assert cf["smtpd_peername_lookup"] == "no"
    assert cf["in_flow_delay"] == "0"
    assert cf["mydestination"] == ""
    assert cf["virtual_mailbox_domains"].split() == list(SERVERS[role].domains)
    assert cf["virtual_uid_maps"] == cf["virtual_gid_maps"] == f"static:{mail.NOBODY}"


def test_main_cf_of_the_submission_server_routes_foreign_mail_to_the_remote_mx(
        mx: Instance) -> None:
    cf = _main_cf(mx)
    assert _inline(cf["transport_maps"]) == {
        "example.net": "smtp:[198.51.100.25]",
        "v6.example.net": "smtp:[ipv6:2001:db8:ffff:1::25]"}


def test_main_cf_of_the_submission_server_has_mailboxes_and_rfc2142_aliases(
        mx: Instance) -> None:
    cf = _main_cf(mx)
    mailboxes = _inline(cf["virtual_mailbox_maps"])
    assert mailboxes == {f"{u.name}@example.org": f"{u.name}/" for u in mail.LAB_USERS}
    aliases = _inline(cf["virtual_alias_maps"])
    assert sorted(aliases) == ["abuse@example.org", "postmaster@example.org"]
    assert all(user in mailboxes for user in aliases.values())
    assert cf["smtpd_sasl_type"] == "dovecot"
    assert cf["smtpd_sasl_path"] == "private/auth"


def test_main_cf_of_the_remote_mx_takes_every_recipient_without_sasl(remote: Instance) -> None:
    cf = _main_cf(remote)
    assert cf["virtual_mailbox_maps"] == "static:mailbox/"
    assert "transport_maps" not in cf
    assert "virtual_alias_maps" not in cf
    assert not [key for key in cf if "sasl" in key]


# --- master.cf


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_master_cf_nothing_is_chrooted(instances: dict[str, Instance], role: str) -> None:
    services = _master_cf(instances[role])
    assert {name: columns[4] for name, (columns, _) in services.items()} == dict.fromkeys(
        services, "n")


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_master_cf_private_and_unprivileged_columns(instances: dict[str, Instance],
                                                    role: str) -> None:
    services = _master_cf(instances[role])
    public = {name for name, (columns, _) in services.items() if columns[2] == "n"}
    inet = {name for name, (columns, _) in services.items() if columns[1] == "inet"}
    assert public == inet | {"cleanup/unix", "pickup/unix", "qmgr/unix", "flush/unix",
                             "showq/unix", "postlog/unix-dgram"}
    assert {columns[2] for name, (columns, _) in services.items() if name not in public} == {"-"}
    unprivileged = [name for name, (columns, _) in services.items() if columns[3] == "n"]
    assert unprivileged == ["virtual/unix"]
    assert {columns[3] for name, (columns, _) in services.items()
            if name != "virtual/unix"} == {"-"}


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_master_cf_has_postlog_and_the_delivery_agents(instances: dict[str, Instance],
                                                       role: str) -> None:
    services = _master_cf(instances[role])
    assert services["postlog/unix-dgram"][0][7] == "postlogd"
    assert services["postlog/unix-dgram"][0][6] == "1"
    for name, command in (("virtual/unix", "virtual"), ("smtp/unix", "smtp"),
                          ("cleanup/unix", "cleanup"), ("qmgr/unix", "qmgr"),
                          ("rewrite/unix", "trivial-rewrite"), ("bounce/unix", "bounce"),
                          ("defer/unix", "bounce"), ("smtp/inet", "smtpd")):
        assert services[name][0][7] == command, name


def test_master_cf_of_the_submission_server(mx: Instance) -> None:
    services = _master_cf(mx)
    assert sorted(n for n in services if n.endswith("/inet")) == ["465/inet", "587/inet",
                                                                  "smtp/inet"]
    submission = _options(services["587/inet"])
    assert submission["smtpd_tls_security_level"] == "encrypt"
    assert submission["smtpd_tls_auth_only"] == "yes"
    assert submission["smtpd_sasl_auth_enable"] == "yes"
    assert submission["smtpd_delay_reject"] == "no"  # MAIL before AUTH refused at MAIL
    assert submission["smtpd_relay_restrictions"] == "permit_sasl_authenticated,reject"
    assert submission["smtpd_sender_restrictions"] == "permit_sasl_authenticated,reject"
    smtps = _options(services["465/inet"])
    assert smtps["smtpd_tls_wrappermode"] == "yes"
    assert smtps["smtpd_sasl_auth_enable"] == "yes"
    assert smtps["smtpd_relay_restrictions"] == "permit_sasl_authenticated,reject"
    # port 25 is transport: no AUTH there
    assert "smtpd_sasl_auth_enable" not in _options(services["smtp/inet"])
    assert all(columns[7] == "smtpd" for n, (columns, _) in services.items()
               if n.endswith("/inet"))


def test_master_cf_of_the_remote_mx_has_no_submission_and_no_sasl(remote: Instance) -> None:
    services = _master_cf(remote)
    assert sorted(n for n in services if n.endswith("/inet")) == ["465/inet", "smtp/inet"]
    assert _options(services["465/inet"])["smtpd_tls_wrappermode"] == "yes"
    assert "sasl" not in (remote.config / "master.cf").read_text()


# --- Dovecot (submission server only)


def test_dovecot_conf(mx: Instance) -> None:
    conf = mx.dovecot_conf.read_text()
    settings = dict(re.findall(r"^(\w+) = ?(.*)$", conf, flags=re.MULTILINE))
    assert settings["auth_failure_delay"] == "0"
    assert settings["listen"].strip()
    assert settings["base_dir"] == str(mx.root / "dovecot" / "run")
    assert settings["state_dir"] == str(mx.root / "dovecot" / "state")
    anvil = re.search(r"service anvil \{[^{}]*unix_listener anvil-auth-penalty \{([^}]*)\}",
                      conf)
    assert anvil, conf
    assert re.search(r"^\s*mode = 0+$", anvil.group(1), flags=re.MULTILINE)
    listener = re.search(r"service auth \{[^{}]*unix_listener (\S+) \{([^}]*)\}", conf)
    assert listener, conf
    # where Postfix looks for it: smtpd_sasl_path is relative to the queue directory
    path = Path(listener.group(1))
    assert path.parent == mx.queue / "private"
    assert path == mx.queue / _main_cf(mx)["smtpd_sasl_path"]
    assert "user = postfix" in listener.group(2) and "group = postfix" in listener.group(2)
    assert "passwd-file" in conf and str(mx.root / "dovecot" / "users") in conf


def test_dovecot_users_are_the_lab_users(mx: Instance) -> None:
    lines = (mx.root / "dovecot" / "users").read_text().splitlines()
    entries = [line.split(":") for line in lines]
    # passwd-file: user:password:uid:gid:gecos:home:shell:extra
    assert all(len(fields) == 8 for fields in entries)
    assert [(f[0], f[1]) for f in entries] == [(u.name, u.password) for u in mail.LAB_USERS]
    for sub in ("run", "state"):
        assert (mx.root / "dovecot" / sub).is_dir()


def test_the_remote_mx_has_no_dovecot(remote: Instance) -> None:
    assert not (remote.root / "dovecot").exists()


# --- the files and folders themselves


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_queue_folders_have_owner_group_and_mode(instances: dict[str, Instance],
                                                 role: str) -> None:
    queue = instances[role].queue
    assert {p.name for p in queue.iterdir()} == set(mail._QUEUE)
    for name, (user, group, mode) in mail._QUEUE.items():
        info = (queue / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid, mode), name


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_data_and_mail_folders_owners(instances: dict[str, Instance], role: str) -> None:
    inst = instances[role]
    postfix = pwd.getpwnam("postfix")
    data = (inst.root / "data").stat()
    assert (data.st_uid, data.st_gid) == (postfix.pw_uid, postfix.pw_gid)
    maildirs = inst.mail.stat()
    assert (maildirs.st_uid, maildirs.st_gid) == (mail.NOBODY, mail.NOBODY)


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_configuration_is_dated_back(instances: dict[str, Instance], role: str) -> None:
    # Postfix rereads a configuration file younger than a second
    written = sorted(p.name for p in instances[role].config.iterdir())
    assert written == ["cert.pem", "key.pem", "main.cf", "master.cf"]
    now = time.time()
    for path in instances[role].config.iterdir():
        assert now - path.stat().st_mtime > 1, path


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_certificate_names_the_server(instances: dict[str, Instance], role: str) -> None:
    inst = instances[role]
    cf = _main_cf(inst)
    assert cf["smtpd_tls_cert_file"] == str(inst.config / "cert.pem")
    assert cf["smtpd_tls_key_file"] == str(inst.config / "key.pem")
    cert = x509.load_pem_x509_certificate(Path(cf["smtpd_tls_cert_file"]).read_bytes())
    (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == SERVERS[role].hostname
    assert stat.S_IMODE(Path(cf["smtpd_tls_key_file"]).stat().st_mode) & 0o077 == 0


def test_prepare_again_into_the_same_folder(tmp_path: Path) -> None:
    first = mail.prepare(SERVERS["remote-mx"], tmp_path / "remote-mx")
    again = mail.prepare(SERVERS["remote-mx"], tmp_path / "remote-mx")
    assert first == again
    assert _main_cf(again)["myhostname"] == "mx.example.net"


# --- the programs themselves read the files without complaint (no daemon started)


@pytest.mark.parametrize("role", ["mx", "remote-mx"])
def test_postconf_reads_main_and_master_cf_without_warnings(instances: dict[str, Instance],
                                                            role: str) -> None:
    config = str(instances[role].config)
    for show in ("-n", "-M", "-P"):
        done = subprocess.run(["postconf", "-c", config, show], capture_output=True, text=True,
                              check=False)
        assert (done.returncode, done.stderr) == (0, ""), show


def test_doveconf_reads_dovecot_conf(mx: Instance) -> None:
    done = subprocess.run(["doveconf", "-c", str(mx.dovecot_conf), "-n"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "auth_failure_delay = 0" in done.stdout


def _postmap(inst: Instance, parameter: str, key: str) -> str:
    config = str(inst.config)
    table = subprocess.run(["postconf", "-c", config, "-h", parameter], capture_output=True,
                           text=True, check=True).stdout.strip()
    found = subprocess.run(["postmap", "-c", config, "-q", key, table], capture_output=True,
                           text=True, check=False)
    assert found.stderr == "", found.stderr
    return found.stdout.strip()


def test_postfix_looks_up_the_tables_as_intended(mx: Instance, remote: Instance) -> None:
    # RFC 2142 addresses in any letter case (the rfc2142 probe sends them so)
    for alias in ("abuse@example.org", "Abuse@EXAMPLE.ORG", "POSTMASTER@Example.Org"):
        assert _postmap(mx, "virtual_alias_maps", alias) == "alice@example.org", alias
    assert _postmap(mx, "virtual_mailbox_maps", "bob@example.org") == "bob/"
    assert _postmap(mx, "virtual_mailbox_maps", "mallory@example.org") == ""
    assert _postmap(mx, "transport_maps", "example.net") == "smtp:[198.51.100.25]"
    assert _postmap(mx, "transport_maps", "v6.example.net") == "smtp:[ipv6:2001:db8:ffff:1::25]"
    assert _postmap(remote, "virtual_mailbox_maps", "anyone@v6.example.net") == "mailbox/"


# --- reading what the servers did

LOG = """\
Nov 28 05:34:50 mx postfix/submission/smtpd[101]: 4Q1ABC: client=unknown[203.0.113.10], \
sasl_method=PLAIN, sasl_username=alice
Nov 28 05:34:50 mx postfix/qmgr[99]: 4Q1ABC: from=<alice@example.org>, size=321, nrcpt=1 \
(queue active)
Nov 28 05:34:50 mx postfix/smtp[102]: 4Q1ABC: to=<postmaster@example.net>, \
relay=198.51.100.25[198.51.100.25]:25, delay=0.05, status=sent (250 2.0.0 Ok: queued as 4R9XYZ)
Nov 28 05:34:50 mx postfix/qmgr[99]: 4Q1ABC: removed
Nov 28 05:34:51 mx postfix/smtp[103]: 4Q2DEF: to=<postmaster@example.net>, relay=none, \
delay=1.1, status=deferred (connect to 198.51.100.25[198.51.100.25]:25: Connection timed out)
Nov 28 05:34:52 mx postfix/smtp[104]: 4Q2DEF: to=<postmaster@example.net>, relay=none, \
delay=2.2, status=deferred (connect to 198.51.100.25[198.51.100.25]:25: Connection refused)
"""


def test_queue_status(tmp_path: Path) -> None:
    inst = Instance(SERVERS["mx"], tmp_path)
    inst.log.write_text(LOG)
    sent = mail.queue_status(inst, "4Q1ABC")
    assert sent == ("to=<postmaster@example.net>, relay=198.51.100.25[198.51.100.25]:25, "
                    "delay=0.05, status=sent (250 2.0.0 Ok: queued as 4R9XYZ)")
    # the last status logged for that id counts
    deferred = mail.queue_status(inst, "4Q2DEF")
    assert deferred is not None
    assert "status=deferred" in deferred and deferred.endswith("Connection refused)")
    assert mail.queue_status(inst, "4Q3GHI") is None
    # the remote's queue id in the reply text is not a line about it
    assert mail.queue_status(inst, "4R9XYZ") is None


def test_queue_status_last_line_wins_after_a_retry(tmp_path: Path) -> None:
    inst = Instance(SERVERS["mx"], tmp_path)
    retry = LOG.splitlines()[4].replace("4Q2DEF", "4Q1ABC")
    inst.log.write_text(LOG.replace("4Q2DEF", "4Q9OTH") + retry + "\n")
    status = mail.queue_status(inst, "4Q1ABC")
    assert status is not None and "status=deferred" in status


def test_queue_status_without_a_log(tmp_path: Path) -> None:
    assert mail.queue_status(Instance(SERVERS["mx"], tmp_path), "4Q1ABC") is None


def test_delivered_reads_new_messages_of_every_maildir(tmp_path: Path) -> None:
    inst = Instance(SERVERS["remote-mx"], tmp_path)
    assert mail.delivered(inst) == []
    for folder, name in (("mailbox/new", "1700000001.M1.mx"), ("mailbox/new", "1700000000.M2.mx"),
                         ("mailbox/tmp", "1700000002.M3.mx"), ("mailbox/cur", "1700000003.M4.mx"),
                         ("alice/new", "1700000004.M5.mx")):
        (inst.mail / folder).mkdir(parents=True, exist_ok=True)
        (inst.mail / folder / name).write_text("Subject: port25lab-x\n")
    assert mail.delivered(inst) == [inst.mail / "alice/new/1700000004.M5.mx",
                                    inst.mail / "mailbox/new/1700000000.M2.mx",
                                    inst.mail / "mailbox/new/1700000001.M1.mx"]


def test_pids_from_the_pidfiles(tmp_path: Path) -> None:
    inst = Instance(SERVERS["mx"], tmp_path)
    assert mail.pids(inst) == []
    postfix_pid, dovecot_pid = inst.pidfiles()
    postfix_pid.parent.mkdir(parents=True)
    postfix_pid.write_text("     4242\n")  # Postfix pads its pid
    assert mail.pids(inst) == [4242]
    dovecot_pid.parent.mkdir(parents=True)
    dovecot_pid.write_text("not a pid\n")
    assert mail.pids(inst) == [4242]
    dovecot_pid.write_text(f"{os.getpid()}\n")
    assert mail.pids(inst) == [4242, os.getpid()]
