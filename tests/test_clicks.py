"""Click links and the click counter: one link per edition, article and place; counts in
memory written in batches; the link-scanner rule; members only when tracked."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, event
from sqlmodel import Session, select

from digest.clicks import ClickCounter, ClickLinks
from digest.content import ArticleView
from digest.db import session_scope
from digest.ingest.records import ArticleRecord
from digest.ingest.store import upsert_articles
from digest.models import Article, ClickCount, MemberClick
from digest.tokens import ClickData, TokenSigner

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
EDITION = "daily:2026-12-06"


def article(n: int = 1) -> ArticleView:
    return ArticleView(n, f"https://a.example/{n}", "T", NOW, NOW, ("x",), ("Space",))


def test_links_name_edition_article_place_and_topic_never_the_member() -> None:
    signer = TokenSigner("k")
    links = ClickLinks(signer, "https://news.example.org/")
    ann, ben = links.scope(EDITION, 1), links.scope(EDITION, 2)
    assert ann is ben  # nothing about the member: one scope, one set of links
    scope = ann.under("Outer Space")
    assert scope is ben.under("Outer Space") and scope.topic == "outer space"
    href = links.href(scope, article(), "title", "https://a.example/1")
    assert href is links.href(scope, article(), "title", "https://a.example/1")  # made once
    assert href.startswith("https://news.example.org/c/")
    data = signer.verify_click(href.rsplit("/", 1)[1])
    assert data == ClickData(EDITION, 1, "title", "outer space", None)
    assert links.href(scope, article(), "more", "") != href
    tracked = ClickLinks(signer, "https://news.example.org", track_members=True)
    one = tracked.href(tracked.scope(EDITION, 7), article(), "title", "https://a.example/1")
    assert signer.verify_click(one.rsplit("/", 1)[1]).member_id == 7


def _articles(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        upsert_articles(
            session,
            [ArticleRecord(f"https://a.example/{n}", "T", NOW, ("x",)) for n in (1, 2)],
            NOW,
        )
    with Session(engine) as session:
        return sorted(a.id for a in session.exec(select(Article)))  # type: ignore[misc]


def test_a_burst_of_clicks_is_one_write(engine: Engine) -> None:
    first, second = _articles(engine)
    now = [0.0]
    counter = ClickCounter(engine, clock=lambda: now[0], wall_clock=lambda: NOW)
    writes: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for n in range(500):
            now[0] += 60  # readers, one a minute each, from their own addresses
            counter.record(ClickData(EDITION, first, "title", "space"), f"198.51.100.{n % 250}")
        assert writes == []
        assert counter.flush() == 1
        assert len(writes) == 1
        counter.record(ClickData(EDITION, first, "more", "space", 9), "203.0.113.1")
        counter.record(ClickData(EDITION, second, "title", "space"), "203.0.113.2")
        counter.flush()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with Session(engine) as session:
        rows = {(c.article_id, c.topic): c.clicks for c in session.exec(select(ClickCount))}
        members = session.exec(select(MemberClick)).all()
    assert rows == {(first, "space"): 501, (second, "space"): 1}
    assert members == []  # members only with track_member_clicks
    assert counter.flush() == 0


def test_a_scanner_opening_every_link_is_discounted(engine: Engine) -> None:
    first, second = _articles(engine)
    now = [100.0]
    counter = ClickCounter(engine, scanner_seconds=10, scanner_links=3, clock=lambda: now[0])
    assert counter.record(ClickData(EDITION, first, "title", "space"), "198.51.100.1")
    scanner = "192.0.2.9"
    assert counter.record(ClickData(EDITION, first, "title", "space"), scanner)
    assert counter.record(ClickData(EDITION, first, "more", "space"), scanner)
    assert not counter.record(ClickData(EDITION, second, "title", "space"), scanner)
    now[0] += 5
    assert not counter.record(ClickData(EDITION, second, "more", "space"), scanner)
    now[0] += 30  # long after: the same address is a reader again
    assert counter.record(ClickData(EDITION, second, "more", "space"), scanner)
    assert counter.record(ClickData("daily:2026-12-07", first, "title", "x"), scanner)
    counter.flush()
    with Session(engine) as session:
        rows = {
            (c.article_id, c.edition): (c.clicks, c.discounted)
            for c in session.exec(select(ClickCount))
        }
    assert rows == {
        (first, EDITION): (1, 2),  # the reader's click; the scanner's two taken back
        (second, EDITION): (1, 2),
        (first, "daily:2026-12-07"): (1, 0),
    }


def test_clicks_on_deleted_articles_or_members_go_nowhere(engine: Engine) -> None:
    first, _ = _articles(engine)
    counter = ClickCounter(engine, clock=lambda: 0.0, wall_clock=lambda: NOW, track_members=True)
    counter.record(ClickData(EDITION, 424242, "title", ""), "198.51.100.1")  # no such article
    counter.record(ClickData(EDITION, first, "title", "", 4242), "198.51.100.2")  # no member
    counter.flush()
    assert counter.pending() == 0
    with Session(engine) as session:
        assert [(c.article_id, c.clicks) for c in session.exec(select(ClickCount))] == [(first, 1)]
        assert session.exec(select(MemberClick)).all() == []
