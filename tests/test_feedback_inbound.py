"""``digest inbound``: a real aiosmtpd receiver on loopback, spoken to with smtplib as an MTA
would, on SQLite and PostgreSQL; and the command itself, serving until SIGTERM."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from digest.feedback import store
from digest.feedback.inbound import make_server
from digest.feedback.intake import Intake
from digest.members import get_member
from digest.settings import Settings
from tests.conftest import PROJECT, TEST_SECRET, SMTPServer, free_port
from tests.returned_mail import (
    BOUNCE_ADDRESS,
    COMPLAINT_ADDRESS,
    Original,
    arf,
    dsn,
    feedback_settings,
    send_digests,
    unsubscribe_mail,
)


def status(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return member.status


def event_count(engine: Engine) -> int:
    with Session(engine) as session:
        return sum(store.event_counts(session).values())


@pytest.fixture
def fs(settings: Settings) -> Settings:
    return feedback_settings(settings, inbound_rate_limit=50)


@pytest.fixture
def inbound(engine: Engine, fs: Settings) -> Iterator[tuple[str, int]]:
    port = free_port()
    server = make_server(Intake(engine, fs, lambda: datetime.now(UTC)), fs, "127.0.0.1", port)
    server.start()
    try:
        yield "127.0.0.1", port
    finally:
        server.stop()


def deliver(where: tuple[str, int], rcpt: str, data: bytes, sender: str = "") -> None:
    with smtplib.SMTP(*where, timeout=30) as conn:
        conn.sendmail(sender, [rcpt], data)


def test_a_dsn_marks_the_member_bounced(
    engine: Engine, fs: Settings, smtp_server: SMTPServer, inbound: tuple[str, int]
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 3)[2])
    deliver(inbound, original.envelope_sender, dsn(original))
    # answered 250 only once recorded: the effect is there when the MTA hears "accepted"
    assert status(engine, original.recipient) == "bounced"
    with Session(engine) as session:
        (event,) = store.list_events(session)
    assert event.kind == "hard_bounce" and event.source == "smtp" and event.delivery_id


def test_a_complaint_unsubscribes_within_a_second(
    engine: Engine, fs: Settings, smtp_server: SMTPServer, inbound: tuple[str, int]
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[0])
    started = time.monotonic()
    deliver(inbound, COMPLAINT_ADDRESS, arf(original))
    while status(engine, original.recipient) != "unsubscribed":
        assert time.monotonic() - started < 1.0, "not unsubscribed within a second"
        time.sleep(0.01)


def test_unsubscribe_by_mail(
    engine: Engine, fs: Settings, smtp_server: SMTPServer, inbound: tuple[str, int]
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[1])
    deliver(inbound, original.unsubscribe_address, unsubscribe_mail(original), original.recipient)
    assert status(engine, original.recipient) == "unsubscribed"


@pytest.mark.parametrize(
    "rcpt",
    [
        "postmaster@bounce.news.example.org",
        "bounces+garbage@bounce.news.example.org",
        "ada@example.org",  # relaying
        "bounces@news.example.org",
    ],
)
def test_other_recipients_are_refused_in_the_session(
    engine: Engine, inbound: tuple[str, int], rcpt: str
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        deliver(inbound, rcpt, b"Subject: hi\r\n\r\nhello\r\n")
    assert refused.value.recipients[rcpt][0] == 550
    assert event_count(engine) == 0


def test_a_30_mb_message_is_refused(engine: Engine, inbound: tuple[str, int]) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (30 * 1024 * 1024 // 1000)
    # declared with SIZE, as MTAs do: refused at MAIL FROM
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        deliver(inbound, BOUNCE_ADDRESS, big)
    assert refused.value.smtp_code == 552
    # not declared: refused after the data, before anything is kept
    with smtplib.SMTP(*inbound, timeout=60) as conn:
        conn.ehlo()
        assert conn.mail("")[0] == 250
        assert conn.rcpt(BOUNCE_ADDRESS)[0] == 250
        code, reply = conn.data(big)
    assert code == 552, reply
    assert event_count(engine) == 0


def test_a_forged_verp_token_changes_nothing(
    engine: Engine, fs: Settings, smtp_server: SMTPServer, inbound: tuple[str, int]
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[0])
    local, _, domain = original.envelope_sender.partition("@")
    forged = f"{local.split('-')[0]}-{'b' * 20}@{domain}"
    deliver(inbound, forged, dsn(original, to=forged, quote="message"))
    assert status(engine, original.recipient) == "active"
    assert event_count(engine) == 1  # kept and counted, with no effect


def test_clients_sending_too_fast_are_told_to_wait(engine: Engine, settings: Settings) -> None:
    fs = feedback_settings(settings, inbound_rate_limit=3)
    port = free_port()
    server = make_server(Intake(engine, fs, lambda: datetime.now(UTC)), fs, "127.0.0.1", port)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
            for n in range(3):
                conn.sendmail("", [BOUNCE_ADDRESS], f"Subject: {n}\r\n\r\nx\r\n".encode())
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                conn.sendmail("", [BOUNCE_ADDRESS], b"Subject: 4\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 450
    finally:
        server.stop()
    assert event_count(engine) == 3


def test_lmtp(engine: Engine, fs: Settings, smtp_server: SMTPServer) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 1)[0])
    port = free_port()
    intake = Intake(engine, fs, lambda: datetime.now(UTC))
    server = make_server(intake, fs, "127.0.0.1", port, lmtp=True)
    server.start()
    try:
        with smtplib.LMTP("127.0.0.1", port) as conn:
            conn.sendmail("", [original.envelope_sender], dsn(original))
    finally:
        server.stop()
    assert status(engine, original.recipient) == "bounced"


def test_the_command_serves_until_sigterm(
    engine: Engine, db_url: str, fs: Settings, smtp_server: SMTPServer, tmp_path
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[0])
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": TEST_SECRET,
        "DIGEST_FROM": fs.from_address,
        "DIGEST_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        "DIGEST_INBOUND_DIR": str(tmp_path / "kept"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "inbound", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as probe:
                    probe.noop()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0].decode()
                assert time.monotonic() < deadline, "digest inbound did not start"
                time.sleep(0.1)
        deliver(("127.0.0.1", port), original.envelope_sender, dsn(original))
        assert status(engine, original.recipient) == "bounced"
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            deliver(("127.0.0.1", port), "root@bounce.news.example.org", b"Subject: x\r\n\r\n")
        assert len(list((tmp_path / "kept").rglob("*.eml"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
