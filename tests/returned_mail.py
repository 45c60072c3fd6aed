"""Real digests and the mail that comes back about them, for the feedback tests.

``send_digests`` plans and sends real digests through the real sender to the test's SMTP
server, so each test starts from the bytes and the envelope sender a member's server saw.
The builders then write what real MTAs and feedback loops send back: RFC 3464 DSNs (as
Postfix writes them), a qmail bounce (no DSN structure), RFC 5965 ARF reports (as Yahoo's
feedback loop does), and the unsubscribe mail a client sends for a List-Unsubscribe mailto.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import format_datetime
from urllib.parse import unquote

from sqlalchemy import Engine, insert
from sqlmodel import select

from digest.catalog import ensure_topics
from digest.clock import fixed_clock
from digest.db import session_scope
from digest.editions import Editions
from digest.ingest import ArticleRecord, upsert_articles
from digest.mailer import SMTPTransport
from digest.models import Subscriber, SubscriberTopic
from digest.plan import plan
from digest.send import Sender
from digest.settings import Settings
from tests.conftest import Received, SMTPServer

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)
BOUNCE_ADDRESS = "bounces@bounce.news.example.org"
COMPLAINT_ADDRESS = "fbl@bounce.news.example.org"


def feedback_settings(settings: Settings, **extra: object) -> Settings:
    """The test's settings with a bounce domain and a place for kept mail."""
    values: dict[str, object] = {
        "bounce_address": BOUNCE_ADDRESS,
        "complaint_address": COMPLAINT_ADDRESS,
        "inbound_dir": str(settings.data_dir) + "/inbound",
        "sns_certificate_dir": str(settings.data_dir) + "/sns-certificates",
    }
    values.update(extra)
    return settings.replace(**values)


def seed_members(engine: Engine, count: int, now: datetime = NOW, day: int = 0) -> None:
    """``count`` daily members on "Space" at 07:00 UTC (created once), and one new article."""
    record = ArticleRecord(
        url=f"https://archive.example.org/space-{day}",
        title=f"Space news, day {day}",
        published_at=now - timedelta(hours=3),
        key_points=("A probe reached the outer planets.",),
        topics=("Space",),
    )
    with session_scope(engine) as session:
        upsert_articles(session, [record], now - timedelta(hours=2))
        (topic,) = ensure_topics(session, ["Space"])
        if session.exec(select(Subscriber.id)).first() is not None:
            return
        rows = [
            {
                "email": f"m{i:03d}@example.org",
                "name": f"Member {i}",
                "status": "active",
                "frequency": "daily",
                "timezone": "UTC",
                "send_hour": 7,
                "created_at": now - timedelta(days=3),
                "updated_at": now - timedelta(days=3),
            }
            for i in range(count)
        ]
        session.execute(insert(Subscriber), rows)
        ids = session.exec(select(Subscriber.id)).all()
        session.execute(
            insert(SubscriberTopic), [{"subscriber_id": i, "topic_id": topic.id} for i in ids]
        )


def send_digests(
    engine: Engine,
    settings: Settings,
    smtp: SMTPServer,
    members: int,
    day: int = 0,
) -> list[Received]:
    """Seed (once), plan and send day ``day``'s digests; the messages the server received."""
    now = NOW + timedelta(days=day)
    seed_members(engine, members, now, day)
    before = len(smtp.messages)
    s = settings.replace(smtp_host=smtp.host, smtp_port=smtp.port)
    plan(engine, s, now)
    Sender(engine, s, Editions(s), lambda: SMTPTransport.from_settings(s), fixed_clock(now)).run()
    return list(smtp.messages[before:])


@dataclass(frozen=True)
class Original:
    """What a returned message quotes of the digest it is about."""

    envelope_sender: str
    recipient: str
    data: bytes

    @classmethod
    def of(cls, received: Received) -> Original:
        return cls(received.mail_from, received.rcpt_tos[0], received.data)

    @property
    def headers(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.data, policy=policy.default)["Message-ID"])

    @property
    def unsubscribe_token(self) -> str:
        header = str(message_from_bytes(self.data, policy=policy.default)["List-Unsubscribe"])
        mailto = next(part for part in header.split(",") if "mailto:" in part)
        return unquote(mailto.strip().strip("<>").split("subject=", 1)[1]).split(" ", 1)[1]

    @property
    def unsubscribe_address(self) -> str:
        header = str(message_from_bytes(self.data, policy=policy.default)["List-Unsubscribe"])
        mailto = next(part for part in header.split(",") if "mailto:" in part)
        return unquote(mailto.strip().strip("<>")[len("mailto:") :].split("?", 1)[0])


def _date(when: datetime | None = None) -> str:
    return format_datetime(when or datetime.now(UTC))


def dsn(
    original: Original,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    to: str | None = None,
    quote: str = "headers",  # headers | message | none
    boundary: str = "=_dsn_boundary",
    diagnostic: str | None = None,
) -> bytes:
    """An RFC 3464 DSN as Postfix writes it, addressed to the digest's envelope sender."""
    code = "550" if status.startswith("5") else "452"
    diagnostic = diagnostic or f"smtp; {code} {status} <{original.recipient}>: Recipient rejected"
    parts = [
        f"--{boundary}\r\nContent-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.net.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"<{original.recipient}>: host mx.example.net said: {code} {status} "
        "Recipient rejected\r\n\r\n",
        f"--{boundary}\r\nContent-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "X-Postfix-Queue-ID: 4F2A81C0012\r\n"
        f"Arrival-Date: {_date()}\r\n\r\n"
        f"Final-Recipient: rfc822; {original.recipient}\r\n"
        f"Original-Recipient: rfc822;{original.recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.net\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n",
    ]
    if quote == "headers":
        parts.append(
            f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n" + original.headers.decode() + "\r\n"
        )
    elif quote == "message":
        parts.append(
            f"--{boundary}\r\nContent-Description: Undelivered Message\r\n"
            "Content-Type: message/rfc822\r\n\r\n" + original.data.decode() + "\r\n"
        )
    head = (
        "Return-Path: <>\r\n"
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to or original.envelope_sender}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {_date()}\r\n"
        f"Message-ID: <20261124080000.4F2A81C0012@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n\r\n'
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    return (head + "".join(parts) + f"--{boundary}--\r\n").encode()


def qmail_bounce(original: Original, to: str | None = None) -> bytes:
    """A qmail bounce: plain text, no DSN structure, the original quoted inline."""
    return (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mail.example.net\r\n"
        f"To: {to or original.envelope_sender}\r\n"
        "Subject: failure notice\r\n"
        f"Date: {_date()}\r\n"
        "Message-ID: <qmail-bounce-1@mail.example.net>\r\n\r\n"
        "Hi. This is the qmail-send program at mail.example.net.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<{original.recipient}>:\r\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
    ).encode() + original.headers


def arf(
    original: Original,
    *,
    to: str = COMPLAINT_ADDRESS,
    feedback_type: str = "abuse",
    redact: bool = False,
    boundary: str = "----=_arf_boundary",
) -> bytes:
    """An RFC 5965 abuse report as Yahoo's feedback loop sends it, with the original attached
    (``redact``: the recipient's address blanked out, as some loops do)."""
    quoted = original.data.decode()
    if redact:
        quoted = quoted.replace(original.recipient, "redacted@redacted")
    return (
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\r\n"
        f"To: {to}\r\n"
        "Subject: FW: Your digest\r\n"
        f"Date: {_date()}\r\n"
        "Message-ID: <arf-report-1@arf.mail.yahoo.com>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is an email abuse report for an email message received from IP 192.0.2.25.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\n"
        "User-Agent: Yahoo!-Mail-Feedback/2.0\r\n"
        "Version: 1\r\n"
        f"Original-Mail-From: <{original.envelope_sender}>\r\n"
        + ("" if redact else f"Original-Rcpt-To: <{original.recipient}>\r\n")
        + f"Arrival-Date: {_date()}\r\n"
        "Source-IP: 192.0.2.25\r\n"
        "Reported-Domain: news.example.org\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/rfc822\r\n"
        "Content-Disposition: inline\r\n\r\n" + quoted + "\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def unsubscribe_mail(original: Original, *, token: str | None = None, sender: str = "") -> bytes:
    """What a mail client sends for the message's List-Unsubscribe mailto."""
    return (
        f"From: {sender or original.recipient}\r\n"
        f"To: {original.unsubscribe_address}\r\n"
        f"Subject: unsubscribe {token or original.unsubscribe_token}\r\n"
        f"Date: {_date()}\r\n"
        "Message-ID: <unsubscribe-request-1@client.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "This message was sent automatically to unsubscribe.\r\n"
    ).encode()
