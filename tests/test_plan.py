"""Planning at scale gives what the simple definitions give, on a random store.

``plan`` reads members as plain rows in id ranges and selects through ``CandidateIndex``;
here both are checked against the straightforward versions (ORM reads, the full scan of
``select_articles``) on members with every kind of history, zone, rhythm and topic set.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select

from digest import catalog, ledger
from digest import plan as planning
from digest.catalog import ensure_topics
from digest.content import ArticleView, MemberView
from digest.db import session_scope
from digest.ingest import ArticleRecord, upsert_articles
from digest.models import Delivery, Subscriber, SubscriberTopic, Topic
from digest.selection import Limits, select_articles
from digest.settings import Settings

NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
TOPICS = ["apple", "Banana", "Ökologie", "zebra", "Space", "Stem Cells", "space probes", "Z"]
ZONES = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Auckland"]


def seed_random(engine: Engine, seed: int, members: int = 300) -> list[int]:
    """Articles first seen over ten days, members of every kind, and some past editions."""
    rng = random.Random(seed)
    with session_scope(engine) as session:
        ensure_topics(session, TOPICS)
        for batch in range(12):
            seen = NOW - timedelta(hours=rng.uniform(0, 24 * 10))
            records = [
                ArticleRecord(
                    url=f"https://archive.example.org/{batch}/{i}",
                    title=f"Article {batch}.{i}",
                    published_at=seen - timedelta(hours=rng.choice([0, 1, 5, 24 * 35])),
                    key_points=("A point.",),
                    topics=tuple(rng.sample(TOPICS, rng.choice([0, 1, 1, 2, 3]))),
                )
                for i in range(rng.randint(3, 20))
            ]
            upsert_articles(session, records, seen)
        topic_ids = [t.id for t in session.exec(select(Topic)).all()]
        rows = [
            {
                "email": f"m{i:04d}@example.org",
                "name": f"Member {i}",
                "status": rng.choice(["active"] * 8 + ["paused", "unsubscribed"]),
                "frequency": rng.choice(["daily", "weekly"]),
                "timezone": rng.choice(ZONES),
                "send_hour": rng.randrange(24),
                "created_at": NOW - timedelta(hours=rng.choice([1, 5, 30, 24 * 40])),
                "updated_at": NOW,
            }
            for i in range(members)
        ]
        session.execute(insert(Subscriber), rows)
        ids = list(session.exec(select(Subscriber.id).order_by(col(Subscriber.id))).all())
        links = [
            {"subscriber_id": m, "topic_id": t}
            for m in ids
            for t in rng.sample(topic_ids, rng.choice([0, 1, 2, 3, 5]))
        ]
        session.execute(insert(SubscriberTopic), links)
        past = []
        for m in rng.sample(ids, len(ids) // 2):
            end = NOW - timedelta(hours=rng.uniform(1, 24 * 8))
            due = end - timedelta(minutes=rng.choice([0, 30]))
            edition = f"daily:{due.date().isoformat()}"
            past.append(ledger.PlannedRow(m, edition, "planned", due, end - timedelta(1), end, ()))
        ledger.insert_rows(session, past, "example.org", NOW - timedelta(days=8))
        for d in session.exec(select(Delivery)).all():
            d.status = rng.choice(["planned", "sent", "sent", "failed", "skipped"])
            session.add(d)
    return ids


def orm_members(engine: Engine, emails: list[str] | None = None) -> list[MemberView]:
    """Active members read the obvious way: ORM rows, and a join for each member's topics."""
    with Session(engine) as session:
        query = select(Subscriber).where(Subscriber.status == "active")
        if emails is not None:
            query = query.where(col(Subscriber.email).in_(emails))
        members = session.exec(query.order_by(col(Subscriber.id))).all()
        topics: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for member_id, name, slug in session.exec(
            select(SubscriberTopic.subscriber_id, Topic.name, Topic.slug)
            .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
            .order_by(col(SubscriberTopic.subscriber_id), col(Topic.name), col(Topic.id))
        ):
            topics[member_id].append((name, slug))
        return [
            MemberView(
                id=m.id or 0,
                email=m.email,
                name=m.name,
                status=m.status,
                frequency=m.frequency,
                timezone=m.timezone,
                send_hour=m.send_hour,
                topics=tuple(n for n, _ in topics[m.id or 0]),
                topic_slugs=frozenset(s for _, s in topics[m.id or 0]),
                created_at=m.created_at,
            )
            for m in members
        ]


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


class ScanIndex:
    """``CandidateIndex``'s interface over the plain scan: the definition of a selection."""

    def __init__(self, candidates: list[ArticleView]) -> None:
        self.candidates = list(candidates)

    def select(
        self, member: MemberView, start: datetime, end: datetime, now: datetime, limits: Limits
    ) -> tuple[ArticleView, ...]:
        return select_articles(member, self.candidates, start, end, now, limits)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_plan_selects_what_the_scan_selects(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch, force: bool, seed: int
) -> None:
    seed_random(engine, seed)
    settings = settings.replace(batch_size=50, max_items=4)
    reports: list[Any] = []
    for index in (planning.CandidateIndex, ScanIndex):
        monkeypatch.setattr(planning, "CandidateIndex", index)
        for now in (NOW, NOW + timedelta(hours=9)):
            reports.append(planning.plan(engine, settings, now, dry_run=True, force=force))
    indexed, scanned = reports[:2], reports[2:]
    assert indexed == scanned
    items = [item for report in indexed for item in report.items]
    assert sum(report.planned for report in indexed) > 30
    sizes = {len(item.articles) for item in items}
    assert 4 in sizes and sizes & {1, 2, 3}  # capped selections and short ones
    if not force:
        assert sum(r.not_due + r.too_soon + r.skipped_stale for r in indexed) > 0


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
