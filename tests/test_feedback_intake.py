"""The intake on real digests (sent through the real sender), on SQLite and PostgreSQL:
what a returned message is about, recorded once, and its effect on the member."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from digest import brake, ledger
from digest.clock import fixed_clock
from digest.feedback import store
from digest.feedback.intake import Incoming, Intake
from digest.members import get_member
from digest.models import COMPLAINT, HARD_BOUNCE, UNCLASSIFIED, UNSUBSCRIBE
from digest.plan import plan
from digest.settings import Settings
from tests.conftest import SMTPServer
from tests.returned_mail import (
    BOUNCE_ADDRESS,
    NOW,
    Original,
    arf,
    dsn,
    feedback_settings,
    qmail_bounce,
    send_digests,
    unsubscribe_mail,
)


def status(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return member.status


def events(engine: Engine) -> list[store.EventRow]:
    with Session(engine) as session:
        return store.list_events(session, limit=None)


@pytest.fixture
def fs(settings: Settings) -> Settings:
    return feedback_settings(settings)


def intake_at(engine: Engine, fs: Settings, when: datetime = NOW) -> Intake:
    return Intake(engine, fs, fixed_clock(when + timedelta(hours=1)))


def test_digests_carry_a_verp_return_path(engine: Engine, fs: Settings, smtp_server: SMTPServer):
    sent = send_digests(engine, fs, smtp_server, 3)
    assert len(sent) == 3
    for received in sent:
        local, _, domain = received.mail_from.partition("@")
        assert domain == "bounce.news.example.org" and local.startswith("bounces+")
        # From stays the From address: DKIM and DMARC alignment do not change
        assert received.message["From"].addresses[0].addr_spec == "digest@news.example.org"
    assert len({r.mail_from for r in sent}) == 3


def test_hard_bounce_by_verp_once(engine: Engine, fs: Settings, smtp_server: SMTPServer) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 3)[1])
    intake = intake_at(engine, fs)
    raw = dsn(original, quote="none")  # a mangled DSN: only the VERP names the delivery
    recorded = intake.receive_mail(raw, "smtp", [original.envelope_sender])
    assert recorded.kind == HARD_BOUNCE and recorded.effect == "member bounced"
    assert status(engine, original.recipient) == "bounced"
    (event,) = events(engine)
    assert event.delivery_id == recorded.delivery_id and event.email == original.recipient
    assert event.status_code == "5.1.1" and "550 5.1.1" in (event.diagnostic or "")
    assert event.raw_ref and Path(event.raw_ref).read_bytes() == raw  # kept as received
    with Session(engine) as session:
        (row,) = ledger.list_deliveries(session, delivery_id=recorded.delivery_id)
    assert [e.kind for e in row.events] == [HARD_BOUNCE]
    # the same message again (an MTA that missed our 250): recorded once, no second effect
    again = intake.receive_mail(raw, "smtp", [original.envelope_sender])
    assert again.duplicate and len(events(engine)) == 1
    # the other members are untouched
    assert {status(engine, f"m00{i}@example.org") for i in (0, 2)} == {"active"}


def test_forged_verp_token_changes_nothing(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[0])
    local, _, domain = original.envelope_sender.partition("@")
    forged = f"{local.split('-')[0]}-{'a' * 20}@{domain}"
    for quote in ("headers", "message"):  # even with the real Message-ID quoted in it
        raw = dsn(original, to=forged, quote=quote)
        recorded = intake_at(engine, fs).receive_mail(raw, "smtp", [forged])
        assert "does not verify" in recorded.effect and not recorded.changed_member
    assert status(engine, original.recipient) == "active"
    assert all(e.delivery_id is None and e.kind == HARD_BOUNCE for e in events(engine))


def test_bounce_without_verp_is_matched_by_its_message_id(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    original = Original.of(send_digests(engine, fs, smtp_server, 2)[0])
    recorded = intake_at(engine, fs).receive_mail(qmail_bounce(original, to=BOUNCE_ADDRESS), "imap")
    assert recorded.kind == HARD_BOUNCE and recorded.changed_member
    assert status(engine, original.recipient) == "bounced"
    # a bounce that names the member's address only (no token, no Message-ID): not trusted
    stranger = Original(BOUNCE_ADDRESS, "m001@example.org", b"Subject: x\r\n\r\nbody\r\n")
    other = intake_at(engine, fs).receive_mail(dsn(stranger, to=BOUNCE_ADDRESS), "smtp")
    assert not other.changed_member and status(engine, "m001@example.org") == "active"


def test_soft_bounces_on_three_editions_within_30_days(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    who = "m000@example.org"
    effects = []
    for day in range(3):
        sent = send_digests(engine, fs, smtp_server, 2, day=day)
        original = Original.of(next(r for r in sent if r.rcpt_tos == [who]))
        intake = intake_at(engine, fs, NOW + timedelta(days=day))
        raw = dsn(original, status="4.2.2", diagnostic=f"smtp; 452 4.2.2 mailbox full ({day})")
        effects.append(intake.receive_mail(raw, "smtp", [original.envelope_sender]).effect)
        if day < 2:
            # a second notice about the same message is not a second edition
            later = raw.replace(b"mailbox full", b"mailbox still full")
            again = intake.receive_mail(later, "smtp", [original.envelope_sender])
            assert again.effect.startswith(f"counted: {day + 1} of 3")
            assert status(engine, who) == "active"
    assert effects[0].startswith("counted: 1 of 3") and effects[1].startswith("counted: 2 of 3")
    assert effects[2].startswith("member bounced (3 soft bounces")
    assert status(engine, who) == "bounced"
    assert status(engine, "m001@example.org") == "active"


def test_soft_bounces_older_than_the_window_do_not_add_up(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    who = "m000@example.org"
    for n, day in enumerate((0, 31, 62)):
        sent = send_digests(engine, fs, smtp_server, 1, day=day)
        original = Original.of(sent[0])
        recorded = intake_at(engine, fs, NOW + timedelta(days=day)).receive_mail(
            dsn(original, status="4.4.7"), "smtp", [original.envelope_sender]
        )
        assert recorded.effect.startswith("counted: 1 of 3"), (n, recorded.effect)
    assert status(engine, who) == "active"


def test_complaint_unsubscribes_and_suppresses(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    sent = send_digests(engine, fs, smtp_server, 3)
    original = Original.of(sent[0])
    recorded = intake_at(engine, fs).receive_mail(arf(original, redact=True), "smtp")
    assert recorded.kind == COMPLAINT and recorded.effect == "member unsubscribed"
    assert status(engine, original.recipient) == "unsubscribed"
    # never planned again
    report = plan(engine, fs, NOW + timedelta(days=1), dry_run=True)
    assert original.recipient not in {item.email for item in report.items}
    assert len(report.items) == 2


def test_unsubscribe_by_mail(engine: Engine, fs: Settings, smtp_server: SMTPServer) -> None:
    sent = send_digests(engine, fs, smtp_server, 2)
    original = Original.of(sent[1])
    assert original.unsubscribe_address == "unsubscribe@news.example.org"
    forged = intake_at(engine, fs).receive_mail(
        unsubscribe_mail(original, token=original.unsubscribe_token[:-4] + "AAAA"), "smtp"
    )
    assert forged.kind == UNSUBSCRIBE and "does not verify" in forged.effect
    assert status(engine, original.recipient) == "active"
    recorded = intake_at(engine, fs).receive_mail(unsubscribe_mail(original), "smtp")
    assert recorded.effect == "member unsubscribed"
    assert status(engine, original.recipient) == "unsubscribed"
    with Session(engine) as session:
        member = get_member(session, original.recipient)
        assert member is not None and "unsubscribe request" in (member.status_reason or "")


def test_unclassified_mail_is_kept_and_counted(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    send_digests(engine, fs, smtp_server, 1)
    raw = b"From: someone@example.net\r\nSubject: hello\r\n\r\nIs this the right address?\r\n"
    recorded = intake_at(engine, fs).receive_mail(raw, "smtp", [BOUNCE_ADDRESS])
    assert recorded.kind == UNCLASSIFIED and recorded.raw_ref
    assert Path(recorded.raw_ref).read_bytes() == raw
    with Session(engine) as session:
        assert store.event_counts(session)[UNCLASSIFIED] == 1


def test_provider_event_trusts_the_recipient(
    engine: Engine, fs: Settings, smtp_server: SMTPServer
) -> None:
    send_digests(engine, fs, smtp_server, 2)
    intake = intake_at(engine, fs)
    event = Incoming(
        kind=HARD_BOUNCE,
        source="postmark",
        event_key="postmark:Bounce:1",
        recipient="M001@Example.org",
        trusted_recipient=True,
    )
    assert intake.record(event).changed_member
    assert status(engine, "m001@example.org") == "bounced"
    assert intake.record(event).duplicate


def test_complaints_engage_the_brake(engine: Engine, fs: Settings, smtp_server: SMTPServer) -> None:
    sent = send_digests(engine, fs, smtp_server, 5)
    intake_at(engine, fs).receive_mail(arf(Original.of(sent[0])), "smtp")
    with Session(engine) as session:
        state = brake.state(session)
    assert state.paused and "complaint rate 20.00% (1 of the last 5" in (state.reason or "")
