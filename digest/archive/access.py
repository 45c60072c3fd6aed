"""The members-only rule, in one place: what a visitor may read of an article.

The club's archive is open to look at and closed to read: a visitor sees an article's
title, its summary line, its first key point and whom it mentions; a signed-in member
sees every key point. Pages, feeds and search snippets all ask here.
"""

from __future__ import annotations

from digest.content import ArticleView

#: Key points a visitor sees of each article.
VISITOR_KEY_POINTS = 1


def visible_key_points(article: ArticleView, member: bool) -> tuple[str, ...]:
    """The key points shown: all to a member, the first ``VISITOR_KEY_POINTS`` otherwise."""
    return article.key_points if member else article.key_points[:VISITOR_KEY_POINTS]


def hidden_count(article: ArticleView, member: bool) -> int:
    """How many key points the reader does not see (the "join the club" line says so)."""
    return len(article.key_points) - len(visible_key_points(article, member))


def open_and_closed(key_points: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Key points split into what anyone may read and what only members may."""
    return key_points[:VISITOR_KEY_POINTS], key_points[VISITOR_KEY_POINTS:]
