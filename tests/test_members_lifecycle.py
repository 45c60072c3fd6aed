"""The membership lifecycle without HTTP: request, confirm, preferences, unsubscribe.

``Membership`` is driven directly with a real store and a real SMTP server on loopback, as the
web pages drive it; the mails it sends leave through the outbound door, DKIM-signed like digests.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from digest.db import session_scope
from digest.dkim import verify
from digest.editions import Editions
from digest.mailer import SMTPTransport
from digest.members import (
    MemberRecord,
    Membership,
    SuppressedMember,
    add_member,
    get_member,
    parse_profile,
    rules,
)
from digest.outbound import Outbound
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenSigner
from tests.conftest import SMTPServer
from tests.test_dkim import make_key

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
OFFERED = {"space": "Space", "stem cells": "Stem Cells"}


def membership(engine: Engine, settings: Settings, at: list[datetime] | None = None) -> Membership:
    clock = at or [NOW]
    editions = Editions(settings)
    outbound = Outbound(editions, lambda: SMTPTransport.from_settings(settings))
    return Membership(
        engine, settings, TokenSigner(settings.secret_key), outbound, lambda: clock[-1]
    )


def form(**values: str) -> dict[str, str]:
    return {"name": "", "frequency": "", "timezone": "", "send_hour": "", **values}


def confirm_link(smtp_server: SMTPServer, email: str) -> tuple[str, str]:
    """(token, sealed profile) from the last confirmation mail to ``email``."""
    mail = smtp_server.handler.to(email)[-1].message
    text = mail.get_body(("plain",)).get_content()
    url = re.search(r"https://\S+/confirm/\S+", text)
    assert url is not None, text
    parts = urlsplit(url.group(0))
    return parts.path.rsplit("/", 1)[1], parse_qs(parts.query)["p"][0]


def test_a_time_zone_is_validated_once_and_keeps_its_shape_to_the_row(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every validation of a zone ends in rules' ZoneInfo, however parse_timezone is reached
    calls: list[str] = []
    real = rules.ZoneInfo

    def counting(key: str) -> ZoneInfo:
        calls.append(key)
        return real(key)

    monkeypatch.setattr(rules, "ZoneInfo", counting)
    record, errors = parse_profile(
        form(email="Zoe@Example.org", timezone="europe/london", send_hour="6", frequency="Weekly"),
        ["space"],
        OFFERED,
    )
    assert errors == [] and isinstance(record, MemberRecord)
    assert record.timezone == "Europe/London"  # the tz database's spelling, from here on
    life = membership(engine, settings)
    assert life.request(record).kind == "confirm"
    token, sealed = confirm_link(smtp_server, "zoe@example.org")
    # the sealed link carries the record itself, not a form to parse again
    assert life.unseal(token, sealed, "zoe@example.org") == record
    view = life.confirm(token, sealed)
    assert calls == ["Europe/London"]  # validated once, on the way in
    assert (view.status, view.timezone, view.send_hour, view.frequency) == (
        "active",
        "Europe/London",
        6,
        "weekly",
    )
    with Session(engine) as session:
        row = get_member(session, "zoe@example.org")
        assert row is not None and row.timezone == "Europe/London"


def test_a_subscribed_member_gets_a_preferences_link_and_nothing_changes(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    with session_scope(engine) as session:
        add_member(session, MemberRecord("ann@example.org", "Ann", ("Space",)), NOW)
    life = membership(engine, settings)
    asked = MemberRecord("ann@example.org", "Mallory", ("Stem Cells",), "weekly")
    assert life.request(asked).kind == "preferences"
    [mail] = smtp_server.handler.to("ann@example.org")
    assert "/preferences/" in mail.message.get_body(("plain",)).get_content()
    with Session(engine) as session:
        row = get_member(session, "ann@example.org")
        assert row is not None and (row.name, row.frequency) == ("Ann", "daily")


def test_confirmation_mail_is_dkim_signed_and_verifies(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    key, txt = make_key(tmp_path)
    signed = settings.replace(dkim_selector="s2026", dkim_private_key_path=str(key))
    life = membership(engine, signed)
    record = MemberRecord("zoe@example.org", topics=("Space",))
    assert life.request(record).sent
    [mail] = smtp_server.handler.to("zoe@example.org")
    assert b"DKIM-Signature:" in mail.data
    assert verify(mail.data, txt)
    # and the "already subscribed" notice leaves through the same door
    token, sealed = confirm_link(smtp_server, "zoe@example.org")
    life.confirm(token, sealed)
    assert life.request(record).kind == "preferences"
    notice = smtp_server.handler.to("zoe@example.org")[-1]
    assert verify(notice.data, txt)


def test_preferences_pause_resume_save_and_unsubscribe(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    with session_scope(engine) as session:
        added = add_member(session, MemberRecord("bo@example.org", "Bo", ("Space",)), NOW)
    life = membership(engine, settings)
    token = life.signer.make(added.member.id, "bo@example.org", "preferences", NOW)
    assert life.change(token, "pause") == "paused"
    assert life.preferences(token).status == "paused"
    assert life.change(token, "resume") == "resumed"
    # the link decides whose preferences change, whatever address the record names
    other = MemberRecord("mallory@example.org", "", ("Stem Cells",), "weekly", "Asia/Tokyo", 5)
    assert life.change(token, "save", other) == "saved"
    view = life.preferences(token)
    assert (view.topics, view.frequency, view.timezone, view.send_hour) == (
        ("Stem Cells",),
        "weekly",
        "Asia/Tokyo",
        5,
    )
    with Session(engine) as session:
        assert get_member(session, "mallory@example.org") is None
    assert life.change(token, "unsubscribe") == "unsubscribed"
    with pytest.raises(SuppressedMember):
        life.change(token, "resume")


def test_a_confirm_link_older_than_an_unsubscribe_does_not_undo_it(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    clock = [NOW]
    life = membership(engine, settings, clock)
    record = MemberRecord("cy@example.org", topics=("Space",))
    life.request(record)
    token, sealed = confirm_link(smtp_server, "cy@example.org")
    life.confirm(token, sealed)
    clock.append(NOW + timedelta(hours=1))
    with Session(engine) as session:
        row = get_member(session, "cy@example.org")
        assert row is not None and row.id is not None
    unsubscribe = life.signer.make(row.id, "cy@example.org", "unsubscribe", NOW)
    assert life.unsubscribe(unsubscribe, "test").status == "unsubscribed"
    clock.append(NOW + timedelta(hours=2))
    with pytest.raises(InvalidToken):
        life.confirm(token, sealed)
    with Session(engine) as session:
        row = get_member(session, "cy@example.org")
        assert row is not None and row.status == "unsubscribed"


def test_an_altered_or_borrowed_profile_is_refused(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    life = membership(engine, settings)
    for email in ("a@example.org", "b@example.org"):
        life.request(MemberRecord(email, topics=("Space",)))
    token_a, sealed_a = confirm_link(smtp_server, "a@example.org")
    token_b, sealed_b = confirm_link(smtp_server, "b@example.org")
    flipped = sealed_a[:-3] + ("A" if sealed_a[-3] != "A" else "B") + sealed_a[-2:]
    for token, sealed in ((token_a, flipped), (token_a, sealed_b), (token_b, sealed_a)):
        with pytest.raises(InvalidToken):
            life.confirm(token, sealed)
    with Session(engine) as session:
        for email in ("a@example.org", "b@example.org"):
            row = get_member(session, email)
            assert row is not None and row.status == "pending"
