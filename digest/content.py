"""Plain, immutable data that flows between the stages.

Selection, rendering and composing take these, not ORM rows, so they stay pure functions that
tests can drive without a database, and so a worker never lazily loads rows mid-render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.clicks import ClickScope


@dataclass(frozen=True)
class MentionView:
    name: str
    description: str = ""
    url: str | None = None
    slug: str = ""  # the resource's page (``/resources/<slug>``); "" when not linked
    resource_id: int | None = None


@dataclass(frozen=True)
class ArticleView:
    id: int
    url: str
    title: str
    published_at: datetime
    first_seen_at: datetime
    key_points: tuple[str, ...]
    topics: tuple[str, ...]  # display names
    topic_slugs: frozenset[str] = frozenset()
    mentions: tuple[MentionView, ...] = ()
    summary: str | None = None
    source: str | None = None
    image_url: str | None = None
    resource_ids: frozenset[int] = frozenset()  # of the resources it mentions


@dataclass(frozen=True)
class MemberView:
    id: int
    email: str
    name: str
    status: str
    frequency: str
    timezone: str
    send_hour: int
    topics: tuple[str, ...] = ()  # display names
    topic_slugs: frozenset[str] = frozenset()
    created_at: datetime | None = None
    resource_ids: frozenset[int] = frozenset()  # the resources they follow

    @property
    def follows_everything(self) -> bool:
        """A member who chose no topic and no resource gets every article."""
        return not self.topic_slugs and not self.resource_ids


@dataclass(frozen=True)
class TopicGroup:
    """Articles of one topic as the email shows them: the topic heading, then its articles."""

    topic: str
    articles: tuple[ArticleView, ...]


@dataclass(frozen=True)
class DigestLinks:
    preferences_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    archive_url: str = ""
    view_url: str = ""  # this delivery's web copy ("View in browser"); "" when there is none
    subscribe_url: str = ""  # for whoever reads a forwarded copy


@dataclass(frozen=True)
class DigestIssue:
    """Everything a template needs for one member's edition."""

    member: MemberView
    edition: str
    edition_label: str  # e.g. "Tuesday 24 November 2026" or "Week 48, 2026"
    groups: tuple[TopicGroup, ...]
    links: DigestLinks
    site_name: str
    base_url: str
    more: tuple[ArticleView, ...] = field(default=())  # listed as links only (size budget)
    #: every group as selected, before the size budget moved any article into ``more``: the
    #: contents list and the plain-text part show them all (empty: ``groups``)
    selected: tuple[TopicGroup, ...] = field(default=())
    web: bool = False  # the web copy: no member, no personal links, nothing cut for size
    #: what the article links name (``digest.clicks``); None: links go straight to articles
    clicks: ClickScope | None = None

    @property
    def all_groups(self) -> tuple[TopicGroup, ...]:
        """The groups as selected (the size budget never shortens these)."""
        return self.selected or self.groups

    @cached_property
    def articles(self) -> tuple[ArticleView, ...]:
        """Every article once, in group order (worked out once: rendering asks often)."""
        seen: dict[int, ArticleView] = {}
        for group in self.groups:
            for article in group.articles:
                seen.setdefault(article.id, article)
        return tuple(seen.values())


class Personal(str):
    """A piece of a rendered part that belongs to one member (their name, address, links).

    Caches downstream skip it: it would never be reused, only push shared pieces out.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    #: ``html`` as the cached pieces it was assembled from, when it was: lets compose reuse
    #: their encoding. Not part of what the message *is*, so not compared.
    html_parts: tuple[str, ...] = field(default=(), compare=False, repr=False)
    text_parts: tuple[str, ...] = field(default=(), compare=False, repr=False)


class DotFree(bytes):
    """A message's bytes in which no line starts with a dot (``compose_message`` output).

    SMTP must double a dot opening a line; the transport skips scanning (and copying) a
    message that says it has none.
    """
