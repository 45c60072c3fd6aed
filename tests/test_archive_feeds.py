"""Atom and JSON Feed documents: valid by the schema and by feedparser, visitors' words only,
and the validators of conditional GETs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import feedparser
from lxml import etree

from digest.archive import feeds
from digest.content import ArticleView, MentionView
from tests.conftest import DATA

NOW = datetime(2025, 3, 25, 8, tzinfo=UTC)
INFO = feeds.FeedInfo(
    title="Science Digest: Topic: Stem Cells",
    description="Articles on Stem Cells.",
    page_url="https://news.example.org/topics/stem%20cells",
    atom_url="https://news.example.org/topics/stem%20cells/feed.atom",
    json_url="https://news.example.org/topics/stem%20cells/feed.json",
    site_name="Science Digest",
    base_url="https://news.example.org",
)


def articles() -> list[ArticleView]:
    return [
        ArticleView(
            id=n,
            url=f"https://archive.example.org/{n}",
            title=f"Title {n} <b>& co</b>",
            published_at=NOW - timedelta(days=n),
            first_seen_at=NOW - timedelta(days=n, hours=-1),
            key_points=(f"Open point {n}.", f"Members-only point {n}."),
            topics=("Stem Cells",),
            mentions=(MentionView("Keio University", "", None, "keio-university", 1),),
            summary=f"Summary {n}",
        )
        for n in (1, 2, 3)
    ]


def test_atom_is_valid_by_rfc_4287_schema_and_by_feedparser() -> None:
    body = feeds.atom(INFO, articles(), NOW)
    schema = etree.RelaxNG(etree.parse(str(DATA / "atom.rng")))
    document = etree.fromstring(body)
    assert schema.validate(document), schema.error_log
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0 and parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == [f"Title {n} <b>& co</b>" for n in (1, 2, 3)]
    assert [e.link for e in parsed.entries] == [
        f"https://news.example.org/articles/{n}" for n in (1, 2, 3)
    ]
    first = parsed.entries[0]
    assert first.id == "https://news.example.org/articles/1"
    assert "Open point 1." in first.summary and "Members-only" not in first.summary
    assert [t.term for t in first.tags] == ["Stem Cells"]
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == INFO.atom_url and links["alternate"] == INFO.page_url


def test_an_empty_feed_is_still_valid() -> None:
    body = feeds.atom(INFO, [], NOW)
    schema = etree.RelaxNG(etree.parse(str(DATA / "atom.rng")))
    assert schema.validate(etree.fromstring(body)), schema.error_log
    assert feedparser.parse(body).bozo == 0


def test_json_feed_has_the_1_1_fields() -> None:
    document = json.loads(feeds.json_feed(INFO, articles()))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] == INFO.title and document["feed_url"] == INFO.json_url
    assert document["home_page_url"] == INFO.page_url
    assert document["authors"] == [{"name": "Science Digest"}]
    items = document["items"]
    assert [i["id"] for i in items] == [f"https://news.example.org/articles/{n}" for n in (1, 2, 3)]
    for item in items:
        assert isinstance(item["id"], str) and item["url"] == item["id"]
        assert item["content_text"] and "Members-only" not in item["content_text"]
        datetime.fromisoformat(item["date_published"])  # RFC 3339
        assert item["tags"] == ["Stem Cells"]
    assert items[0]["external_url"] == "https://archive.example.org/1"
    assert "authors" not in items[0]  # whom an article mentions did not write it


def test_conditional_requests() -> None:
    body = feeds.atom(INFO, articles(), NOW)
    etag = feeds.etag_of(body)
    assert etag == feeds.etag_of(feeds.atom(INFO, articles(), NOW))  # the same bytes each time
    modified = NOW - timedelta(hours=1)
    assert feeds.not_modified(etag, modified, etag, None)
    assert feeds.not_modified(etag, modified, f'"other", {etag}', None)
    assert not feeds.not_modified(etag, modified, '"other"', feeds.http_date(NOW))  # ETag decides
    assert feeds.not_modified(etag, modified, None, feeds.http_date(modified))
    assert not feeds.not_modified(etag, NOW, None, feeds.http_date(modified))
    assert not feeds.not_modified(etag, NOW, None, "not a date")
    assert feeds.http_date(NOW) == "Tue, 25 Mar 2025 08:00:00 GMT"
