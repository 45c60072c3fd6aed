"""Feeds of the archive: Atom (RFC 4287, written by feedgen) and JSON Feed 1.1, and their
validators for conditional GETs. Pure: articles in, bytes out.

A feed entry is what a visitor may read (``archive.access``): the title, the summary line,
the first key point and the link to the article page, never the members-only key points.
An entry's id is its article page's address, stable whatever happens to the article.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from feedgen.feed import FeedGenerator

from digest.archive.access import visible_key_points
from digest.content import ArticleView

#: Entries in one feed: the newest articles only (readers poll; the archive has the rest).
FEED_ENTRIES = 50
ATOM_TYPE = "application/atom+xml"
JSON_FEED_TYPE = "application/feed+json"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class FeedInfo:
    """What one feed is: its title, the page it belongs to and its own addresses."""

    title: str
    description: str
    page_url: str  # the HTML page (archive, topic, resource)
    atom_url: str
    json_url: str
    site_name: str
    base_url: str


def article_url(base_url: str, article: ArticleView) -> str:
    """The archive's page of an article (the entries' link and id)."""
    return f"{base_url.rstrip('/')}/articles/{article.id}"


def _summary(article: ArticleView) -> str:
    parts = [article.summary or "", *visible_key_points(article, member=False)]
    return "\n\n".join(p for p in parts if p)


def _updated(articles: Sequence[ArticleView], fallback: datetime) -> datetime:
    return max((a.first_seen_at for a in articles), default=fallback)


def atom(info: FeedInfo, articles: Sequence[ArticleView], now: datetime) -> bytes:
    """The Atom document: one entry per article, newest first."""
    feed = FeedGenerator()
    feed.id(info.page_url)
    feed.title(info.title)
    feed.subtitle(info.description or info.title)
    feed.link(href=info.page_url, rel="alternate", type="text/html")
    feed.link(href=info.atom_url, rel="self", type=ATOM_TYPE)
    feed.author({"name": info.site_name})
    feed.generator("digest")
    feed.language("en")
    feed.updated(_updated(articles, now))
    for article in reversed(articles):  # feedgen prepends: add oldest first
        entry = feed.add_entry()
        url = article_url(info.base_url, article)
        entry.id(url)
        entry.title(article.title)
        # one link only: feedgen 1.0 writes an entry's links without their rel, so a second
        # (the original, "related") would be a second "alternate", which RFC 4287 forbids
        entry.link(href=url, rel="alternate", type="text/html")
        entry.published(article.published_at)
        entry.updated(article.first_seen_at)
        entry.summary(_summary(article))
        for topic in article.topics:
            entry.category(term=topic)
    data: bytes = feed.atom_str(pretty=True)
    return data


def json_feed(info: FeedInfo, articles: Sequence[ArticleView]) -> bytes:
    """The JSON Feed 1.1 document: one item per article, newest first."""
    items = []
    for article in articles:
        url = article_url(info.base_url, article)
        item: dict[str, object] = {
            "id": url,
            "url": url,
            "external_url": article.url,
            "title": article.title,
            "content_text": _summary(article),
            "date_published": article.published_at.astimezone(UTC).isoformat(),
            "date_modified": article.first_seen_at.astimezone(UTC).isoformat(),
            "tags": list(article.topics),
        }
        if article.summary:
            item["summary"] = article.summary
        items.append(item)
    document = {
        "version": JSON_FEED_VERSION,
        "title": info.title,
        "home_page_url": info.page_url,
        "feed_url": info.json_url,
        "description": info.description or info.title,
        "language": "en",
        "authors": [{"name": info.site_name}],
        "items": items,
    }
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


def etag_of(body: bytes) -> str:
    """A strong validator: the body's hash, quoted as HTTP wants it."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)


def not_modified(
    etag: str, last_modified: datetime, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """RFC 9110: If-None-Match decides when present; else If-Modified-Since."""
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        return "*" in tags or etag in tags or f"W/{etag}" in tags
    if if_modified_since:
        from email.utils import parsedate_to_datetime

        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return last_modified.replace(microsecond=0) <= since
    return False
