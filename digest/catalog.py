"""Read the store into plain views: articles by id, members streamed in batches by id.

Members are read with keyset pagination (``id > last``), never all at once, so planning a
million members holds one batch in memory.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, or_, text
from sqlmodel import Session, col, func, select

from digest.content import ArticleView, MemberView, MentionView
from digest.db import chunks as _chunks
from digest.db import dense_range, driver_params, driver_statement, id_filters
from digest.models import (
    ACTIVE,
    Article,
    ArticleTopic,
    Mention,
    Resource,
    Subscriber,
    SubscriberResource,
    SubscriberTopic,
    Topic,
)
from digest.topics import clean_topic_name, topic_length_problem, topic_slug, unique_topics


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
        for m, slug, resource_name in session.exec(
            select(Mention, Resource.slug, Resource.name)
            .outerjoin(Resource, col(Resource.id) == col(Mention.resource_id))
            .where(col(Mention.article_id).in_(chunk))
            .order_by(col(Mention.article_id), col(Mention.position))
        ):
            listed = mentions[m.article_id]
            if m.resource_id is not None and any(v.resource_id == m.resource_id for v in listed):
                continue  # two names merged into one resource: listed once
            listed.append(
                MentionView(
                    resource_name or m.name, m.description, m.url, slug or "", m.resource_id
                )
            )
    views: dict[int, ArticleView] = {}
    for a in articles:
        assert a.id is not None
        pairs = topics.get(a.id, [])
        views[a.id] = ArticleView(
            id=a.id,
            url=a.url,
            title=a.title,
            published_at=a.published_at,
            first_seen_at=offered_from(a),
            key_points=tuple(a.key_points),
            topics=tuple(name for name, _ in pairs),
            topic_slugs=frozenset(slug for _, slug in pairs),
            mentions=tuple(mentions.get(a.id, [])),
            summary=a.summary,
            source=a.source,
            image_url=a.image_url,
            resource_ids=frozenset(
                m.resource_id for m in mentions.get(a.id, ()) if m.resource_id is not None
            ),
        )
    return views


#: PostgreSQL advisory lock key that ingest and planning's candidate read take turns on.
ARTICLES_LOCK = 0x6469676573740002


def lock_articles(session: Session) -> None:
    """Ingest and a plan's reading of candidates take turns.

    An article is stamped first seen at ``now``; a plan closes members' windows at its own
    ``now``. Were an article stamped before a plan's ``now`` but committed after the plan read
    its candidates, it would fall outside every window and reach nobody. Taking turns, and
    the ingest reading its clock only once it holds the turn, every article is either seen by
    the plan or stamped after it. SQLite: the transaction's BEGIN IMMEDIATE (write lock);
    PostgreSQL: a transaction-scoped advisory lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ARTICLES_LOCK})
    else:
        session.connection()  # begins the transaction: BEGIN IMMEDIATE


def offered_from(article: Article) -> datetime:
    """When an article is first offered: when first seen, or when an editor's hold ends.

    Selection takes articles by this instant, so a held article falls into the window of
    the first edition after its hold (members' earlier windows never saw it).
    """
    if article.held_until is not None and article.held_until > article.first_seen_at:
        return article.held_until
    return article.first_seen_at


def candidate_articles(session: Session, now: datetime, oldest: datetime) -> list[ArticleView]:
    """Articles any member could get now: already seen and not held past ``now``, not
    retracted, and published after ``oldest``."""
    articles = session.exec(
        select(Article).where(on_show(now), col(Article.published_at) >= oldest)
    ).all()
    return list(_article_views(session, articles).values())


def articles_by_id(
    session: Session, ids: Iterable[int], *, retracted: bool = True
) -> dict[int, ArticleView]:
    """Views of these articles; ``retracted=False`` leaves out retracted ones (what is about
    to be sent never carries an article an editor retracted after it was planned)."""
    wanted = sorted(set(ids))
    found: list[Article] = []
    for chunk in _chunks(wanted):
        query = select(Article).where(col(Article.id).in_(chunk))
        if not retracted:
            query = query.where(col(Article.retracted_at).is_(None))
        found.extend(session.exec(query).all())
    return _article_views(session, found)


MemberTopics = tuple[tuple[str, ...], frozenset[str]]  # display names (by name), slugs
#: Distinct topic sets remembered before the memo starts afresh (bounds memory).
_TOPIC_SETS = 8192


class TopicSets:
    """Members' topics from the link table, named from the small topic table read per batch.

    Members who follow the same topics share one (names, slugs) pair, so a batch costs no
    join and no per-member tuples, and selection's memo finds equal keys by identity.
    Names are ordered as the store orders them (its collation), as a join would.
    """

    def __init__(self, max_age: float = 0.0) -> None:
        self._topics: dict[int, tuple[int, str, str]] = {}  # id -> (name order, name, slug)
        self._sets: dict[tuple[int, ...], MemberTopics] = {}
        self._max_age = max_age  # seconds a read of the topic table is trusted (0: none)
        self._read_at = float("-inf")

    def _refresh(self, conn: Connection, seen: Iterable[int]) -> None:
        """Read the topic table if it is older than ``max_age`` or lacks a topic ``seen``;
        shared sets are rebuilt only if a topic was added or renamed."""
        now = time.monotonic()
        if now - self._read_at < self._max_age and all(t in self._topics for t in seen):
            return
        self._read_at = now
        rows = conn.execute(
            select(Topic.id, Topic.name, Topic.slug).order_by(col(Topic.name), col(Topic.id))
        )
        topics = {tid: (i, name, slug) for i, (tid, name, slug) in enumerate(rows)}
        if topics != self._topics:
            self._topics = topics
            self._sets.clear()

    def of_members(self, conn: Connection, member_ids: Sequence[int]) -> dict[int, MemberTopics]:
        """Each member's topics; members without topics are absent."""
        wanted = set(member_ids)
        links: dict[int, list[int]] = defaultdict(list)
        owner = col(SubscriberTopic.subscriber_id)
        span = dense_range(sorted(wanted))
        if span is not None:  # a batch's usual case: plain integer pairs, read on the driver
            found = _driver_rows(conn, _LINKS_IN_RANGE, {"lo": span[0], "hi": span[1]})
        else:
            found = _rows_for_ids(conn, _LINKS, _LINKS_IN_RANGE, owner, wanted)
        for member_id, topic_id in found:
            if member_id in wanted:
                links[member_id].append(topic_id)
        self._refresh(conn, {t for ids in links.values() for t in ids})
        return {member_id: self._set(tuple(sorted(ids))) for member_id, ids in links.items()}

    def _set(self, topic_ids: tuple[int, ...]) -> MemberTopics:
        found = self._sets.get(topic_ids)
        if found is None:
            if len(self._sets) >= _TOPIC_SETS:
                self._sets.clear()
            ordered = sorted(self._topics[t] for t in topic_ids)
            found = (tuple(name for _, name, _ in ordered), frozenset(s for _, _, s in ordered))
            self._sets[topic_ids] = found
        return found


_NO_TOPICS: MemberTopics = ((), frozenset())
_NO_RESOURCES: frozenset[int] = frozenset()


class ResourceSets:
    """Members' followed resources (ids) from the link table, equal sets shared."""

    def __init__(self) -> None:
        self._sets: dict[tuple[int, ...], frozenset[int]] = {}

    def of_members(self, conn: Connection, member_ids: Sequence[int]) -> dict[int, frozenset[int]]:
        """Each member's followed resources; members following none are absent."""
        wanted = set(member_ids)
        links: dict[int, list[int]] = defaultdict(list)
        owner = col(SubscriberResource.subscriber_id)
        span = dense_range(sorted(wanted))
        if span is not None:
            found = _driver_rows(conn, _FOLLOWS_IN_RANGE, {"lo": span[0], "hi": span[1]})
        else:
            found = _rows_for_ids(conn, _FOLLOWS, _FOLLOWS_IN_RANGE, owner, wanted)
        for member_id, resource_id in found:
            if member_id in wanted:
                links[member_id].append(resource_id)
        out: dict[int, frozenset[int]] = {}
        for member_id, ids in links.items():
            key = tuple(sorted(ids))
            shared = self._sets.get(key)
            if shared is None:
                if len(self._sets) >= _TOPIC_SETS:
                    self._sets.clear()
                shared = self._sets[key] = frozenset(key)
            out[member_id] = shared
        return out


_MEMBER_COLUMNS = (
    col(Subscriber.id),
    col(Subscriber.email),
    col(Subscriber.name),
    col(Subscriber.status),
    col(Subscriber.frequency),
    col(Subscriber.timezone),
    col(Subscriber.send_hour),
    col(Subscriber.created_at),
)


_MEMBERS = select(*_MEMBER_COLUMNS)
_MEMBERS_IN_RANGE = _MEMBERS.where(col(Subscriber.id).between(bindparam("lo"), bindparam("hi")))
_LINKS = select(col(SubscriberTopic.subscriber_id), col(SubscriberTopic.topic_id))
_LINKS_IN_RANGE = _LINKS.where(
    col(SubscriberTopic.subscriber_id).between(bindparam("lo"), bindparam("hi"))
)
_FOLLOWS = select(col(SubscriberResource.subscriber_id), col(SubscriberResource.resource_id))
_FOLLOWS_IN_RANGE = _FOLLOWS.where(
    col(SubscriberResource.subscriber_id).between(bindparam("lo"), bindparam("hi"))
)


@lru_cache(maxsize=16)
def _driver_sql(statement: Any, dialect: Any) -> tuple[str, tuple[str, ...] | None]:
    return driver_statement(statement, dialect)


def _driver_rows(conn: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    """``statement``'s rows straight from the driver's cursor, compiled once per dialect.

    Only for columns that need no conversion (integers): planning reads several link rows per
    member, and SQLAlchemy's result rows cost more than the query itself.
    """
    sql, order = _driver_sql(statement, conn.dialect)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, driver_params(order, params))
        return cursor.fetchall()
    finally:
        cursor.close()


def _rows_for_ids(
    conn: Connection, query: Any, in_range: Any, column: Any, wanted: set[int]
) -> list[Any]:
    """Rows of ``query`` for ``wanted`` ids of ``column`` (a range may bring a few others:
    callers keep theirs). Dense ids, a batch's usual case, are one read with ``in_range``,
    the query built once with ``lo`` and ``hi`` parameters; scattered ids go in IN chunks."""
    span = dense_range(sorted(wanted))
    if span is not None:
        return conn.execute(in_range, {"lo": span[0], "hi": span[1]}).all()
    return [
        r for condition in id_filters(column, wanted) for r in conn.execute(query.where(condition))
    ]


def _view(row: Any, topics: MemberTopics, resources: frozenset[int] = _NO_RESOURCES) -> MemberView:
    member_id, email, name, status, frequency, timezone, send_hour, created_at = row
    return MemberView(
        id=member_id,
        email=email,
        name=name,
        status=status,
        frequency=frequency,
        timezone=timezone,
        send_hour=send_hour,
        topics=topics[0],
        topic_slugs=topics[1],
        created_at=created_at,
        resource_ids=resources,
    )


def member_views(session: Session, members: Sequence[Subscriber]) -> list[MemberView]:
    ids = [m.id for m in members if m.id is not None]
    topics = TopicSets().of_members(session.connection(), ids)
    follows = ResourceSets().of_members(session.connection(), ids)
    views = []
    for m in members:
        assert m.id is not None
        row = (m.id, m.email, m.name, m.status, m.frequency, m.timezone, m.send_hour)
        views.append(
            _view(
                (*row, m.created_at),
                topics.get(m.id, _NO_TOPICS),
                follows.get(m.id, _NO_RESOURCES),
            )
        )
    return views


def members_by_id(
    conn: Connection,
    ids: Iterable[int],
    topics: TopicSets | None = None,
    resources: ResourceSets | None = None,
) -> dict[int, MemberView]:
    """Members by id as plain rows (any status), for the sender's claimed deliveries."""
    wanted = set(ids)
    found: dict[int, MemberView] = {}
    found_rows = _rows_for_ids(conn, _MEMBERS, _MEMBERS_IN_RANGE, col(Subscriber.id), wanted)
    rows = [r for r in found_rows if r[0] in wanted]
    member_ids = [r[0] for r in rows]
    member_topics = (topics or TopicSets()).of_members(conn, member_ids)
    follows = (resources or ResourceSets()).of_members(conn, member_ids)
    for row in rows:
        found[row[0]] = _view(
            row, member_topics.get(row[0], _NO_TOPICS), follows.get(row[0], _NO_RESOURCES)
        )
    return found


def member_batches(
    engine: Engine,
    batch_size: int,
    statuses: Sequence[str] = (ACTIVE,),
    emails: Sequence[str] | None = None,
) -> Iterator[list[MemberView]]:
    """Members in id order, ``batch_size`` at a time, each batch read in its own short session.

    Plain rows, not ORM objects: a million members are planned, never modified here.
    """
    topics = TopicSets()
    resources = ResourceSets()
    last_id = 0
    while True:
        with engine.connect() as conn:
            query = select(*_MEMBER_COLUMNS).where(
                col(Subscriber.id) > last_id, col(Subscriber.status).in_(statuses)
            )
            if emails is not None:  # as stored (``members.lookup_emails`` gives the forms)
                query = query.where(col(Subscriber.email).in_(list(emails)))
            rows = conn.execute(query.order_by(col(Subscriber.id)).limit(batch_size)).all()
            if not rows:
                return
            ids = [row[0] for row in rows]
            found = topics.of_members(conn, ids)
            follows = resources.of_members(conn, ids)
        last_id = ids[-1]
        yield [
            _view(row, found.get(row[0], _NO_TOPICS), follows.get(row[0], _NO_RESOURCES))
            for row in rows
        ]


def list_articles(
    session: Session,
    *,
    topic: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Stored articles, newest first seen first, as JSON-ready rows (``digest articles list``):
    topics by name, mentions in the article's order."""
    query = select(Article)
    if topic is not None:
        query = query.where(
            col(Article.id).in_(
                select(ArticleTopic.article_id)
                .join(Topic, col(Topic.id) == col(ArticleTopic.topic_id))
                .where(col(Topic.slug) == topic_slug(topic))
            )
        )
    if since is not None:
        query = query.where(col(Article.first_seen_at) >= since)
    query = query.order_by(col(Article.first_seen_at).desc(), col(Article.id).desc())
    if limit is not None:
        query = query.limit(limit)
    articles = list(session.exec(query))
    ids = [a.id for a in articles]
    topics: dict[int, list[str]] = defaultdict(list)
    mentions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for part in _chunks(ids):
        topic_rows = session.exec(
            select(ArticleTopic.article_id, Topic.name)
            .join(Topic, col(Topic.id) == col(ArticleTopic.topic_id))
            .where(col(ArticleTopic.article_id).in_(part))
            .order_by(col(Topic.name))
        )
        for article_id, name in topic_rows:
            topics[article_id].append(name)
        mention_rows = session.exec(
            select(Mention)
            .where(col(Mention.article_id).in_(part))
            .order_by(col(Mention.article_id), col(Mention.position))
        )
        for m in mention_rows:
            mentions[m.article_id].append(
                {"name": m.name, "description": m.description, "url": m.url}
            )
    return [
        {
            "url": a.url,
            "title": a.title,
            "topics": topics.get(a.id, []),  # type: ignore[arg-type]
            "first_seen_at": a.first_seen_at.isoformat(),
            "published_at": a.published_at.isoformat(),
            "key_points": list(a.key_points),
            "mentions": mentions.get(a.id, []),  # type: ignore[arg-type]
            "guid": a.guid,
            "held_until": a.held_until.isoformat() if a.held_until else None,
            "retracted_at": a.retracted_at.isoformat() if a.retracted_at else None,
        }
        for a in articles
    ]


# ------------------------------------------------------------------ topics


def ensure_topics(session: Session, names: Iterable[str]) -> list[Topic]:
    """The Topic rows for ``names``, creating the missing ones (first spelling is kept)."""
    wanted = {topic_slug(n): clean_topic_name(n) for n in unique_topics(names)}
    for name in wanted.values():
        problem = topic_length_problem(name)
        if problem:  # callers validate first; this keeps a DataError off every backend
            raise ValueError(problem)
    if not wanted:
        return []
    existing = {
        t.slug: t
        for t in session.exec(select(Topic).where(Topic.slug.in_(wanted)))  # type: ignore[attr-defined]
    }
    for slug, name in wanted.items():
        if slug not in existing:
            topic = Topic(slug=slug, name=name)
            session.add(topic)
            existing[slug] = topic
    session.flush()
    return [existing[slug] for slug in wanted]


def all_topics(session: Session) -> list[Topic]:
    """Every topic, by name (case-insensitively), for forms and filters."""
    topics = list(session.exec(select(Topic)).all())
    topics.sort(key=lambda t: t.name.casefold())
    return topics


@dataclass(frozen=True)
class TopicChoice:
    """A topic a form offers: the slug it is known by and the name it is shown with."""

    slug: str
    name: str


def offered_topics(
    session: Session, curated: Sequence[str] = (), own: Iterable[str] = ()
) -> list[TopicChoice]:
    """The topics the subscribe and preferences forms offer.

    The editor's list (setting ``topics``, in its order) when there is one; otherwise every
    topic that has an article, by name. A topic that only a member list named (no article,
    not curated) is offered to nobody, so a CSV row cannot make public choices. ``own``: a
    member's own topics, added on their own preferences page so that saving keeps them.
    """
    if curated:
        wanted = {topic_slug(n): clean_topic_name(n) for n in unique_topics(curated)}
        stored = {
            t.slug: t.name
            for t in session.exec(select(Topic).where(col(Topic.slug).in_(list(wanted))))
        }
        choices = [TopicChoice(slug, stored.get(slug, name)) for slug, name in wanted.items()]
    else:
        with_articles = select(ArticleTopic.topic_id)
        rows = session.exec(select(Topic).where(col(Topic.id).in_(with_articles))).all()
        choices = sorted(
            (TopicChoice(t.slug, t.name) for t in rows), key=lambda c: c.name.casefold()
        )
    offered = {c.slug for c in choices}
    extra = [
        TopicChoice(topic_slug(name), name)
        for name in unique_topics(own)
        if topic_slug(name) not in offered
    ]
    return choices + sorted(extra, key=lambda c: c.name.casefold())


# ------------------------------------------------------------------ editors' holds and retractions


#: An article's state on the newsroom pages (``article_state``).
OFFERED, HELD, RETRACTED = "offered", "held", "retracted"


def article_state(article: Article, now: datetime) -> str:
    if article.retracted_at is not None:
        return RETRACTED
    if article.held_until is not None and article.held_until > now:
        return HELD
    return OFFERED


class ArticleChangeError(ValueError):
    """An editor's change that cannot be made (the page says why)."""


def _article(session: Session, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None:
        raise LookupError(f"no article {article_id}")
    return article


def hold_article(session: Session, article_id: int, until: datetime, now: datetime) -> Article:
    """Offer the article to nobody before ``until`` (then to the next editions, as if first
    seen then). A retracted article stays retracted."""
    article = _article(session, article_id)
    if article.retracted_at is not None:
        raise ArticleChangeError("this article is retracted; it is never sent again")
    if until <= now:
        raise ArticleChangeError("hold until: choose a time in the future")
    lock_articles(session)
    article.held_until = until
    session.add(article)
    return article


def release_article(session: Session, article_id: int, now: datetime) -> Article:
    """End a hold now: the article is offered from now on (editions already planned during
    the hold did not take it, so it goes into each member's next one)."""
    article = _article(session, article_id)
    lock_articles(session)  # a plan reading candidates now sees it, or its window starts later
    if article.held_until is not None and article.held_until > now:
        article.held_until = now
        session.add(article)
    return article


def retract_article(session: Session, article_id: int, now: datetime) -> Article:
    """Never offer the article again; deliveries already sent are history and stay as they
    are, and deliveries planned but not sent yet go out without it."""
    article = _article(session, article_id)
    if article.retracted_at is None:
        article.retracted_at = now
        session.add(article)
    return article


@dataclass(frozen=True)
class ArticleRow:
    """One line of the newsroom's article list."""

    id: int
    url: str
    title: str
    published_at: datetime
    first_seen_at: datetime
    held_until: datetime | None
    retracted_at: datetime | None
    topics: tuple[str, ...]
    state: str


#: Articles per page of the newsroom's list.
PAGE_SIZE = 50


def search_articles(
    session: Session,
    now: datetime,
    *,
    query: str = "",
    state: str = "",
    page: int = 1,
) -> tuple[list[ArticleRow], int]:
    """Articles newest first seen first, matching ``query`` in title, summary or URL, in
    ``state`` (offered, held, retracted; "" for all); one page and the total count."""
    conditions: list[Any] = []
    words = query.strip()[:200]
    if words:
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                col(Article.title).ilike(pattern, escape="\\"),
                col(Article.summary).ilike(pattern, escape="\\"),
                col(Article.url).ilike(pattern, escape="\\"),
            )
        )
    if state == RETRACTED:
        conditions.append(col(Article.retracted_at).is_not(None))
    elif state == HELD:
        conditions.append(col(Article.retracted_at).is_(None))
        conditions.append(col(Article.held_until) > now)
    elif state == OFFERED:
        conditions.append(col(Article.retracted_at).is_(None))
        conditions.append(or_(col(Article.held_until).is_(None), col(Article.held_until) <= now))
    total = int(session.exec(select(func.count()).select_from(Article).where(*conditions)).one())
    page = max(1, page)
    articles = list(
        session.exec(
            select(Article)
            .where(*conditions)
            .order_by(col(Article.first_seen_at).desc(), col(Article.id).desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
    )
    ids = [a.id for a in articles if a.id is not None]
    names = _topics_of(
        session, col(ArticleTopic.article_id), col(ArticleTopic.topic_id), ids, col(Topic.name)
    )
    rows = [
        ArticleRow(
            id=a.id,  # type: ignore[arg-type]
            url=a.url,
            title=a.title,
            published_at=a.published_at,
            first_seen_at=a.first_seen_at,
            held_until=a.held_until,
            retracted_at=a.retracted_at,
            topics=tuple(name for name, _ in names.get(a.id, [])),  # type: ignore[arg-type]
            state=article_state(a, now),
        )
        for a in articles
    ]
    return rows, total


def article_for_editing(session: Session, article_id: int) -> tuple[Article, ArticleView]:
    """The stored row and its view (topics, mentions) of one article; LookupError if none."""
    article = _article(session, article_id)
    return article, _article_views(session, [article])[article.id]  # type: ignore[index]


# ------------------------------------------------------------------ the archive


def on_show(now: datetime) -> Any:
    """The condition for an article offered at ``now``, to members' digests and on the
    archive's pages alike: seen already, not retracted, not held past ``now``."""
    return and_(
        col(Article.first_seen_at) <= now,
        col(Article.retracted_at).is_(None),
        or_(col(Article.held_until).is_(None), col(Article.held_until) <= now),
    )


def archive_ids(
    session: Session,
    now: datetime,
    *,
    topic_id: int | None = None,
    resource_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[int], int]:
    """Ids of the archive's articles, newest published first, and how many there are in all;
    only those of one topic or mentioning one resource when asked."""
    where = [on_show(now)]
    if topic_id is not None:
        where.append(
            col(Article.id).in_(
                select(ArticleTopic.article_id).where(ArticleTopic.topic_id == topic_id)
            )
        )
    if resource_id is not None:
        where.append(
            col(Article.id).in_(
                select(Mention.article_id).where(Mention.resource_id == resource_id)
            )
        )
    total = session.exec(select(func.count()).select_from(Article).where(*where)).one()
    query = (
        select(Article.id)
        .where(*where)
        .order_by(col(Article.published_at).desc(), col(Article.id).desc())
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [i for i in session.exec(query).all() if i is not None], int(total)


def archive_articles(session: Session, ids: Sequence[int], now: datetime) -> list[ArticleView]:
    """The views of ``ids`` the archive shows, in the order given (others left out)."""
    shown = set(
        session.exec(select(Article.id).where(col(Article.id).in_(list(ids)), on_show(now))).all()
    )
    found = articles_by_id(session, [i for i in ids if i in shown])
    return [found[i] for i in ids if i in found]


def last_change(session: Session, ids: Sequence[int]) -> datetime | None:
    """When the newest of these articles last changed (feeds' Last-Modified)."""
    if not ids:
        return None
    return session.exec(
        select(func.max(Article.updated_at)).where(col(Article.id).in_(list(ids)))
    ).one()


def topic_by_slug(session: Session, slug: str) -> Topic | None:
    """The topic with this slug (the case-folded name), however the address spelled it."""
    return session.exec(select(Topic).where(Topic.slug == topic_slug(slug))).first()


def topics_with_articles(session: Session, now: datetime) -> list[tuple[Topic, int]]:
    """Topics the archive has articles on, by name, with how many."""
    rows = session.exec(
        select(Topic, func.count(col(ArticleTopic.article_id)))
        .join(ArticleTopic, col(ArticleTopic.topic_id) == col(Topic.id))
        .join(Article, col(Article.id) == col(ArticleTopic.article_id))
        .where(on_show(now))
        .group_by(col(Topic.id))
    ).all()
    return sorted(((t, int(n)) for t, n in rows), key=lambda pair: pair[0].name.casefold())


def archive_stamps(session: Session, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """(id, first seen) of the archive's newest ``limit`` articles, for the sitemap: no
    views built, whatever the archive's size."""
    rows = session.exec(
        select(Article.id, Article.first_seen_at)
        .where(on_show(now))
        .order_by(col(Article.published_at).desc(), col(Article.id).desc())
        .limit(limit)
    ).all()
    return [(i, seen) for i, seen in rows if i is not None]


def waiting_by_topic(session: Session, now: datetime) -> list[tuple[str, int]]:
    """Articles the next daily editions will take, per topic: first offered in the last 24
    hours, or released from a hold within the next 24; not retracted. Most first."""
    day = timedelta(days=1)
    fresh = and_(
        col(Article.first_seen_at) > now - day,
        or_(col(Article.held_until).is_(None), col(Article.held_until) <= now + day),
    )
    releasing = and_(col(Article.held_until) > now - day, col(Article.held_until) <= now + day)
    rows = session.exec(
        select(Topic.name, func.count(func.distinct(col(Article.id))))
        .join(ArticleTopic, col(ArticleTopic.topic_id) == col(Topic.id))
        .join(Article, col(Article.id) == col(ArticleTopic.article_id))
        .where(col(Article.retracted_at).is_(None), or_(fresh, releasing))
        .group_by(col(Topic.name))
    ).all()
    return sorted(((name, int(n)) for name, n in rows), key=lambda r: (-r[1], r[0]))
