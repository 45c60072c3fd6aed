"""Resources in the store: made from mentions, found by name or slug, merged, renamed, followed.

The store module for the ``resource``, ``resource_alias`` and ``subscriber_resource`` tables
(and the mentions' link to them). A resource is found by any name it has been known by
(``ALIAS_NAME`` rows hold each name's normalised form) and by any slug it has had
(``ALIAS_SLUG`` rows keep the slugs of resources merged into it, so their pages still lead
somewhere). Names are normalised by ``archive.names``, the topics' rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlmodel import Session, col, select

from digest.archive.names import clean_name, name_key, numbered_slug, slugify
from digest.archive.search import index_articles
from digest.catalog import on_show
from digest.db import chunks
from digest.models import (
    ALIAS_NAME,
    ALIAS_SLUG,
    OTHER,
    Article,
    Mention,
    Resource,
    ResourceAlias,
    SubscriberResource,
)


class ResourceError(ValueError):
    """A resource operation that cannot be done (unknown name, a clash): the message says why."""


@dataclass(frozen=True)
class ResourceRow:
    """A resource as lists and pages show it, with how many articles mention it."""

    id: int
    slug: str
    name: str
    kind: str
    description: str
    url: str | None
    articles: int

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "url": self.url,
            "articles": self.articles,
        }


#: A mention as the import gives it: (name, description, url, kind or None).
MentionInput = tuple[str, str, str | None, str | None]


def _free_slug(session: Session, name: str, taken: set[str]) -> str:
    """A slug for ``name`` no resource has (nor had: merged slugs stay reserved)."""
    base = slugify(name)
    existing = set(
        session.exec(select(Resource.slug).where(col(Resource.slug).like(f"{base}%"))).all()
    )
    existing |= set(
        session.exec(
            select(ResourceAlias.value).where(
                ResourceAlias.kind == ALIAS_SLUG, col(ResourceAlias.value).like(f"{base}%")
            )
        ).all()
    )
    n = 1
    while (slug := numbered_slug(base, n)) in existing or slug in taken:
        n += 1
    return slug


def ids_by_key(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Resource ids by normalised name, for the keys that have one."""
    found: dict[str, int] = {}
    for part in chunks(sorted(set(keys))):
        rows = session.exec(
            select(ResourceAlias.value, ResourceAlias.resource_id).where(
                ResourceAlias.kind == ALIAS_NAME, col(ResourceAlias.value).in_(part)
            )
        )
        found.update(dict(rows.all()))
    return found


def ensure_resources(
    session: Session, mentions: Sequence[MentionInput], now: datetime
) -> dict[str, int]:
    """Resource ids by normalised name for ``mentions``, creating the missing resources.

    Mentions are taken in order, so the last non-empty description, URL and given kind of a
    name win (an import's newest word on it); "other" never replaces a kind already known.
    """
    latest: dict[str, MentionInput] = {}
    merged: dict[str, tuple[str, str, str | None, str | None]] = {}
    for name, description, url, kind in mentions:
        key = name_key(name)
        if not key:
            continue
        old = merged.get(key)
        if old is None:
            merged[key] = (clean_name(name), description, url, kind)
        else:
            merged[key] = (
                old[0],
                description or old[1],
                url or old[2],
                kind if kind and kind != OTHER else old[3] or kind,
            )
        latest[key] = merged[key]
    if not latest:
        return {}
    found = ids_by_key(session, latest)
    rows = {
        r.id: r
        for part in chunks(sorted(set(found.values())))
        for r in session.exec(select(Resource).where(col(Resource.id).in_(part)))
    }
    taken: set[str] = set()
    for key, (name, description, url, kind) in latest.items():
        resource = rows.get(found.get(key, -1))
        if resource is None:
            slug = _free_slug(session, name, taken)
            taken.add(slug)
            resource = Resource(
                slug=slug,
                name=name,
                kind=kind or OTHER,
                description=description,
                url=url,
                updated_at=now,
            )
            session.add(resource)
            session.flush()
            assert resource.id is not None
            session.add(ResourceAlias(kind=ALIAS_NAME, value=key, resource_id=resource.id))
            found[key] = resource.id
            rows[resource.id] = resource
            continue
        changed = False
        if description and description != resource.description:
            resource.description, changed = description, True
        if url and url != resource.url:
            resource.url, changed = url, True
        if kind and kind != OTHER and kind != resource.kind:
            resource.kind, changed = kind, True
        if changed:
            resource.updated_at = now
            session.add(resource)
    session.flush()
    return found


def find_resource(session: Session, given: str) -> Resource | None:
    """The resource ``given`` names: its slug, a former slug, or any name it is known by."""
    text = given.strip()
    if not text:
        return None
    by_slug = session.exec(select(Resource).where(Resource.slug == text)).first()
    if by_slug is not None:
        return by_slug
    for kind, value in ((ALIAS_SLUG, text), (ALIAS_NAME, name_key(text))):
        alias = session.get(ResourceAlias, (kind, value))
        if alias is not None:
            return session.get(Resource, alias.resource_id)
    return None


def resolve_names(session: Session, given: Iterable[str]) -> tuple[list[int], list[str]]:
    """Resource ids for names or slugs (in order, once each), and the ones that name none."""
    ids: list[int] = []
    missing: list[str] = []
    for text in given:
        found = find_resource(session, text)
        if found is None or found.id is None:
            missing.append(text)
        elif found.id not in ids:
            ids.append(found.id)
    return ids, missing


def _mentioning(shown_at: datetime | None) -> Any:
    """Ids of the resources articles mention (only articles shown at ``shown_at``, if given)."""
    statement = select(Mention.resource_id).where(col(Mention.resource_id) > 0)
    if shown_at is not None:
        statement = statement.where(
            col(Mention.article_id).in_(select(Article.id).where(on_show(shown_at)))
        )
    return statement


def _counts(
    session: Session, ids: Sequence[int], shown_at: datetime | None = None
) -> dict[int, int]:
    counts: dict[int, int] = {}
    for part in chunks(list(ids)):
        statement = select(Mention.resource_id, func.count(func.distinct(Mention.article_id)))
        if shown_at is not None:
            statement = statement.where(
                col(Mention.article_id).in_(select(Article.id).where(on_show(shown_at)))
            )
        rows = session.exec(
            statement.where(col(Mention.resource_id).in_(part)).group_by(col(Mention.resource_id))
        )
        counts.update({rid: n for rid, n in rows if rid is not None})
    return counts


def _row(resource: Resource, count: int) -> ResourceRow:
    assert resource.id is not None
    return ResourceRow(
        resource.id,
        resource.slug,
        resource.name,
        resource.kind,
        resource.description,
        resource.url,
        count,
    )


def resource_row(session: Session, resource: Resource) -> ResourceRow:
    assert resource.id is not None
    return _row(resource, _counts(session, [resource.id]).get(resource.id, 0))


def list_resources(
    session: Session,
    *,
    query: str | None = None,
    kind: str | None = None,
    with_articles: bool = False,
    limit: int | None = None,
    shown_at: datetime | None = None,
) -> list[ResourceRow]:
    """Resources by name (case-insensitively), with their article counts.

    ``query``: only names containing it (case-insensitively); ``with_articles``: only
    resources some article mentions; ``shown_at``: only those an article the archive shows
    at that time mentions, counting only those (what the public pages and forms offer: a
    name met only in a held or retracted article is not published).
    """
    statement = select(Resource)
    if kind is not None:
        statement = statement.where(Resource.kind == kind)
    if with_articles or shown_at is not None:
        statement = statement.where(col(Resource.id).in_(_mentioning(shown_at)))
    resources = list(session.exec(statement).all())
    if query:
        wanted = query.casefold().strip()
        resources = [r for r in resources if wanted in r.name.casefold()]
    resources.sort(key=lambda r: (r.name.casefold(), r.id))
    if limit is not None:
        resources = resources[:limit]
    counts = _counts(session, [r.id for r in resources if r.id is not None], shown_at)
    return [_row(r, counts.get(r.id or 0, 0)) for r in resources]


def article_ids(
    session: Session, resource_id: int, limit: int | None = None, offset: int = 0
) -> tuple[list[int], int]:
    """Ids of the articles mentioning a resource, newest published first, and their count."""
    mentioning = select(Mention.article_id).where(Mention.resource_id == resource_id)
    total = session.exec(
        select(func.count()).select_from(Article).where(col(Article.id).in_(mentioning))
    ).one()
    statement = (
        select(Article.id)
        .where(col(Article.id).in_(mentioning))
        .order_by(col(Article.published_at).desc(), col(Article.id).desc())
        .offset(offset)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [i for i in session.exec(statement).all() if i is not None], int(total)


def mentioned_article_ids(session: Session, resource_ids: Iterable[int]) -> list[int]:
    """Every article mentioning one of ``resource_ids`` (search reindexes them on a change)."""
    out: set[int] = set()
    for part in chunks(sorted(set(resource_ids))):
        out.update(
            session.exec(select(Mention.article_id).where(col(Mention.resource_id).in_(part))).all()
        )
    return sorted(out)


def merge(session: Session, source: Resource, target: Resource, now: datetime) -> list[int]:
    """Fold ``source`` into ``target``: its mentions, followers, names and slug move over.

    Returns the ids of the articles whose mentions moved (their search rows are rewritten). A
    member who followed both keeps one follow; ``target`` takes the source's description or
    URL only where it has none.
    """
    if source.id == target.id:
        raise ResourceError(f"{source.name!r} and {target.name!r} are the same resource")
    assert source.id is not None and target.id is not None
    moved = mentioned_article_ids(session, [source.id])
    session.execute(
        update(Mention).where(col(Mention.resource_id) == source.id).values(resource_id=target.id)
    )
    both = select(SubscriberResource.subscriber_id).where(
        SubscriberResource.resource_id == target.id
    )
    session.execute(
        delete(SubscriberResource).where(
            col(SubscriberResource.resource_id) == source.id,
            col(SubscriberResource.subscriber_id).in_(both),
        )
    )
    session.execute(
        update(SubscriberResource)
        .where(col(SubscriberResource.resource_id) == source.id)
        .values(resource_id=target.id)
    )
    session.execute(
        update(ResourceAlias)
        .where(col(ResourceAlias.resource_id) == source.id)
        .values(resource_id=target.id)
    )
    session.add(ResourceAlias(kind=ALIAS_SLUG, value=source.slug, resource_id=target.id))
    if not target.description and source.description:
        target.description = source.description
    if not target.url and source.url:
        target.url = source.url
    if target.kind == OTHER and source.kind != OTHER:
        target.kind = source.kind
    target.updated_at = now
    session.add(target)
    session.flush()
    session.execute(delete(Resource).where(col(Resource.id) == source.id))
    session.expire_all()
    index_articles(session, moved)
    return moved


def rename(session: Session, resource: Resource, new_name: str, now: datetime) -> list[int]:
    """Give ``resource`` a new display name; its slug and its former names still find it.

    Raises ``ResourceError`` when the name is empty or another resource has it (merge
    them instead). Returns the ids of its articles (their search rows are rewritten).
    """
    name = clean_name(new_name)
    if not name:
        raise ResourceError("the new name is empty")
    if len(name) > 500:
        raise ResourceError("the new name is longer than 500 characters")
    assert resource.id is not None
    key = name_key(name)
    holder = ids_by_key(session, [key]).get(key)
    if holder is not None and holder != resource.id:
        other = session.get(Resource, holder)
        raise ResourceError(
            f"{name!r} is already the name of {other.slug if other else holder!r}; "
            "merge the two instead (digest resources merge)"
        )
    if holder is None:
        session.add(ResourceAlias(kind=ALIAS_NAME, value=key, resource_id=resource.id))
    resource.name = name
    resource.updated_at = now
    session.add(resource)
    session.flush()
    affected = mentioned_article_ids(session, [resource.id])
    index_articles(session, affected)
    return affected


# ---------------------------------------------------------------- follows


def set_follows(session: Session, wanted: dict[int, Sequence[int]]) -> None:
    """Set each member's followed resources to exactly ``wanted[member_id]``."""
    if not wanted:
        return
    for part in chunks(list(wanted)):
        session.execute(
            delete(SubscriberResource).where(col(SubscriberResource.subscriber_id).in_(part))
        )
    rows = [
        {"subscriber_id": member_id, "resource_id": resource_id}
        for member_id, ids in wanted.items()
        for resource_id in dict.fromkeys(ids)
    ]
    if rows:
        session.execute(insert(SubscriberResource), rows)


def follow(session: Session, member_id: int, resource_id: int, on: bool = True) -> bool:
    """Follow (or, with ``on`` false, stop following) one resource; True if it changed."""
    current = session.get(SubscriberResource, (member_id, resource_id))
    if on and current is None:
        session.add(SubscriberResource(subscriber_id=member_id, resource_id=resource_id))
    elif not on and current is not None:
        session.delete(current)
    else:
        return False
    session.flush()
    return True


def follows_ids(session: Session, member_id: int) -> list[int]:
    """The ids of the resources one member follows."""
    return list(
        session.exec(
            select(SubscriberResource.resource_id).where(
                SubscriberResource.subscriber_id == member_id
            )
        ).all()
    )


def follows_of(session: Session, member_ids: Iterable[int]) -> dict[int, list[Resource]]:
    """Each member's followed resources, by name (members following none are absent)."""
    out: dict[int, list[Resource]] = defaultdict(list)
    for part in chunks(sorted(set(member_ids))):
        rows = session.exec(
            select(SubscriberResource.subscriber_id, Resource)
            .join(Resource, col(Resource.id) == col(SubscriberResource.resource_id))
            .where(col(SubscriberResource.subscriber_id).in_(part))
        )
        for member_id, resource in rows:
            out[member_id].append(resource)
    for resources in out.values():
        resources.sort(key=lambda r: (r.name.casefold(), r.id))
    return dict(out)


def follower_count(session: Session, resource_id: int) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(SubscriberResource)
            .where(SubscriberResource.resource_id == resource_id)
        ).one()
    )


#: The most resources the subscribe and preferences forms list (the most mentioned first
#: kept; a member's own always listed).
MAX_OFFERED = 500


@dataclass(frozen=True)
class ResourceChoice:
    """A resource a form offers: the slug it is ticked by and the name shown."""

    id: int
    slug: str
    name: str


def offered_resources(
    session: Session, now: datetime, own: Iterable[int] = ()
) -> list[ResourceChoice]:
    """The resources the subscribe and preferences forms offer, by name: those the archive's
    articles mention at ``now`` (the ``MAX_OFFERED`` most mentioned), and a member's own so
    saving keeps them."""
    rows = list_resources(session, shown_at=now)
    rows.sort(key=lambda r: -r.articles)
    kept = {r.id: r for r in rows[:MAX_OFFERED]}
    mine = [i for i in own if i not in kept]
    for part in chunks(sorted(set(mine))):
        for resource in session.exec(select(Resource).where(col(Resource.id).in_(part))):
            kept[resource.id or 0] = _row(resource, 0)
    choices = [ResourceChoice(r.id, r.slug, r.name) for r in kept.values()]
    return sorted(choices, key=lambda c: (c.name.casefold(), c.id))
