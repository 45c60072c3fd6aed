"""A random store for the planning and catalog tests: articles, members, topics and a history."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select

from digest import ledger
from digest.catalog import ensure_topics
from digest.content import MemberView
from digest.db import session_scope
from digest.ingest import ArticleRecord, upsert_articles
from digest.models import Delivery, Subscriber, SubscriberTopic, Topic

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
