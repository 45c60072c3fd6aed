"""``digest bounces poll`` against a real IMAP server: Debian's Dovecot, started by the test as
its own process with a private configuration in a temporary folder, on free loopback ports,
with TLS on a key and certificate the test makes (and the poller trusts through
``imap_ca_file``). On SQLite and PostgreSQL."""

from __future__ import annotations

import imaplib
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine
from sqlmodel import Session

from digest.db import make_engine
from digest.feedback import store
from digest.feedback.imap import UNCLASSIFIED_FLAG, MailboxError, Poller
from digest.feedback.intake import Intake
from digest.members import get_member
from digest.settings import Settings
from tests.conftest import CLI, SMTPServer, free_port
from tests.returned_mail import BOUNCE_ADDRESS, Original, arf, dsn, feedback_settings, send_digests

pytestmark = pytest.mark.skipif(
    shutil.which("dovecot") is None, reason="Debian's dovecot-imapd is not installed (.ci/run)"
)

USER, PASSWORD = "bounces", "mailbox-password-1"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA, as far as TLS goes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Dovecot:
    imap_port: int
    imaps_port: int
    ca_file: Path

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            assert conn.append(folder, None, None, raw)[0] == "OK"
        finally:
            conn.logout()

    def folder(self, name: str) -> list[tuple[bytes, str]]:
        """(message, flags) of each message in a folder."""
        conn = self.client()
        try:
            kind, _ = conn.select(f'"{name}"', readonly=True)
            if kind != "OK":
                return []
            _, found = conn.uid("SEARCH", None, "ALL")
            out = []
            for uid in (found[0] or b"").split():
                _, data = conn.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                raw = next(part[1] for part in data if isinstance(part, tuple))
                flags = next(part[0] for part in data if isinstance(part, tuple)).decode()
                out.append((raw, flags))
            return out
        finally:
            conn.logout()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    root.chmod(0o755)  # the mail user must reach its home below it
    cert, key = make_certificate(root)
    (root / "run").mkdir()
    (root / "state").mkdir()
    home = root / "home"
    home.mkdir()
    if os.geteuid() == 0:
        mail_user, mail_group, internal, login = "nobody", "nogroup", "dovecot", "dovenull"
        shutil.chown(home, mail_user, mail_group)
    else:  # Dovecot runs as this user entirely
        import getpass
        import grp

        mail_user = internal = login = getpass.getuser()
        mail_group = grp.getgrgid(os.getegid()).gr_name
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    imap_port, imaps_port = free_port(), free_port()
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={home}/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
"""
    )
    proc = subprocess.Popen(
        ["dovecot", "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Dovecot(imap_port, imaps_port, cert)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error):
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                assert proc.poll() is None, f"dovecot exited: {proc.stdout.read()!r} {log}"
                assert time.monotonic() < deadline, f"dovecot did not start: {log}"
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def mailbox_settings(settings: Settings, server: Dovecot, **extra: object) -> Settings:
    values: dict[str, object] = {
        "imap_host": "127.0.0.1",
        "imap_port": server.imaps_port,
        "imap_security": "tls",
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_ca_file": str(server.ca_file),
    }
    values.update(extra)
    return feedback_settings(settings, **values)


def status(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return member.status


UNREADABLE = b"From: someone@example.net\r\nSubject: hello?\r\n\r\n\xfe\xff not a bounce\r\n"


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_poll_processes_moves_and_keeps(
    engine: Engine,
    settings: Settings,
    smtp_server: SMTPServer,
    dovecot: Dovecot,
    security: str,
) -> None:
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    ms = mailbox_settings(settings, dovecot, imap_security=security, imap_port=port)
    sent = send_digests(engine, ms, smtp_server, 3)
    bounced, complained = Original.of(sent[0]), Original.of(sent[1])
    dovecot.append(dsn(bounced, quote="message"))  # as delivered to the bounce mailbox
    dovecot.append(arf(complained, to=BOUNCE_ADDRESS))
    dovecot.append(UNREADABLE)
    intake = Intake(engine, ms, lambda: datetime.now(UTC))
    report = Poller(intake, ms).poll()
    assert (report.fetched, report.moved, report.kept, report.failed) == (3, 2, 1, 0)
    assert report.by_kind == {"hard_bounce": 1, "complaint": 1, "unclassified": 1}
    assert status(engine, bounced.recipient) == "bounced"
    assert status(engine, complained.recipient) == "unsubscribed"
    assert status(engine, Original.of(sent[2]).recipient) == "active"
    inbox = dovecot.folder("INBOX")
    assert [raw for raw, _ in inbox] == [UNREADABLE]  # kept where it was, flagged, unread
    assert UNCLASSIFIED_FLAG in inbox[0][1] and "\\Seen" not in inbox[0][1]
    assert len(dovecot.folder("Processed")) == 2
    with Session(engine) as session:
        counts = store.event_counts(session)
    assert counts["unclassified"] == 1 and counts["hard_bounce"] == 1
    # the next poll passes over what it kept: it was counted once
    again = Poller(intake, ms).poll()
    assert (again.fetched, again.moved, again.kept) == (0, 0, 0)
    with Session(engine) as session:
        assert store.event_counts(session)["unclassified"] == 1


def test_a_message_not_recorded_stays(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, dovecot: Dovecot, tmp_path: Path
) -> None:
    ms = mailbox_settings(settings, dovecot)
    original = Original.of(send_digests(engine, ms, smtp_server, 1)[0])
    raw = dsn(original)
    dovecot.append(raw)
    broken = make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")  # the store is not there
    report = Poller(Intake(broken, ms, lambda: datetime.now(UTC)), ms).poll()
    broken.dispose()
    assert (report.fetched, report.failed, report.moved) == (1, 1, 0) and report.errors
    assert [m for m, _ in dovecot.folder("INBOX")] == [raw]  # untouched, for the next poll
    good = Poller(Intake(engine, ms, lambda: datetime.now(UTC)), ms).poll()
    assert good.moved == 1 and status(engine, original.recipient) == "bounced"


def test_tls_is_verified_and_credentials_checked(
    engine: Engine, settings: Settings, dovecot: Dovecot
) -> None:
    intake = Intake(engine, feedback_settings(settings), lambda: datetime.now(UTC))
    untrusted = mailbox_settings(settings, dovecot, imap_ca_file="")
    with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
        Poller(intake, untrusted).poll()
    wrong = mailbox_settings(settings, dovecot, imap_password="not-it")
    with pytest.raises(MailboxError, match="AUTHENTICATIONFAILED|LOGIN|failed"):
        Poller(intake, wrong).poll()


def test_the_command(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer, dovecot: Dovecot
) -> None:
    ms = mailbox_settings(settings, dovecot)
    original = Original.of(send_digests(engine, ms, smtp_server, 2)[1])
    dovecot.append(dsn(original, status="5.2.1"))
    dovecot.append(UNREADABLE)
    cli.env.update(
        {
            "DIGEST_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
            "DIGEST_INBOUND_DIR": ms.inbound_dir,
            "DIGEST_IMAP_HOST": "127.0.0.1",
            "DIGEST_IMAP_PORT": str(dovecot.imaps_port),
            "DIGEST_IMAP_USERNAME": USER,
            "DIGEST_IMAP_PASSWORD": PASSWORD,
            "DIGEST_IMAP_CA_FILE": str(dovecot.ca_file),
        }
    )
    result = cli("bounces", "poll")
    assert result.exit_code == 0, result.output
    assert "fetched 2 (hard_bounce 1, unclassified 1); moved 1, kept 1" in result.output
    assert status(engine, original.recipient) == "bounced"
    listed = cli("bounces", "list")
    assert "hard_bounce" in listed.output and "unclassified" in listed.output
    cli.env["DIGEST_IMAP_PASSWORD"] = "wrong"
    failed = cli("bounces", "poll")
    assert failed.exit_code == 1 and "could not be read" in failed.output
    with socket.socket() as probe:  # the mailbox is still there: only the login failed
        probe.connect(("127.0.0.1", dovecot.imaps_port))


def test_the_scheduler_polls_when_configured(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, dovecot: Dovecot
) -> None:
    from digest.scheduler import BOUNCES, Jobs, Service
    from digest.scheduler import status as scheduler_status

    ms = mailbox_settings(settings, dovecot, bounce_poll_minutes=5)
    assert Service(engine, ms, []).intervals()[BOUNCES] == 300
    assert BOUNCES not in Service(engine, ms.replace(bounce_poll_minutes=0), []).intervals()
    assert BOUNCES not in Service(engine, ms.replace(imap_host=""), []).intervals()
    original = Original.of(send_digests(engine, ms, smtp_server, 1)[0])
    dovecot.append(dsn(original))
    summary = Jobs(engine, ms, [], clock=lambda: datetime.now(UTC)).run(BOUNCES)
    assert summary == {"fetched": 1, "moved": 1, "kept": 0}
    assert status(engine, original.recipient) == "bounced"
    assert scheduler_status(engine, datetime.now(UTC))["runs"][BOUNCES]["runs"] == 1
