"""Which articles a member gets, and how the email groups them: pure functions.

A member's editions cover consecutive, non-overlapping windows of first-seen time, so an
article reaches a member at most once without a row per member per article: an edition takes
the articles first seen after the end of the member's last taken window and up to now.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections import defaultdict
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
    """A member who follows nothing gets everything; otherwise one shared topic, or one
    followed resource the article mentions, is enough."""
    if member.follows_everything:
        return True
    return not member.topic_slugs.isdisjoint(
        article.topic_slugs
    ) or not member.resource_ids.isdisjoint(article.resource_ids)


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
    chosen.sort(key=digest_order, reverse=True)
    return tuple(chosen[: limits.max_items])


def digest_order(article: ArticleView) -> tuple[datetime, datetime, int]:
    """The sort key of a digest's articles (reversed: newest first)."""
    return (article.published_at, article.first_seen_at, article.id)


#: The index's key for "every article": what a member who follows nothing gets. Topics are
#: keyed by their slug (a str), resources by their id (an int): the two never collide.
_EVERYTHING = None
IndexKey = str | int | None
#: At most this many topic windows are remembered before the memo starts afresh.
_MEMO_SIZE = 65_536


class CandidateIndex:
    """The candidates arranged once so each member's selection costs O(what they follow),
    not O(all).

    ``select_articles`` scans every candidate per member, which a million members cannot
    afford. Here the candidates are ranked once in digest order; each topic and each resource
    keeps the ranks of its articles (and, sorted by first-seen time, for narrow windows). A
    member's selection is the first ``max_items`` of the union of each followed topic's and
    resource's first ``max_items`` in the window, and one key's list for one window is
    computed once and shared by every member with that window. ``select`` returns exactly
    what ``select_articles`` returns for the same input.
    """

    def __init__(self, candidates: Iterable[ArticleView]) -> None:
        ordered = sorted(candidates, key=digest_order, reverse=True)  # stable, as the scan's sort
        self.articles: tuple[ArticleView, ...] = tuple(ordered)
        self._published = [a.published_at for a in ordered]
        self._seen = [a.first_seen_at for a in ordered]
        by_topic: dict[IndexKey, list[int]] = defaultdict(list)
        for rank, article in enumerate(ordered):
            for slug in article.topic_slugs:
                by_topic[slug].append(rank)
            for resource_id in article.resource_ids:
                by_topic[resource_id].append(rank)
        by_topic[_EVERYTHING] = list(range(len(ordered)))
        self._ranks = {slug: tuple(ranks) for slug, ranks in by_topic.items()}
        self._by_seen = {slug: self._seen_order(ranks) for slug, ranks in self._ranks.items()}
        self._memo: dict[tuple[object, ...], tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.articles)

    def _seen_order(self, ranks: Sequence[int]) -> tuple[list[datetime], list[int]]:
        pairs = sorted((self._seen[r], r) for r in ranks)
        return [seen for seen, _ in pairs], [r for _, r in pairs]

    def select(
        self,
        member: MemberView,
        window_start: datetime,
        window_end: datetime,
        now: datetime,
        limits: Limits,
    ) -> tuple[ArticleView, ...]:
        """What ``select_articles(member, candidates, ...)`` would return, found by topic."""
        oldest = now - limits.max_age
        k = limits.max_items
        keys: Iterable[IndexKey]
        if member.resource_ids:
            keys = (*member.topic_slugs, *member.resource_ids)
        else:
            keys = member.topic_slugs or (_EVERYTHING,)
        tops = [top for key in keys if (top := self._top(key, window_start, window_end, oldest, k))]
        if not tops:
            return ()
        if len(tops) == 1:  # most members: one list has news in the window, or only one
            ranks: Sequence[int] = tops[0]
        else:
            ranks = sorted(set().union(*tops))[:k]
        return tuple(map(self.articles.__getitem__, ranks))

    def _top(
        self, slug: IndexKey, start: datetime, end: datetime, oldest: datetime, k: int
    ) -> tuple[int, ...]:
        """Ranks of the first ``k`` of a topic's articles in the window, memoised per window."""
        key = (slug, start, end, oldest, k)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            found = self._memo[key] = self._compute_top(slug, start, end, oldest, k)
        return found

    def _compute_top(
        self, slug: IndexKey, start: datetime, end: datetime, oldest: datetime, k: int
    ) -> tuple[int, ...]:
        ranks = self._ranks.get(slug)
        if not ranks:
            return ()
        seen_sorted, by_seen = self._by_seen[slug]
        low, high = bisect_right(seen_sorted, start), bisect_right(seen_sorted, end)
        published = self._published
        if high - low <= 4 * k:
            # Few in the window: take them directly rather than scan the topic for them.
            inside = sorted(r for r in by_seen[low:high] if published[r] >= oldest)
            return tuple(inside[:k])
        seen = self._seen
        out: list[int] = []
        for r in ranks:
            if published[r] < oldest:
                break  # ranks run newest-published first: the rest are older still
            if start < seen[r] <= end:
                out.append(r)
                if len(out) == k:
                    break
        return tuple(out)


def because_you_follow(name: str) -> str:
    """The heading of a followed resource's articles in a digest."""
    return f"Because you follow {name}"


def group_by_topic(member: MemberView, articles: Sequence[ArticleView]) -> tuple[TopicGroup, ...]:
    """Each article once, under the first resource it mentions that the member follows
    ("Because you follow Keio University"), else its first topic the member follows;
    groups in order of news."""
    groups: dict[str, list[ArticleView]] = {}
    followed = member.resource_ids
    for article in articles:
        heading = UNFILED
        if followed and not followed.isdisjoint(article.resource_ids):
            name = next(m.name for m in article.mentions if m.resource_id in followed)
            heading = because_you_follow(name)
        else:
            for name, slug in _named_slugs(article.topics):
                if not member.topic_slugs or slug in member.topic_slugs:
                    heading = name
                    break
        groups.setdefault(heading, []).append(article)
    return tuple(TopicGroup(topic, tuple(items)) for topic, items in groups.items())


@functools.lru_cache(maxsize=8192)
def _named_slugs(topics: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, slug) per topic, in the article's order; articles share topic tuples."""
    from digest.topics import topic_slug

    return tuple((name, topic_slug(name)) for name in topics)
