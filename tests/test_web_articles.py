"""The newsroom's articles before they go, over HTTP against a real store: edit, hold,
release, retract, upload and feed sources; planning honours holds and retractions."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from digest.editors import audit
from digest.models import Article, Delivery, FeedSource
from digest.plan import plan
from digest.settings import Settings
from digest.web import create_app
from tests.newsroom_helpers import ANN, ANN_PW, add_editors, csrf_of, sign_in
from tests.test_web import NOW, Clock, seed

SITE = "https://news.example.org"


@pytest.fixture
def newsroom(engine: Engine, settings: Settings) -> Iterator[tuple[TestClient, Clock]]:
    clock = Clock()
    seed(engine)
    add_editors(engine, NOW)
    app = create_app(settings.replace(allow_private_feed_hosts=True), engine, clock=clock)
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        yield client, clock


def article_id(engine: Engine, slug: str) -> int:
    with Session(engine) as session:
        found = session.exec(
            select(Article).where(Article.url == f"https://archive.example.org/{slug}")
        ).one()
        assert found.id is not None
        return found.id


def planned_articles(engine: Engine, email_id: int | None = None) -> dict[str, list[int]]:
    with Session(engine) as session:
        return {
            f"{d.subscriber_id}:{d.edition}": list(d.article_ids)
            for d in session.exec(select(Delivery))
            if email_id is None or d.subscriber_id == email_id
        }


def post(client: TestClient, page: str, action: str, **data: str):  # type: ignore[no-untyped-def]
    token = csrf_of(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **data}, follow_redirects=False)


def test_list_and_search(newsroom: tuple[TestClient, Clock], engine: Engine) -> None:
    client, _ = newsroom
    page = client.get("/editor/articles")
    assert page.status_code == 200 and "3 articles" in page.text
    found = client.get("/editor/articles", params={"q": "rover"})
    assert "A new rover lands on Mars" in found.text and "Stem cells" not in found.text
    assert "1 article found" in found.text
    hostile = client.get("/editor/articles", params={"q": "%_<script>"})
    assert hostile.status_code == 200 and "<script>" not in hostile.text


def test_edit_is_validated_like_an_import_and_shows_in_the_next_preview(
    newsroom: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = newsroom
    cells = article_id(engine, "cells")
    page = f"/editor/articles/{cells}"
    with Session(engine) as session:
        before = session.get(Article, cells)
        assert before is not None
        first_seen, old_hash = before.first_seen_at, before.content_hash
    bad = post(
        client, page, page, title="", key_points="", topics="Stem Cells", mentions="| no name"
    )
    assert bad.status_code == 422
    assert "field &#39;title&#39;" in bad.text and "field &#39;key_points&#39;" in bad.text
    assert "mentions[1].name" in bad.text and "Nothing was changed" in bad.text
    with Session(engine) as session:
        assert session.get(Article, cells).title == "Stem cells repair a heart"  # type: ignore[union-attr]
    good = post(
        client, page, page,
        title="Stem cells repair a human heart",
        summary="A first in people",
        key_points="One point.\n\nAnother point.",
        topics="Stem Cells, Heart",
        mentions="Ann Lee | A cardiologist | https://example.org/ann",
    )  # fmt: skip
    assert good.status_code == 303
    with Session(engine) as session:
        after = session.get(Article, cells)
        assert after is not None
        assert after.title == "Stem cells repair a human heart"
        assert after.key_points == ["One point.", "Another point."]
        assert after.first_seen_at == first_seen and after.content_hash != old_hash
        actions = [(e.actor, e.action) for e in audit.recent(session)]
    assert (ANN, "article-edit") in actions
    preview = client.get("/editor/preview.html", params={"email": "ada@example.org"})
    assert "Stem cells repair a human heart" in preview.text and "Ann Lee" in preview.text


def test_hold_until_tomorrow_then_next_edition(
    newsroom: tuple[TestClient, Clock], engine: Engine, settings: Settings
) -> None:
    client, clock = newsroom
    mars = article_id(engine, "mars")
    page = f"/editor/articles/{mars}"
    tomorrow = (NOW + timedelta(days=1)).replace(hour=0, minute=0)
    past = post(
        client, page, f"{page}/hold", until=(NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    )
    assert past.status_code == 422 and "in the future" in past.text
    held = post(client, page, f"{page}/hold", until=tomorrow.strftime("%Y-%m-%dT%H:%M"))
    assert held.status_code == 303
    assert "held" in client.get("/editor/articles", params={"state": "held"}).text
    plan(engine, settings, NOW)  # today: Bob follows Space only, so his edition is empty
    today = planned_articles(engine)
    assert all(mars not in ids for ids in today.values())
    assert any(k.endswith("daily:2025-03-25") for k in today)
    plan(engine, settings, NOW + timedelta(days=1))
    tomorrow_rows = {k: v for k, v in planned_articles(engine).items() if "2025-03-26" in k}
    assert [ids for ids in tomorrow_rows.values() if mars in ids], tomorrow_rows


def test_release_offers_a_held_article_from_now(
    newsroom: tuple[TestClient, Clock], engine: Engine, settings: Settings
) -> None:
    client, clock = newsroom
    mars = article_id(engine, "mars")
    page = f"/editor/articles/{mars}"
    post(client, page, f"{page}/hold", until="2030-01-01T00:00")
    plan(engine, settings, NOW)
    clock.now = NOW + timedelta(hours=3)
    assert post(client, page, f"{page}/release").status_code == 303
    plan(engine, settings, NOW + timedelta(days=1))
    rows = {k: v for k, v in planned_articles(engine).items() if "2025-03-26" in k}
    assert [ids for ids in rows.values() if mars in ids]


def test_retracted_is_never_planned_and_leaves_unsent_editions(
    newsroom: tuple[TestClient, Clock], engine: Engine, settings: Settings
) -> None:
    client, _ = newsroom
    cells = article_id(engine, "cells")
    page = f"/editor/articles/{cells}"
    unconfirmed = post(client, page, f"{page}/retract")
    assert unconfirmed.status_code == 422
    assert post(client, page, f"{page}/retract", confirm="yes").status_code == 303
    for day in range(3):
        plan(engine, settings, NOW + timedelta(days=day))
    assert all(cells not in ids for ids in planned_articles(engine).values())
    assert "retracted" in client.get(page).text
    again = post(client, page, f"{page}/hold", until="2030-01-01T00:00")
    assert again.status_code in (403, 422)  # no form to hold a retracted article


def test_upload_all_or_nothing_with_the_cli_errors(
    newsroom: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = newsroom
    token = csrf_of(client.get("/editor/articles/import").text)
    day = "2025-03-24T10:00:00Z"
    bad = [
        {"url": f"{SITE}/u1", "title": "Fine", "published_at": day, "key_points": ["x"]},
        {"url": f"{SITE}/u2", "title": "", "published_at": day, "key_points": ["x"]},
    ]
    answer = client.post(
        "/editor/articles/upload",
        data={"csrf_token": token},
        files={"file": ("batch.json", json.dumps(bad).encode(), "application/json")},
    )
    assert answer.status_code == 422
    assert "batch.json: index 1: field &#39;title&#39;: must not be empty" in answer.text
    assert "Nothing was imported" in answer.text
    with Session(engine) as session:
        assert len(session.exec(select(Article)).all()) == 3
    answer = client.post(
        "/editor/articles/upload",
        data={"csrf_token": token},
        files={"file": ("batch.json", json.dumps(bad[:1]).encode(), "application/json")},
    )
    assert answer.status_code == 200 and "Imported 1 articles" in answer.text
    forged = client.post(
        "/editor/articles/upload",
        data={"csrf_token": "nope"},
        files={"file": ("batch.json", b"[]", "application/json")},
    )
    assert forged.status_code == 403


def test_upload_too_large_is_refused(engine: Engine, settings: Settings) -> None:
    add_editors(engine, NOW)
    app = create_app(settings.replace(max_upload_bytes=1000), engine, clock=Clock())
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        token = csrf_of(client.get("/editor/articles/import").text)
        answer = client.post(
            "/editor/articles/upload",
            data={"csrf_token": token},
            files={"file": ("big.json", b"[" + b" " * 5000 + b"]", "application/json")},
        )
        assert answer.status_code == 413
    with Session(engine) as session:
        assert session.exec(select(Article)).all() == []


FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Lab news</title><link>https://lab.example.org/</link>
<item><title>Cells that count</title><link>https://lab.example.org/a</link>
<pubDate>Mon, 24 Mar 2025 09:00:00 GMT</pubDate><category>Biology</category>
<description>&lt;p&gt;They count.&lt;/p&gt;</description></item>
<item><title>Stars that sing</title><link>https://lab.example.org/b</link>
<pubDate>Mon, 24 Mar 2025 10:00:00 GMT</pubDate><category>Space</category>
<description>They sing.</description></item>
</channel></rss>
"""


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "feed.xml").write_text(FEED)
    (tmp_path / "broken.xml").write_text("<rss><channel><item><title>x</title></item>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_add_a_feed_source(
    newsroom: tuple[TestClient, Clock], engine: Engine, feed_server: str
) -> None:
    client, _ = newsroom
    page = "/editor/articles/import"
    broken = post(client, page, "/editor/articles/feeds", url=f"{feed_server}/broken.xml")
    assert broken.status_code == 422 and "Nothing was added" in broken.text
    missing = post(client, page, "/editor/articles/feeds", url=f"{feed_server}/none.xml")
    assert missing.status_code == 422 and "404" in missing.text
    not_url = post(client, page, "/editor/articles/feeds", url="file:///etc/passwd")
    assert not_url.status_code == 422
    with Session(engine) as session:
        assert session.exec(select(FeedSource)).all() == []
        assert len(session.exec(select(Article)).all()) == 3
    added = post(client, page, "/editor/articles/feeds", url=f"{feed_server}/feed.xml")
    assert added.status_code == 200, added.text
    with Session(engine) as session:
        assert [s.url for s in session.exec(select(FeedSource))] == [f"{feed_server}/feed.xml"]
        assert len(session.exec(select(Article)).all()) > 3
        source_id = session.exec(select(FeedSource)).one().id
    removed = post(client, page, f"/editor/articles/feeds/{source_id}/remove")
    assert removed.status_code == 303
    with Session(engine) as session:
        assert session.exec(select(FeedSource)).all() == []
        actions = [e.action for e in audit.recent(session)]
    assert "feed-add" in actions and "feed-remove" in actions


def test_a_feed_on_an_internal_address_is_refused(
    engine: Engine, settings: Settings, feed_server: str
) -> None:
    add_editors(engine, NOW)
    app = create_app(settings, engine, clock=Clock())  # allow_private_feed_hosts: off
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        page = "/editor/articles/import"
        answer = post(client, page, "/editor/articles/feeds", url=f"{feed_server}/feed.xml")
        assert answer.status_code == 422 and "Nothing was added" in answer.text
        metadata = post(client, page, "/editor/articles/feeds", url="http://169.254.169.254/feed")
        assert metadata.status_code == 422
    with Session(engine) as session:
        assert session.exec(select(FeedSource)).all() == []
        assert session.exec(select(Article)).all() == []
