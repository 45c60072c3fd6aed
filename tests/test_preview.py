"""Previews: a member's next or recorded edition, or a set of topics, exactly as sending
would make it; nothing is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.editions import Editions
from digest.members import MemberNotFound
from digest.models import Delivery
from digest.plan import plan
from digest.preview import preview, upcoming
from digest.settings import Settings
from tests.test_web import NOW, seed


def test_a_member_preview_is_their_next_edition_and_writes_nothing(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    found = preview(engine, settings, Editions(settings), NOW, email="Ada@Example.org")
    assert found is not None
    assert [a.title for a in found.articles] == ["Stem cells repair a heart"]
    assert found.parsed["To"].addresses[0].addr_spec == "ada@example.org"
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []


def test_a_planned_edition_is_previewed_as_planned_and_a_recorded_one_again(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    assert plan(engine, settings, NOW, force=True).planned == 2
    with Session(engine) as session:
        row = session.exec(select(Delivery).where(Delivery.subscriber_id == 2)).one()
    later = NOW + timedelta(hours=1)
    pending = preview(engine, settings, Editions(settings), later, email="bob@example.org")
    assert pending is not None and pending.edition == row.edition
    assert pending.parsed["Message-ID"] == row.message_id  # the message it will be
    again = preview(
        engine, settings, Editions(settings), later, email="bob@example.org", edition=row.edition
    )
    assert again is not None and again.parsed["Message-ID"] == row.message_id
    with pytest.raises(LookupError):
        preview(engine, settings, Editions(settings), NOW, email="bob@example.org", edition="x")


def test_a_topic_set_preview_uses_a_stand_in_member(engine: Engine, settings: Settings) -> None:
    seed(engine)
    found = preview(engine, settings, Editions(settings), NOW, topics=["space", "Nervous System"])
    assert found is not None and found.member.id == 0
    assert {a.title for a in found.articles} == {
        "A new rover lands on Mars",
        "Nerves regrow in mice",
    }
    assert preview(engine, settings, Editions(settings), NOW, topics=["Nothing here"]) is None


def test_an_unknown_member_is_named(engine: Engine, settings: Settings) -> None:
    with pytest.raises(MemberNotFound, match="nobody@example.org"):
        preview(engine, settings, Editions(settings), NOW, email="nobody@example.org")


def test_the_upcoming_issue_counts_members_and_articles_per_topic(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    found = upcoming(engine, settings, NOW, None)
    assert {(c.name, c.members, c.articles) for c in found.counts} == {
        ("Stem Cells", 1, 1),
        ("Space", 1, 1),
    }
    only = upcoming(engine, settings, NOW, "SPACE")
    assert [i.email for i in only.items] == ["bob@example.org"]
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []
