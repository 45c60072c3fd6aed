"""Previews: what a member, or a set of topics, would get if the edition went out now.

One function for ``digest preview`` and the editor pages alike. It goes through
``Editions.message_for``, the call sending uses, and selects exactly as planning selects
(``plan.plan_member``); nothing is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import cast

from sqlalchemy import Engine
from sqlmodel import Session

from digest import catalog, ledger
from digest.content import ArticleView, MemberView, Rendered
from digest.editions import Editions
from digest.members.rules import ACTIVE, MemberNotFound
from digest.members.store import get_member
from digest.plan import PlanItem, PlanReport, limits_from, plan, plan_member
from digest.schedule import current_edition
from digest.settings import Settings
from digest.topics import topic_slug


@dataclass(frozen=True)
class Preview:
    member: MemberView
    edition: str
    articles: tuple[ArticleView, ...]
    rendered: Rendered
    message: bytes
    delivery_id: int | None = None  # the ledger row previewed, if it is a recorded edition

    @property
    def parsed(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.message, policy=policy.default))


def stand_in_member(settings: Settings, topics: Sequence[str], frequency: str) -> MemberView:
    """A member with these topics for previews; id 0 exists nowhere, so its links open nothing."""
    return MemberView(
        id=0,
        email=f"preview@{settings.from_domain}",
        name="",
        status=ACTIVE,
        frequency=frequency,
        timezone="UTC",
        send_hour=0,
        topics=tuple(topics),
        topic_slugs=frozenset(topic_slug(t) for t in topics),
    )


def preview(
    engine: Engine,
    settings: Settings,
    editions: Editions,
    now: datetime,
    *,
    email: str | None = None,
    topics: Sequence[str] = (),
    frequency: str = "daily",
    edition: str | None = None,
) -> Preview | None:
    """The message ``email`` would get now, or a stand-in member following ``topics``.

    For a member, a planned but unsent edition is shown as planned; otherwise the next edition
    is selected exactly as planning would select it. With ``edition``, that recorded edition
    is rendered again (what the member got, or will get). None when the selection is empty;
    LookupError for an unknown member or edition.
    """
    with Session(engine) as session:
        if email is not None:
            row = get_member(session, email)
            if row is None:
                raise MemberNotFound(email)
            member = catalog.member_views(session, [row])[0]
            recorded = ledger.member_edition(session, member.id, edition)
            if edition is not None and recorded is None:
                raise LookupError(f"{email} has no edition {edition}")
        else:
            member = stand_in_member(settings, topics, frequency)
            recorded = None
        delivery_id = None
        if recorded is not None:
            found = catalog.articles_by_id(session, recorded.article_ids)
            articles = tuple(found[i] for i in recorded.article_ids if i in found)
            edition_key, message_id = recorded.edition, recorded.message_id
            delivery_id = recorded.id
        else:
            limits = limits_from(settings)
            candidates = catalog.candidate_articles(session, now, now - limits.max_age)
            past = (
                ledger.member_history(session, [member.id]).get(member.id, ledger.History())
                if member.id
                else ledger.History()
            )
            upcoming = current_edition(
                member.frequency,
                member.timezone,
                member.send_hour,
                now,
                settings.weekly_weekday,
                force=True,
            )
            planned = plan_member(
                member,
                upcoming,
                past.last_window_end,
                candidates,
                now,
                limits,
                past.earliest_untaken_start,
                owed_from=past.owed_from,
                delivered=past.delivered,
            )
            by_id = {a.id: a for a in candidates}
            articles = tuple(by_id[i] for i in planned.article_ids)
            edition_key = upcoming.key
            message_id = ledger.new_message_id(f"preview.{upcoming.key}", settings.from_domain)
    if not articles:
        return None
    rendered, data = editions.message_for(
        member, edition_key, articles, message_id, now, delivery_id=delivery_id
    )
    return Preview(member, edition_key, articles, rendered, data, delivery_id)


# ------------------------------------------------------------------ the upcoming issue


@dataclass(frozen=True)
class TopicCount:
    name: str
    slug: str
    members: int
    articles: int


@dataclass(frozen=True)
class Upcoming:
    items: list[PlanItem]
    counts: list[TopicCount]
    report: PlanReport


def upcoming(engine: Engine, settings: Settings, now: datetime, topic: str | None) -> Upcoming:
    """Each active member's next edition (this period's, hour or not) as a dry-run plan,
    with members and articles counted per topic; ``topic`` keeps the items that have it."""
    report = plan(engine, settings, now, dry_run=True, force=True)
    members: dict[str, set[str]] = defaultdict(set)
    articles: dict[str, set[int]] = defaultdict(set)
    names: dict[str, str] = {}
    for item in report.items:
        for article in item.articles:
            for name in article.topics:
                slug = topic_slug(name)
                names.setdefault(slug, name)
                members[slug].add(item.email)
                articles[slug].add(article.id)
    counts = sorted(
        (TopicCount(names[s], s, len(members[s]), len(articles[s])) for s in names),
        key=lambda c: (-c.members, c.name.casefold()),
    )
    items = report.items
    if topic:
        slug = topic_slug(topic)
        items = [i for i in items if any(slug in a.topic_slugs for a in i.articles)]
    return Upcoming(items, counts, report)
