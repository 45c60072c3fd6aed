"""Writing records: an idempotent upsert keyed by GUID, else URL.

Re-importing a file must never duplicate an article or move its ``first_seen_at`` (the
selection windows of editions are cut on it). Existing rows for a whole batch are fetched in a
few ``IN`` queries, and the work stays portable SQL, so it runs the same on SQLite and
PostgreSQL inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from digest.archive.names import name_key
from digest.archive.search import index_articles
from digest.archive.store import ensure_resources
from digest.catalog import ensure_topics
from digest.db import CHUNK, chunks
from digest.ingest.records import ArticleRecord, RecordError, build_record
from digest.models import Article, ArticleTopic, Mention, Topic
from digest.topics import topic_slug


@dataclass(frozen=True)
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def __str__(self) -> str:
        return f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged"


def dedupe(records: Iterable[ArticleRecord]) -> list[ArticleRecord]:
    """One record per article: a later record with the same URL or GUID replaces the earlier.

    A guard for direct callers only: imports read through ``load_sources`` have already
    reported such repeats as errors and kept the first.
    """
    slots: list[ArticleRecord | None] = []
    by_url: dict[str, int] = {}
    by_guid: dict[str, int] = {}
    for rec in records:
        hits = {i for i in (by_url.get(rec.url), by_guid.get(rec.guid or "")) if i is not None}
        for i in hits:
            old = slots[i]
            assert old is not None
            by_url.pop(old.url, None)
            if old.guid:
                by_guid.pop(old.guid, None)
            slots[i] = None
        slots.append(rec)
        by_url[rec.url] = len(slots) - 1
        if rec.guid:
            by_guid[rec.guid] = len(slots) - 1
    return [r for r in slots if r is not None]


def _existing(session: Session, records: Sequence[ArticleRecord]) -> list[Article]:
    """Rows matching the batch by URL or GUID: one query per 500 keys, not one per record."""
    urls = sorted({r.url for r in records})
    guids = sorted({r.guid for r in records if r.guid})
    found: dict[int | None, Article] = {}
    for start in range(0, max(len(urls), len(guids)), CHUNK):
        url_part, guid_part = urls[start : start + CHUNK], guids[start : start + CHUNK]
        conditions = []
        if url_part:
            conditions.append(col(Article.url).in_(url_part))
        if guid_part:
            conditions.append(col(Article.guid).in_(guid_part))
        for art in session.exec(select(Article).where(or_(*conditions))):
            found[art.id] = art
    return list(found.values())


def _apply(art: Article, rec: ArticleRecord, content_hash: str, now: datetime) -> None:
    art.url = rec.url
    art.title = rec.title
    art.published_at = rec.published_at
    art.key_points = list(rec.key_points)
    art.summary = rec.summary
    art.source = rec.source
    art.image_url = rec.image_url
    art.content_hash = content_hash
    art.updated_at = now


def upsert_articles(
    session: Session, records: Iterable[ArticleRecord], now: datetime
) -> ImportCounts:
    """Create or update ``records`` (matched by GUID, else URL) with their topics and mentions.

    ``first_seen_at`` is set to ``now`` on creation only; ``updated_at`` moves only when the
    content hash changes. Does not commit: the caller's transaction decides.
    """
    batch = dedupe(records)
    if not batch:
        return ImportCounts()
    rows = _existing(session, batch)
    by_url = {a.url: a for a in rows}
    by_guid = {a.guid: a for a in rows if a.guid}

    created = updated = unchanged = 0
    changed: list[tuple[Article, ArticleRecord]] = []
    for rec in batch:
        digest_ = rec.content_hash()
        guid_hit = by_guid.get(rec.guid) if rec.guid else None
        url_hit = by_url.get(rec.url)
        art = guid_hit or url_hit
        if guid_hit is not None and url_hit is not None and guid_hit is not url_hit:
            art = url_hit  # the URL is the unique identity; the other row keeps its GUID
        if art is None:
            art = Article(
                url=rec.url,
                guid=rec.guid,
                title=rec.title,
                published_at=rec.published_at,
                first_seen_at=now,
                updated_at=now,
                key_points=list(rec.key_points),
                summary=rec.summary,
                source=rec.source,
                image_url=rec.image_url,
                content_hash=digest_,
            )
            session.add(art)
            created += 1
            changed.append((art, rec))
        elif art.content_hash == digest_:
            unchanged += 1
            continue
        else:
            by_url.pop(art.url, None)
            _apply(art, rec, digest_, now)
            owner = by_guid.get(rec.guid) if rec.guid else None
            if rec.guid and rec.guid != art.guid and owner in (None, art):
                by_guid.pop(art.guid or "", None)
                art.guid = rec.guid
            updated += 1
            changed.append((art, rec))
        by_url[art.url] = art
        if art.guid:
            by_guid[art.guid] = art
    if changed:
        session.flush()
        _replace_links(session, changed)
    return ImportCounts(created, updated, unchanged)


def _replace_links(session: Session, changed: list[tuple[Article, ArticleRecord]]) -> None:
    """Topics and mentions of changed articles, replaced wholesale (cheaper than diffing);
    each mention linked to its resource (made on first mention), the search rows rewritten."""
    ids = [a.id for a, _ in changed if a.id is not None]
    for part in chunks(ids):
        session.execute(delete(ArticleTopic).where(col(ArticleTopic.article_id).in_(part)))
        session.execute(delete(Mention).where(col(Mention.article_id).in_(part)))
    topics = {t.slug: t for t in ensure_topics(session, (n for _, r in changed for n in r.topics))}
    now = max(art.updated_at for art, _ in changed)
    resources = ensure_resources(session, [m for _, r in changed for m in r.mentions], now)
    for art, rec in changed:
        assert art.id is not None
        for slug in dict.fromkeys(topic_slug(n) for n in rec.topics):
            session.add(ArticleTopic(article_id=art.id, topic_id=topics[slug].id))  # type: ignore[arg-type]
        for position, (name, description, url, _kind) in enumerate(rec.mentions):
            session.add(
                Mention(
                    article_id=art.id,
                    position=position,
                    name=name,
                    description=description,
                    url=url,
                    resource_id=resources.get(name_key(name)),
                )
            )
    session.flush()
    index_articles(session, ids)


#: What an editor may change of a stored article; the URL (its identity), GUID and dates stay.
EDITABLE = ("title", "summary", "key_points", "topics", "mentions")


def edit_article(
    session: Session, article_id: int, changes: Mapping[str, Any], now: datetime
) -> tuple[ArticleRecord | None, list[RecordError]]:
    """An editor's change to one stored article, validated exactly as an imported record
    (``build_record``) and written by the same upsert: the content hash is the import's,
    and ``first_seen_at`` does not move, so nobody who got the article gets it again.

    Returns the record written, or None and every problem (field named); nothing is written
    then. LookupError when there is no such article.
    """
    article = session.get(Article, article_id)
    if article is None:
        raise LookupError(f"no article {article_id}")
    topics = session.exec(
        select(Topic.name)
        .join(ArticleTopic, col(ArticleTopic.topic_id) == col(Topic.id))
        .where(col(ArticleTopic.article_id) == article_id)
        .order_by(col(Topic.id))
    ).all()
    mentions = session.exec(
        select(Mention).where(col(Mention.article_id) == article_id).order_by(col(Mention.position))
    ).all()
    raw: dict[str, Any] = {
        "url": article.url,
        "guid": article.guid,
        "title": article.title,
        "published_at": article.published_at.isoformat(),
        "key_points": list(article.key_points),
        "topics": list(topics),
        "mentions": [
            {"name": m.name, "description": m.description, **({"url": m.url} if m.url else {})}
            for m in mentions
        ],
        "summary": article.summary,
        "source": article.source,
        "image_url": article.image_url,
    }
    raw.update({k: v for k, v in changes.items() if k in EDITABLE})
    if raw.get("summary") == "":
        raw["summary"] = None
    record, errors = build_record(raw)
    where = f"article {article_id}"
    if record is None:
        return None, [e.located("edit", e.record or where) for e in errors]
    upsert_articles(session, [record], now)
    return record, []
