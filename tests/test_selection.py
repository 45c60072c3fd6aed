"""Selection is a pure function: windows, topics, age limit, order, cap, grouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.content import ArticleView, MemberView
from digest.selection import Limits, group_by_topic, select_articles, window_start_for
from digest.topics import topic_slug

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)


def article(
    i: int, topics: list[str], seen_hours_ago: float, published_days_ago: float = 0.5
) -> ArticleView:
    return ArticleView(
        id=i,
        url=f"https://example.org/{i}",
        title=f"Article {i}",
        published_at=NOW - timedelta(days=published_days_ago, minutes=i),
        first_seen_at=NOW - timedelta(hours=seen_hours_ago),
        key_points=("point",),
        topics=tuple(topics),
        topic_slugs=frozenset(topic_slug(t) for t in topics),
    )


def member(topics: list[str]) -> MemberView:
    return MemberView(
        id=1,
        email="a@example.org",
        name="A",
        status="active",
        frequency="daily",
        timezone="UTC",
        send_hour=7,
        topics=tuple(topics),
        topic_slugs=frozenset(topic_slug(t) for t in topics),
    )


LIMITS = Limits(max_items=20, max_age=timedelta(days=30))


def test_window_topics_and_order() -> None:
    m = member(["Stem Cells", "Space"])
    candidates = [
        article(1, ["Stem Cells"], 2),
        article(2, ["Climate"], 2),  # not a member topic
        article(3, ["space", "Climate"], 5),  # topic matches whatever the case
        article(4, ["Stem Cells"], 30),  # first seen before the window
        article(5, ["Stem Cells"], 1, published_days_ago=45),  # too old to send
    ]
    start = window_start_for(None, timedelta(days=1), NOW)
    chosen = select_articles(m, candidates, start, NOW, NOW, LIMITS)
    assert [a.id for a in chosen] == [1, 3]


def test_window_after_last_edition_excludes_what_was_sent() -> None:
    m = member(["Stem Cells"])
    candidates = [article(1, ["Stem Cells"], 3), article(2, ["Stem Cells"], 1)]
    last_end = NOW - timedelta(hours=2)
    chosen = select_articles(
        m, candidates, window_start_for(last_end, timedelta(days=1), NOW), NOW, NOW, LIMITS
    )
    assert [a.id for a in chosen] == [2]


def test_cap_keeps_newest() -> None:
    m = member(["Stem Cells"])
    candidates = [article(i, ["Stem Cells"], 1, published_days_ago=i / 10) for i in range(1, 30)]
    chosen = select_articles(
        m, candidates, NOW - timedelta(days=1), NOW, NOW, Limits(5, timedelta(days=30))
    )
    assert [a.id for a in chosen] == [1, 2, 3, 4, 5]


def test_member_without_topics_gets_everything_and_empty_selection() -> None:
    candidates = [article(1, ["Climate"], 1), article(2, [], 1)]
    assert (
        len(select_articles(member([]), candidates, NOW - timedelta(days=1), NOW, NOW, LIMITS)) == 2
    )
    assert (
        select_articles(member(["Genetics"]), candidates, NOW - timedelta(days=1), NOW, NOW, LIMITS)
        == ()
    )


def test_grouped_by_first_followed_topic() -> None:
    m = member(["Nervous System", "Space"])
    arts = [
        article(1, ["Stem Cells", "Nervous System"], 1),
        article(2, ["Space"], 1),
        article(3, ["Nervous System"], 1),
    ]
    groups = group_by_topic(m, arts)
    assert [(g.topic, [a.id for a in g.articles]) for g in groups] == [
        ("Nervous System", [1, 3]),
        ("Space", [2]),
    ]
