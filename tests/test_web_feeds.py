"""Feeds over HTTP: per topic and per resource exactly their articles, parsed by feedparser,
with ETag and Last-Modified answered by 304; the sitemap."""

from __future__ import annotations

import json
from collections.abc import Iterator

import feedparser
import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from digest.archive import store
from digest.settings import Settings
from digest.web import create_app
from tests.archive_helpers import NOW, SEED, Clock, seed_archive
from tests.conftest import DATA

BASE = "https://news.example.org"


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    seed_archive(engine)
    with TestClient(create_app(settings, engine, clock=Clock()), base_url=BASE) as test_client:
        yield test_client


def entry_ids(client: TestClient, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    schema = etree.RelaxNG(etree.parse(str(DATA / "atom.rng")))
    assert schema.validate(etree.fromstring(response.content)), schema.error_log
    return [e.id for e in parsed.entries]


def item_ids(client: TestClient, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/feed+json")
    document = json.loads(response.content)
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["feed_url"] == BASE + path
    return [item["id"] for item in document["items"]]


def articles(*ids: int) -> list[str]:
    return [f"{BASE}/articles/{i}" for i in ids]


def test_each_feed_lists_exactly_its_articles(client: TestClient) -> None:
    for kind, read in (("atom", entry_ids), ("json", item_ids)):
        assert read(client, f"/archive/feed.{kind}") == articles(1, 2, 3)
        assert read(client, f"/topics/stem%20cells/feed.{kind}") == articles(1, 2)
        assert read(client, f"/topics/space/feed.{kind}") == articles(3)
        assert read(client, f"/resources/keio-university/feed.{kind}") == articles(1, 2)
        assert read(client, f"/resources/hideyuki-okano/feed.{kind}") == articles(1)
        assert read(client, f"/resources/mara-okafor/feed.{kind}") == articles(3)
    atom = feedparser.parse(client.get("/resources/keio-university/feed.atom").content)
    assert atom.feed.title == "Science Digest: Keio University"
    assert atom.entries[0].title == SEED["title"]
    assert SEED["key_points"][1] not in client.get("/archive/feed.atom").text  # members only


def test_conditional_gets_answer_304_and_a_change_changes_the_etag(
    client: TestClient, engine: Engine
) -> None:
    first = client.get("/topics/stem%20cells/feed.atom")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    assert "public" in first.headers["cache-control"]
    again = client.get("/topics/stem%20cells/feed.atom", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    since = client.get("/topics/stem%20cells/feed.atom", headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    other = client.get("/topics/stem%20cells/feed.atom", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200
    json_first = client.get("/resources/keio-university/feed.json")
    cached = client.get(
        "/resources/keio-university/feed.json",
        headers={"If-None-Match": json_first.headers["etag"]},
    )
    assert cached.status_code == 304
    with Session(engine) as session:  # a rename changes what the feed says
        keio = store.find_resource(session, "keio-university")
        assert keio is not None
        store.rename(session, keio, "Keio University, Tokyo", NOW)
        session.commit()
    renamed = client.get(
        "/resources/keio-university/feed.json",
        headers={"If-None-Match": json_first.headers["etag"]},
    )
    assert renamed.status_code == 200 and "Keio University, Tokyo" in renamed.text


def test_unknown_feeds_are_404_and_merged_ones_redirect(client: TestClient, engine: Engine) -> None:
    assert client.get("/topics/nothing/feed.atom").status_code == 404
    assert client.get("/resources/nobody/feed.json").status_code == 404
    assert client.get("/archive/feed.rss").status_code == 404
    with Session(engine) as session:
        source = store.find_resource(session, "hideyuki-okano")
        target = store.find_resource(session, "keio-university")
        assert source and target
        store.merge(session, source, target, NOW)
        session.commit()
    moved = client.get("/resources/hideyuki-okano/feed.atom", follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == "/resources/keio-university/feed.atom"


def test_sitemap_lists_the_archive_its_articles_topics_and_resources(client: TestClient) -> None:
    response = client.get("/sitemap.xml")
    assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
    root = etree.fromstring(response.content)
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    urls = root.xpath("//s:url/s:loc/text()", namespaces=ns)
    for path in (
        "/archive",
        "/articles/1",
        "/articles/3",
        "/topics/stem%20cells",
        "/resources/keio-university",
    ):
        assert BASE + path in urls
    assert len(urls) == len(set(urls))
