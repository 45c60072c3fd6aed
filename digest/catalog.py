"""Read the store into plain views: articles by id, members streamed in batches by id.

Members are read with keyset pagination (``id > last``), never all at once, so planning a
million members holds one batch in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from digest.content import ArticleView, MemberView, MentionView
from digest.models import Article, ArticleTopic, Mention, Subscriber, SubscriberTopic, Topic

CHUNK = 500


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _topics_of(
    session: Session, owner: Any, topic_id: Any, ids: Sequence[int], order: Any
) -> dict[int, list[tuple[str, str]]]:
    """(name, slug) of each owner's topics, through a link table, in ``order``."""
    topics: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for chunk in _chunks(ids):
        rows = session.exec(
            select(owner, Topic.name, Topic.slug)
            .join(Topic, col(Topic.id) == topic_id)
            .where(owner.in_(chunk))
            .order_by(owner, order)
        )
        for owner_id, name, slug in rows:
            topics[owner_id].append((name, slug))
    return topics


def _article_views(session: Session, articles: Sequence[Article]) -> dict[int, ArticleView]:
    ids = [a.id for a in articles if a.id is not None]
    topics = _topics_of(
        session, col(ArticleTopic.article_id), col(ArticleTopic.topic_id), ids, col(Topic.id)
    )
    mentions: dict[int, list[MentionView]] = defaultdict(list)
    for chunk in _chunks(ids):
        for m in session.exec(
            select(Mention)
            .where(col(Mention.article_id).in_(chunk))
            .order_by(col(Mention.article_id), col(Mention.position))
        ):
            mentions[m.article_id].append(MentionView(m.name, m.description, m.url))
    views: dict[int, ArticleView] = {}
    for a in articles:
        assert a.id is not None
        pairs = topics.get(a.id, [])
        views[a.id] = ArticleView(
            id=a.id,
            url=a.url,
            title=a.title,
            published_at=a.published_at,
            first_seen_at=a.first_seen_at,
            key_points=tuple(a.key_points),
            topics=tuple(name for name, _ in pairs),
            topic_slugs=frozenset(slug for _, slug in pairs),
            mentions=tuple(mentions.get(a.id, [])),
            summary=a.summary,
            source=a.source,
            image_url=a.image_url,
        )
    return views


def candidate_articles(session: Session, now: datetime, oldest: datetime) -> list[ArticleView]:
    """Articles any member could get now: already seen, and published after ``oldest``."""
    articles = session.exec(
        select(Article).where(
            col(Article.first_seen_at) <= now, col(Article.published_at) >= oldest
        )
    ).all()
    return list(_article_views(session, articles).values())


def articles_by_id(session: Session, ids: Iterable[int]) -> dict[int, ArticleView]:
    wanted = sorted(set(ids))
    found: list[Article] = []
    for chunk in _chunks(wanted):
        found.extend(session.exec(select(Article).where(col(Article.id).in_(chunk))).all())
    return _article_views(session, found)


def member_views(session: Session, members: Sequence[Subscriber]) -> list[MemberView]:
    ids = [m.id for m in members if m.id is not None]
    topics = _topics_of(
        session,
        col(SubscriberTopic.subscriber_id),
        col(SubscriberTopic.topic_id),
        ids,
        col(Topic.name),
    )
    views = []
    for m in members:
        assert m.id is not None
        pairs = topics.get(m.id, [])
        views.append(
            MemberView(
                id=m.id,
                email=m.email,
                name=m.name,
                status=m.status,
                frequency=m.frequency,
                timezone=m.timezone,
                send_hour=m.send_hour,
                topics=tuple(n for n, _ in pairs),
                topic_slugs=frozenset(s for _, s in pairs),
                created_at=m.created_at,
            )
        )
    return views


def member_batches(
    engine: Engine,
    batch_size: int,
    statuses: Sequence[str] = ("active",),
    emails: Sequence[str] | None = None,
) -> Iterator[list[MemberView]]:
    """Members in id order, ``batch_size`` at a time, each batch read in its own short session."""
    last_id = 0
    while True:
        with Session(engine) as session:
            query = select(Subscriber).where(
                col(Subscriber.id) > last_id, col(Subscriber.status).in_(statuses)
            )
            if emails is not None:
                query = query.where(col(Subscriber.email).in_([e.lower() for e in emails]))
            rows = session.exec(query.order_by(col(Subscriber.id)).limit(batch_size)).all()
            if not rows:
                return
            last_id = rows[-1].id or last_id
            views = member_views(session, rows)
        yield views
