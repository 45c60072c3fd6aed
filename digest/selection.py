"""Which articles a member gets, and how the email groups them: pure functions.

A member's editions cover consecutive, non-overlapping windows of first-seen time, so an
article reaches a member at most once without a row per member per article: an edition takes
the articles first seen after the end of the member's last taken window and up to now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.content import ArticleView, MemberView, TopicGroup

UNFILED = "More news"


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_age: timedelta


def window_start_for(
    last_window_end: datetime | None,
    period: timedelta,
    now: datetime,
    earliest_untaken: datetime | None = None,
) -> datetime:
    """Start after the last taken window; a first edition looks back one period.

    Before any edition was taken, a failed or stale one's window is still owed: start there.
    """
    if last_window_end is not None:
        return last_window_end
    start = now - period
    if earliest_untaken is not None:
        start = min(start, earliest_untaken)
    return start


def matches(member: MemberView, article: ArticleView) -> bool:
    """A member with no topics follows everything; otherwise one shared topic is enough."""
    if not member.topic_slugs:
        return True
    return not member.topic_slugs.isdisjoint(article.topic_slugs)


def select_articles(
    member: MemberView,
    candidates: Iterable[ArticleView],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    limits: Limits,
) -> tuple[ArticleView, ...]:
    """Articles first seen in (window_start, window_end], recent enough, on the member's topics.

    Newest first (published, then first seen, then id for a stable order), at most
    ``limits.max_items``.
    """
    oldest = now - limits.max_age
    chosen = [
        a
        for a in candidates
        if window_start < a.first_seen_at <= window_end
        and a.published_at >= oldest
        and matches(member, a)
    ]
    chosen.sort(key=lambda a: (a.published_at, a.first_seen_at, a.id), reverse=True)
    return tuple(chosen[: limits.max_items])


def group_by_topic(member: MemberView, articles: Sequence[ArticleView]) -> tuple[TopicGroup, ...]:
    """Each article once, under its first topic the member follows; groups in order of news."""
    groups: dict[str, list[ArticleView]] = {}
    for article in articles:
        heading = UNFILED
        for name, slug in zip(article.topics, _slugs(article), strict=False):
            if not member.topic_slugs or slug in member.topic_slugs:
                heading = name
                break
        groups.setdefault(heading, []).append(article)
    return tuple(TopicGroup(topic, tuple(items)) for topic, items in groups.items())


def _slugs(article: ArticleView) -> list[str]:
    from digest.topics import topic_slug

    return [topic_slug(name) for name in article.topics]
