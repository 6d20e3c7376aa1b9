"""Real mail servers in lab nodes: private Postfix (and Dovecot SASL) instances.

Each instance lives entirely in the run folder: configuration, queue, data,
mailboxes and logs. Nothing under /etc is read or written, and nothing of
the host's own mail system (if any) is touched. The site's mail servers:

- a *submission server* (`mx`, capability `submission`): Postfix on 25 (transport, mail for its own
  domain), 587 (submission: STARTTLS required before AUTH, AUTH mandatory,
  MAIL before AUTH refused — RFC 6409) and 465 (submission over implicit
  TLS — RFC 8314), with Dovecot as the SASL back end and lab users in a
  passwd-file. Outbound mail goes straight to the remote MTA's address.
- a *foreign MTA* (`remote-mx`, capability `mta` without `submission`):
  Postfix on 25 and 465 accepting any recipient of its domains into one
  Maildir that the lab reads.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lab.errors import LabFailure
from lab.model.site import SUBMISSION, Node, Site
from lab.runtime.handle import NodeHandle, in_namespace
from lab.services.service import READY_TIMEOUT, Service, pids_in

POSTFIX_LIBEXEC = Path("/usr/lib/postfix/sbin")
NOBODY = 65534
# s per SMTP step of the greeting: a port of the lab greets in milliseconds, a machine
# loaded by other labs may take a second to start smtpd (a greeting still under way at
# the services' READY_TIMEOUT is a boot failure that says so)
GREETING_TIMEOUT = 3.0


@dataclass(frozen=True)
class User:
    name: str
    password: str


# Lab accounts of the submission server. Passwords are lab data, not secrets.
# carol's is trivial on purpose: the guessing scenarios must find (or be banned
# before they find) a weak account.
LAB_USERS = (User("alice", "correct-horse-battery-staple"), User("bob", "Tr0ub4dor&3-lab"),
             User("carol", "letmein"))


@dataclass(frozen=True)
class MailServer:
    """One Postfix instance: which role runs it, its names, and where its mail goes."""

    role: str
    hostname: str
    domains: tuple[str, ...]
    submission: bool  # True: 25/587/465 with SASL (mx); False: 25/465 MTA (remote-mx)
    routes: tuple[tuple[str, str], ...] = ()  # (domain, "[address]") for outbound mail
    users: tuple[User, ...] = ()
    # where its greeting comes from: servers_for gives one of the node's own addresses
    # (127.0.0.1, for a server made without a site, is in mynetworks and so skips anvil,
    # the connection counter every other client meets)
    address: str = "127.0.0.1"

    @property
    def ports(self) -> tuple[int, ...]:
        return (25, 465, 587) if self.submission else (25, 465)


@dataclass(frozen=True)
class Instance:
    """Where a running server keeps its things."""

    server: MailServer
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "etc"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def log(self) -> Path:
        return self.root / "postfix.log"

    @property
    def dovecot_conf(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    def pidfiles(self) -> list[Path]:
        return [self.queue / "pid" / "master.pid", self.root / "dovecot" / "run" / "master.pid"]


def _main_cf(inst: Instance, tls: tuple[Path, Path]) -> str:
    s = inst.server
    lines = [
        "compatibility_level = 3.6",
        # the hostname is shared by every node of the lab: name each server
        f"myhostname = {s.hostname}",
        f"mydomain = {s.domains[0]}",
        "myorigin = $mydomain",
        "mydestination =",
        "inet_interfaces = all",
        "inet_protocols = all",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        f"queue_directory = {inst.queue}",
        f"data_directory = {inst.root / 'data'}",
        # no syslog in a namespace: Postfix logs to a file through postlogd
        f"maillog_file = {inst.log}",
        f"maillog_file_prefixes = {inst.root}",
        "smtpd_peername_lookup = no",  # no 5 s reverse-DNS stalls
        "smtp_host_lookup = native",
        # the lab's paths are short: a connection that does not open in 1 s never will
        "smtp_connect_timeout = 1s",
        "in_flow_delay = 0",  # else the first message waits 1 s for a flow token
        "alias_maps =",
        "alias_database =",
        "biff = no",
        "smtputf8_enable = no",
        "readme_directory = no",
        f"smtpd_banner = $myhostname ESMTP port25lab {s.role}",
        f"smtpd_tls_cert_file = {tls[0]}",
        f"smtpd_tls_key_file = {tls[1]}",
        "smtpd_tls_security_level = may",
        "smtp_tls_security_level = may",
        f"virtual_mailbox_domains = {' '.join(s.domains)}",
        f"virtual_mailbox_base = {inst.mail}",
        f"virtual_uid_maps = static:{NOBODY}",
        f"virtual_gid_maps = static:{NOBODY}",
    ]
    if s.submission:
        mailboxes = ", ".join(f"{u.name}@{s.domains[0]}={u.name}/" for u in s.users)
        first = s.users[0].name
        # RFC 2142: abuse@ and postmaster@ reach a person
        aliases = ", ".join(f"{a}@{s.domains[0]}={first}@{s.domains[0]}"
                            for a in ("abuse", "postmaster"))
        lines += [
            f"virtual_mailbox_maps = inline:{{ {mailboxes} }}",
            f"virtual_alias_maps = inline:{{ {aliases} }}",
            "smtpd_sasl_type = dovecot",
            "smtpd_sasl_path = private/auth",
        ]
    else:
        lines.append("virtual_mailbox_maps = static:mailbox/")  # every recipient, one Maildir
    if s.routes:
        routes = ", ".join(f"{domain}=smtp:{nexthop}" for domain, nexthop in s.routes)
        lines.append(f"transport_maps = inline:{{ {routes} }}")
    return "\n".join(lines) + "\n"


_SUBMISSION_OPTIONS = (
    "-o smtpd_sasl_auth_enable=yes",
    "-o smtpd_delay_reject=no",  # refuse MAIL before AUTH at MAIL, not at RCPT
    "-o smtpd_client_restrictions=",
    "-o smtpd_sender_restrictions=permit_sasl_authenticated,reject",
    "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    "-o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
)


def _master_cf(server: MailServer) -> str:
    public = {"pickup", "cleanup", "qmgr", "flush", "showq", "postlog"}  # as Postfix ships it

    def service(name: str, kind: str, command: str, *options: str, limit: str = "-") -> str:
        # every service runs without chroot: the lab's paths are not inside one
        private = "n" if kind == "inet" or name in public else "-"
        unprivileged = "n" if command == "virtual" else "-"  # it writes as the mailbox owner
        head = f"{name:<10} {kind:<10} {private} {unprivileged} n - {limit} {command}"
        return "\n".join([head, *(f"  {o}" for o in options)])

    services = [
        service("smtp", "inet", "smtpd", "-o syslog_name=postfix/smtp"),
        service("465", "inet", "smtpd", "-o syslog_name=postfix/smtps",
                "-o smtpd_tls_wrappermode=yes",
                *(_SUBMISSION_OPTIONS if server.submission else ())),
    ]
    if server.submission:
        services.append(service("587", "inet", "smtpd", "-o syslog_name=postfix/submission",
                                "-o smtpd_tls_security_level=encrypt",
                                "-o smtpd_tls_auth_only=yes", *_SUBMISSION_OPTIONS))
    for name, command, limit in (
            ("pickup", "pickup", "1"), ("cleanup", "cleanup", "0"), ("qmgr", "qmgr", "1"),
            ("tlsmgr", "tlsmgr", "1"), ("rewrite", "trivial-rewrite", "-"),
            ("bounce", "bounce", "0"), ("defer", "bounce", "0"), ("trace", "bounce", "0"),
            ("verify", "verify", "1"), ("flush", "flush", "0"), ("proxymap", "proxymap", "-"),
            ("proxywrite", "proxymap", "1"), ("smtp", "smtp", "-"), ("relay", "smtp", "-"),
            ("showq", "showq", "-"), ("error", "error", "-"), ("retry", "error", "-"),
            ("discard", "discard", "-"), ("virtual", "virtual", "-"), ("anvil", "anvil", "1"),
            ("scache", "scache", "1")):
        services.append(service(name, "unix", command, limit=limit))
    # postlogd writes maillog_file; without it Postfix has nowhere to log
    services.append(service("postlog", "unix-dgram", "postlogd", limit="1"))
    return "\n".join(services) + "\n"


def _dovecot_conf(inst: Instance) -> str:
    base = inst.root / "dovecot"
    return f"""\
# Dovecot only as Postfix's SASL back end, private to this lab run.
protocols =
listen = 127.0.0.1
base_dir = {base / "run"}
state_dir = {base / "state"}
log_path = {base / "dovecot.log"}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# the lab's guessing probes must not be slowed down by the server itself
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {base / "users"}
}}
userdb {{
  driver = static
  args = uid={NOBODY} gid={NOBODY} home=/nonexistent
}}
service auth {{
  unix_listener {inst.queue / "private" / "auth"} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  # no auth penalty: a failed AUTH would delay the next one by seconds
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _certificate(folder: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for the server's name, valid two days, and its key
    (what `openssl req -x509` makes, without a process per server and boot)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    key_file.unlink(missing_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def prepare(server: MailServer, root: Path) -> Instance:
    """Write the instance's files (outside any namespace)."""
    inst = Instance(server, root)
    for folder in (inst.config, inst.queue, inst.root / "data", inst.mail):
        folder.mkdir(parents=True, exist_ok=True)
    postfix = pwd.getpwnam("postfix")
    os.chown(inst.root / "data", postfix.pw_uid, postfix.pw_gid)
    os.chown(inst.mail, NOBODY, NOBODY)
    _make_queue(inst.queue)
    tls = _certificate(inst.config, server.hostname)
    (inst.config / "main.cf").write_text(_main_cf(inst, tls))
    (inst.config / "master.cf").write_text(_master_cf(server))
    # Postfix rereads a configuration file until it is over a second old (a
    # guard against files still being written): date them back.
    past = time.time() - 10
    for written in inst.config.iterdir():
        os.utime(written, (past, past))
    if server.submission:
        dovecot = inst.root / "dovecot"
        for sub in ("run", "state"):
            (dovecot / sub).mkdir(parents=True, exist_ok=True)
        (dovecot / "users").write_text(
            "".join(f"{u.name}:{u.password}::::::\n" for u in server.users))
        inst.dovecot_conf.write_text(_dovecot_conf(inst))
    return inst


# The queue's folders as `postfix check` would make them (owner, group, mode). That
# command takes 2.5 s inside a node (it waits for name lookups that cannot be
# answered there), so the lab makes them itself.
_QUEUE = {
    **dict.fromkeys(("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                     "incoming", "private", "saved", "trace"), ("postfix", "root", 0o700)),
    "maildrop": ("postfix", "postdrop", 0o730),
    "public": ("postfix", "postdrop", 0o710),
    "pid": ("root", "root", 0o755),
}


def _make_queue(queue: Path) -> None:
    for name, (user, group, mode) in _QUEUE.items():
        folder = queue / name
        folder.mkdir(exist_ok=True)
        os.chown(folder, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        folder.chmod(mode)


class Mail(Service):
    """One mail server on its node: Dovecot for SASL and Postfix's master, both held.

    Ready when each of its ports greets (`greet`): one SMTP session from the server's
    own address to itself, which the kernel carries over the node's loopback, never
    through a gateway. Listening alone is the kernel's; the greeting is smtpd's — one
    that cannot start (a bad key, a missing map) fails the boot in one line instead
    of turning the first probe into `error`. It also leaves each port an idle smtpd
    with its helpers (tlsmgr, anvil, trivial-rewrite) running, as on any server that
    has served one client, so a probe's verdict does not carry smtpd's first start.
    """

    name = "Postfix"

    def __init__(self, node: NodeHandle, server: MailServer) -> None:
        super().__init__(node)
        self.instance = Instance(server, node.folder)
        self._greeters = ThreadPoolExecutor(1, thread_name_prefix=f"greet-{node.name}")
        self._greeting: Future[list[str]] | None = None  # what the ports said, if not 220
        self.dovecot: subprocess.Popen[bytes] | None = None  # held, on a submission server

    def prepare(self) -> None:
        # No dry run: `postfix check` takes 2.5 s in a node (see _QUEUE), and the
        # configuration is the lab's own, pinned by its unit tests.
        require_binaries()
        prepare(self.instance.server, self.instance.root)

    def start(self) -> None:
        inst = self.instance
        # Both in the foreground, held by the lab, side by side: `master -w` would poll
        # for 2 s, and a detached Dovecot held the start for its 75 ms of daemonizing.
        # smtpd asks Dovecot only at a client's EHLO on a port with AUTH: the greeting
        # (below) waits for Dovecot's socket.
        if inst.server.submission:
            self.dovecot = self.node.spawn(["/usr/sbin/dovecot", "-F", "-c",
                                            str(inst.dovecot_conf)],
                                           inst.root / "dovecot.start.log")
            self.held.append(self.dovecot)
        self.spawn([str(POSTFIX_LIBEXEC / "master"), "-c", str(inst.config), "-d"],
                   inst.root / "start.log")

    def ready(self) -> bool:
        if self._greeting is None:
            if self.dovecot is not None and not self._dovecot_ready(self.dovecot):
                return False
            if not set(self.instance.server.ports) <= self.node.listening():
                return False
            # beside the other services' waits, and each port beside the others
            self._greeting = self._greeters.submit(self._greet)
        if not self._greeting.done():
            return False
        self._greeters.shutdown()
        refused = self._greeting.result()  # a lab bug is raised here, as it is
        if refused:
            raise LabFailure(f"{self.node.name}: Postfix {refused[0]}")
        return True

    def _greet(self) -> list[str]:
        server = self.instance.server
        with ThreadPoolExecutor(len(server.ports)) as each:
            said = list(each.map(lambda port: greet(self.node.pid, server, port), server.ports))
        return [s for s in said if s is not None]

    def _dovecot_ready(self, dovecot: subprocess.Popen[bytes]) -> bool:
        """Dovecot's auth socket is there for smtpd; LabFailure with its words if it ended."""
        if dovecot.poll() is not None:
            said = (self.instance.root / "dovecot.start.log").read_text(
                errors="replace").strip().splitlines()
            fatal = [line for line in said if "Fatal:" in line] or said[-1:]
            raise LabFailure(f"{self.node.name}: dovecot failed: "
                             f"{fatal[0] if fatal else dovecot.returncode}")
        return (self.instance.queue / "private" / "auth").exists()

    def not_ready(self) -> str:
        if self._greeting is not None:
            return f"Postfix listens, but its ports did not greet in {READY_TIMEOUT:g} s"
        if self.dovecot is not None and not self._dovecot_ready(self.dovecot):
            return f"Dovecot's auth socket did not appear in {READY_TIMEOUT:g} s"
        log = self.instance.log
        text = log.read_text(errors="replace") if log.exists() else ""
        fatal = [ln for ln in text.splitlines() if "fatal:" in ln]
        return ("Postfix did not start: "
                f"{fatal[0].split('fatal: ', 1)[1] if fatal else 'not listening in 10 s'}")

    def pidfiles(self) -> list[Path]:
        return self.instance.pidfiles()


class _FromNode(smtplib.SMTP):
    """smtplib's client, its connection made inside a node from one of its addresses
    (TLS from the first byte with `wrapped`, as on port 465)."""

    def __init__(self, pid: int, address: str, hostname: str, wrapped: bool) -> None:
        self.pid, self.address, self.wrapped = pid, address, wrapped
        # the lab's own certificate, which is not what the greeting checks
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE
        super().__init__(local_hostname=hostname, timeout=GREETING_TIMEOUT)
        self._host = hostname  # smtplib's TLS layer names it to the server (SNI)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = in_namespace(self.pid, lambda: socket.create_connection(
            (host, port), timeout, (self.address, 0)))
        if not self.wrapped:
            return sock
        # as the probes' implicit TLS does (probes.dialogue): the banner after the
        # handshake would wait 40 ms for a delayed ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self.tls.wrap_socket(sock, server_hostname=self._host)


def _first_line(reply: bytes | str) -> str:
    """A server's reply as one line (smtplib joins a multi-line reply's lines with \\n)."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return text.splitlines()[0] if text.strip() else "(nothing)"


def greet(pid: int, server: MailServer, port: int) -> str | None:
    """One SMTP session with a port of the server, from its own node: None if it greeted.

    Otherwise what went wrong, in words. What a client of the lab's probes does:
    the banner, EHLO, STARTTLS where offered (TLS from the first byte on 465,
    RFC 8314), EHLO again, a MAIL FROM and RSET where mail is taken without AUTH
    (smtpd asks trivial-rewrite about the sender), QUIT. Nothing is refused, so
    the server logs no rejection a jail could read: only connect and disconnect.
    """
    conn = _FromNode(pid, server.address, server.hostname, wrapped=port == 465)
    try:
        code, text = conn.connect(server.address, port)
        if code != 220:
            return f"port {port} does not greet: {code} {_first_line(text)}"
        conn.ehlo()
        if conn.has_extn("starttls"):
            conn.starttls(context=conn.tls)
            conn.ehlo()
        if port == 25 or not server.submission:
            code, text = conn.mail(f"postmaster@{server.domains[0]}")
            if code != 250:
                return (f"port {port} refuses mail from its own postmaster: {code} "
                        f"{_first_line(text)}")
            conn.rset()
        conn.quit()
    except smtplib.SMTPResponseException as exc:
        return f"port {port} does not greet: {exc.smtp_code} {_first_line(exc.smtp_error)}"
    except (OSError, smtplib.SMTPException) as exc:
        return f"port {port} does not greet: {exc or type(exc).__name__}"
    finally:
        conn.close()
    return None


def pids(inst: Instance) -> list[int]:
    """The master PIDs of the instance's daemons, from their pidfiles."""
    return pids_in(inst.pidfiles())


def delivered(inst: Instance) -> list[Path]:
    """Messages delivered into the instance's Maildirs."""
    return sorted(inst.mail.glob("*/new/*"))


def require_binaries() -> None:
    for program in ("postfix", "dovecot"):
        if shutil.which(program) is None:
            raise LabFailure(f"{program} is not installed: run `make setup`")


ORGANISATION = "example.org"
FOREIGN = "example.net"
FOREIGN_V6 = "v6.example.net"  # mail for it travels over IPv6


def servers_for(site: Site) -> dict[str, MailServer]:
    """The site's mail servers: its submission servers and its foreign MTA."""
    servers: dict[str, MailServer] = {}
    remote = site.foreign_mta
    if remote is not None:
        servers[remote.name] = MailServer(remote.name, f"mx.{FOREIGN}", (FOREIGN, FOREIGN_V6),
                                          submission=False, address=own_address(remote))
    for role in site.having(SUBMISSION):
        # a foreign MTA of a site's own may lack a family: its mail cannot travel over it
        routes = () if remote is None else tuple(
            (domain, address.format(remote.address(family)))
            for family, domain, address in ((4, FOREIGN, "[{}]"), (6, FOREIGN_V6, "[ipv6:{}]"))
            if remote.has(family))
        servers[role.name] = MailServer(role.name, f"{role.name}.{ORGANISATION}",
                                        (ORGANISATION,), submission=True, routes=routes,
                                        users=LAB_USERS, address=own_address(role))
    return servers


def own_address(node: Node) -> str:
    """An address of the node's own (IPv4 if it has one)."""
    return node.address(4) if node.has(4) else node.address(6)


def domain_for(server: MailServer, family: int) -> str:
    """The domain of `server` whose mail travels over `family` (for the foreign MTA)."""
    if not server.submission and family == 6 and FOREIGN_V6 in server.domains:
        return FOREIGN_V6
    return server.domains[0]


def queue_status(inst: Instance, queue_id: str) -> str | None:
    """The last delivery status Postfix logged for a queue id (sent, deferred, bounced)."""
    if not inst.log.exists():
        return None
    found = None
    for line in inst.log.read_text(errors="replace").splitlines():
        if f" {queue_id}: " in line and " status=" in line:
            found = line.split(f" {queue_id}: ", 1)[1]
    return found
