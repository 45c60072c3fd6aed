"""Selection is a pure function: windows, topics, age limit, order, cap, grouping."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from digest.content import ArticleView, MemberView, MentionView
from digest.selection import (
    CandidateIndex,
    Limits,
    group_by_topic,
    select_articles,
    window_start_for,
)
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


def _scan_reference(
    member: MemberView,
    candidates: list[ArticleView],
    start: datetime,
    end: datetime,
    now: datetime,
    limits: Limits,
) -> tuple[ArticleView, ...]:
    """The definition, spelled out independently of ``select_articles``."""
    oldest = now - limits.max_age
    chosen = [
        a
        for a in candidates
        if start < a.first_seen_at <= end
        and a.published_at >= oldest
        and (
            (not member.topic_slugs and not member.resource_ids)
            or member.topic_slugs & a.topic_slugs
            or member.resource_ids & a.resource_ids
        )
    ]
    chosen.sort(key=lambda a: (a.published_at, a.first_seen_at, a.id), reverse=True)
    return tuple(chosen[: limits.max_items])


def _random_articles(rng: random.Random, n: int, slugs: list[str]) -> list[ArticleView]:
    out = []
    for i in range(n):
        # Coarse times so ties in published/first-seen happen and the id decides.
        published = NOW - timedelta(hours=rng.randrange(0, 24 * 40, 6))
        seen = published + timedelta(hours=rng.choice([0, 0, 1, 30, 24 * 20]))
        topics = rng.sample(slugs, rng.choice([0, 1, 1, 2, 3]))
        out.append(
            ArticleView(
                id=rng.randrange(1, 10 * n),
                url=f"https://example.org/{i}",
                title=f"Article {i}",
                published_at=published,
                first_seen_at=min(seen, NOW),
                key_points=(),
                topics=tuple(topics),
                topic_slugs=frozenset(topics),
                resource_ids=frozenset(rng.sample(range(1, 9), rng.choice([0, 0, 1, 2]))),
            )
        )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_index_selects_exactly_what_the_scan_selects(seed: int) -> None:
    rng = random.Random(seed)
    slugs = [f"t{i}" for i in range(12)]
    candidates = _random_articles(rng, rng.choice([0, 1, 30, 400]), slugs)
    index = CandidateIndex(candidates)
    compared = nonempty = 0
    for _ in range(400):
        m = member([])
        m = replace(
            m,
            topic_slugs=frozenset(rng.sample(slugs + ["absent"], rng.randint(0, 5))),
            resource_ids=frozenset(rng.sample(range(1, 12), rng.choice([0, 0, 1, 3]))),
        )
        start = NOW - timedelta(hours=rng.choice([1, 6, 24, 24 * 7, 24 * 35, 24 * 60]))
        end = rng.choice([NOW, NOW, start + timedelta(hours=rng.randint(0, 48))])
        limits = Limits(rng.choice([1, 3, 20]), timedelta(days=rng.choice([2, 10, 30])))
        expected = _scan_reference(m, candidates, start, end, NOW, limits)
        assert select_articles(m, candidates, start, end, NOW, limits) == expected
        assert index.select(m, start, end, NOW, limits) == expected
        compared += 1
        nonempty += bool(expected)
    assert compared == 400
    if len(candidates) >= 30:
        assert nonempty > 50  # the comparison is not between empty selections only


def test_index_window_wide_and_narrow_paths_agree() -> None:
    """A topic with many articles in the window is scanned; a narrow window is gathered."""
    candidates = [article(i, ["Space"], seen_hours_ago=i / 10) for i in range(1, 400)]
    index = CandidateIndex(candidates)
    m = member(["Space"])
    for hours in (0.35, 2, 39.95):  # 3, 20 and 399 articles first seen in the window
        start = NOW - timedelta(hours=hours)
        for limits in (LIMITS, Limits(1, timedelta(days=30)), Limits(5, timedelta(hours=13))):
            expected = select_articles(m, candidates, start, NOW, NOW, limits)
            assert index.select(m, start, NOW, NOW, limits) == expected


def _mentioning(a: ArticleView, *resources: tuple[int, str]) -> ArticleView:
    mentions = tuple(MentionView(name, "", None, name.lower(), rid) for rid, name in resources)
    return replace(a, mentions=mentions, resource_ids=frozenset(rid for rid, _ in resources))


KEIO, OKANO = (7, "Keio University"), (8, "Hideyuki Okano")


def test_a_member_following_only_a_resource_gets_exactly_its_articles_grouped_under_it() -> None:
    arts = [
        _mentioning(article(1, ["Stem Cells"], 1), OKANO, KEIO),
        article(2, ["Stem Cells"], 1),
        _mentioning(article(3, ["Space"], 1), KEIO),
        _mentioning(article(4, ["Space"], 1), OKANO),
    ]
    m = replace(member([]), resource_ids=frozenset({KEIO[0]}))
    chosen = select_articles(m, arts, NOW - timedelta(days=1), NOW, NOW, LIMITS)
    assert [a.id for a in chosen] == [1, 3]
    assert CandidateIndex(arts).select(m, NOW - timedelta(days=1), NOW, NOW, LIMITS) == chosen
    groups = group_by_topic(m, chosen)
    assert [(g.topic, [a.id for a in g.articles]) for g in groups] == [
        ("Because you follow Keio University", [1, 3])
    ]


def test_a_topic_and_a_resource_bring_each_article_once_resource_heading_first() -> None:
    arts = [
        _mentioning(article(1, ["Stem Cells"], 1), KEIO),
        article(2, ["Stem Cells"], 1),
        _mentioning(article(3, ["Space"], 1), KEIO),
        article(4, ["Space"], 1),
    ]
    m = replace(member(["Stem Cells"]), resource_ids=frozenset({KEIO[0]}))
    chosen = CandidateIndex(arts).select(m, NOW - timedelta(days=1), NOW, NOW, LIMITS)
    assert [a.id for a in chosen] == [1, 2, 3]
    assert chosen == select_articles(m, arts, NOW - timedelta(days=1), NOW, NOW, LIMITS)
    groups = group_by_topic(m, chosen)
    assert [(g.topic, [a.id for a in g.articles]) for g in groups] == [
        ("Because you follow Keio University", [1, 3]),
        ("Stem Cells", [2]),
    ]
    capped = CandidateIndex(arts).select(
        m, NOW - timedelta(days=1), NOW, NOW, Limits(2, timedelta(days=30))
    )
    assert [a.id for a in capped] == [1, 2]
