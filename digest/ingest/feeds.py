"""Feed sources added from the newsroom: checked by reading them once (the import's errors,
nothing written on an error), then kept in the store for the scheduler's ingest job."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from digest import catalog
from digest.ingest.load import ImportBatch, fetch_url
from digest.ingest.records import ParseResult
from digest.ingest.store import ImportCounts, upsert_articles
from digest.models import FeedSource


def stored_sources(session: Session) -> list[FeedSource]:
    return list(session.exec(select(FeedSource).order_by(col(FeedSource.url))))


def read_feed(
    url: str, now: datetime, max_bytes: int, allow_private_feed_hosts: bool = False
) -> ImportBatch:
    """Fetch and validate a feed URL as ``digest articles import URL`` does."""
    batch = ImportBatch(files=1)
    try:
        batch.extend(
            fetch_url(url, now, max_bytes, allow_private_feed_hosts=allow_private_feed_hosts)
        )
    except Exception as exc:  # noqa: BLE001 - worded for the page, like the CLI's
        batch.extend(ParseResult.failed(url, f"could not read: {type(exc).__name__}: {exc}"))
    batch.reject_duplicates()
    return batch


def add_source(
    session: Session, url: str, batch: ImportBatch, actor: str, now: datetime
) -> ImportCounts:
    """Keep ``url`` as a source and import what it gave now (``batch`` had no errors)."""
    if session.exec(select(FeedSource).where(col(FeedSource.url) == url)).first() is None:
        session.add(FeedSource(url=url, added_by=actor, added_at=now))
    catalog.lock_articles(session)
    return upsert_articles(session, batch.records, now)


def remove_source(session: Session, source_id: int) -> FeedSource:
    found = session.get(FeedSource, source_id)
    if found is None:
        raise LookupError(f"no feed source {source_id}")
    session.delete(found)
    return found
