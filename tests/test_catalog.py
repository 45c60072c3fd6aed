"""The catalog: members streamed in batches read exactly what the ORM reads, topics kept fresh."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select

from digest import catalog
from digest.catalog import ensure_topics
from digest.db import session_scope
from digest.models import Subscriber, SubscriberTopic, Topic
from tests.random_store import orm_members, seed_random


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_member_batches_read_what_the_orm_reads(engine: Engine, batch_size: int) -> None:
    seed_random(engine, seed=batch_size)
    batches = list(catalog.member_batches(engine, batch_size))
    assert all(len(b) <= batch_size for b in batches)
    streamed = [m for b in batches for m in b]
    expected = orm_members(engine)
    assert len(expected) > 200 and any(not m.topics for m in expected)
    assert streamed == expected
    # Scattered members (read by IN, not by range) and members named by address.
    emails = [m.email for m in expected[::37]] + ["nobody@example.org"]
    named = [m for b in catalog.member_batches(engine, batch_size, emails=emails) for m in b]
    assert named == orm_members(engine, emails)
    with Session(engine) as session:
        rows = session.exec(select(Subscriber).where(col(Subscriber.email).in_(emails))).all()
        views = {m.id: m for m in catalog.member_views(session, list(rows))}
    assert [views[m.id] for m in named] == named
    # The sender's read by id (scattered and dense ids, unknown ids ignored), topics shared.
    topics = catalog.TopicSets()
    with engine.connect() as conn:
        for ids in ([m.id for m in expected[::37]] + [10**9], [m.id for m in expected[:50]]):
            by_id = catalog.members_by_id(conn, ids, topics)
            assert by_id == {m.id: m for m in expected if m.id in ids}


def test_member_batches_see_topics_added_or_renamed_between_batches(engine: Engine) -> None:
    """Each batch names topics as the store has them when it is read, as a join would."""
    seed_random(engine, seed=3)
    batches = catalog.member_batches(engine, 40)
    next(batches)
    with session_scope(engine) as session:
        apple = session.exec(select(Topic).where(Topic.slug == "apple")).one()
        apple.name = "Apples"
        session.add(apple)
        (new,) = ensure_topics(session, ["Brand new"])
        later = session.exec(
            select(Subscriber.id).where(Subscriber.status == "active").order_by(col(Subscriber.id))
        ).all()[-1]
        session.execute(insert(SubscriberTopic), [{"subscriber_id": later, "topic_id": new.id}])
    rest = [m for batch in batches for m in batch]
    assert rest == orm_members(engine)[40:]
    assert any("Apples" in m.topics for m in rest) and "Brand new" in rest[-1].topics


# ---------------------------------------------------------------- holds and retractions


def test_holds_and_retractions_decide_the_candidates(engine: Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlmodel import Session

    from digest import catalog
    from digest.db import session_scope
    from digest.ingest.records import ArticleRecord
    from digest.ingest.store import upsert_articles

    now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    records = [
        ArticleRecord(f"https://a.example/{n}", f"Article {n}", now - timedelta(hours=1), ("x",))
        for n in range(3)
    ]
    with session_scope(engine) as session:
        upsert_articles(session, records, now - timedelta(minutes=30))
    with Session(engine) as session:
        ids = sorted(a["url"] for a in catalog.list_articles(session))
        rows, total = catalog.search_articles(session, now)
    assert total == 3 and len(ids) == 3
    by_url = {r.url: r.id for r in rows}
    held, retracted = by_url["https://a.example/0"], by_url["https://a.example/1"]
    until = now + timedelta(days=1)
    with session_scope(engine) as session:
        catalog.hold_article(session, held, until, now)
        catalog.retract_article(session, retracted, now)
        with pytest.raises(catalog.ArticleChangeError):
            catalog.hold_article(session, retracted, until, now)
        with pytest.raises(catalog.ArticleChangeError):
            catalog.hold_article(session, held, now, now)
    with Session(engine) as session:
        today = {a.url for a in catalog.candidate_articles(session, now, now - timedelta(days=9))}
        later = catalog.candidate_articles(session, until, now - timedelta(days=9))
        assert catalog.search_articles(session, now, state=catalog.HELD)[1] == 1
        assert catalog.search_articles(session, now, state=catalog.RETRACTED)[1] == 1
        assert catalog.search_articles(session, now, query="article 2")[1] == 1
        unsent = catalog.articles_by_id(session, [held, retracted], retracted=False)
    assert today == {"https://a.example/2"}
    offered = {a.url: a.first_seen_at for a in later}
    assert offered == {
        "https://a.example/0": until,
        "https://a.example/2": now - timedelta(minutes=30),
    }
    assert set(unsent) == {held}
