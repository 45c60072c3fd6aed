"""Members in the store: look up, add from a validated record, change status, remove, list.

Nothing here parses: records arrive validated (``rules``), and errors are raised with the
field and the reason. Suppression holds: an unsubscribed or bounced member is changed only
with ``reactivate``, which only the member's own request or an operator who says so passes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, type_coerce, update
from sqlmodel import Session, col, select

from digest.archive import store as archive_store
from digest.catalog import ensure_topics
from digest.db import CHUNK, chunks, utc_day
from digest.members.rules import (
    ACTIVE,
    MEMBER_STATUSES,
    OPERATOR_STATUSES,
    PROFILE_FIELDS,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    MemberError,
    MemberNotFound,
    MemberRecord,
    SuppressedMember,
    check_new_status,
    lookup_emails,
    unicode_form,
)
from digest.models import (
    BOUNCED,
    PENDING,
    Delivery,
    Subscriber,
    SubscriberResource,
    SubscriberTopic,
    Topic,
    UTCDateTime,
)
from digest.models import UNSUBSCRIBED as _UNSUBSCRIBED
from digest.topics import topic_slug

if TYPE_CHECKING:
    from digest.members.csvfile import ImportReport


@dataclass(frozen=True)
class MemberRow:
    """A stored member with the display names of their topics, for listing and export."""

    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    frequency: str
    timezone: str
    send_hour: int
    created_at: datetime
    follows: tuple[str, ...] = ()  # names of the resources followed

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "topics": list(self.topics),
            "follows": list(self.follows),
            "frequency": self.frequency,
            "timezone": self.timezone,
            "send_hour": self.send_hour,
            "created_at": self.created_at.isoformat(),
        }

    def as_csv(self) -> dict[str, str]:
        return {
            "email": self.email,
            "name": self.name,
            "topics": "; ".join(self.topics),
            "frequency": self.frequency,
            "timezone": self.timezone,
            "send_hour": str(self.send_hour),
            "follows": "; ".join(self.follows),
            "status": self.status,
        }


# ---------------------------------------------------------------- writing


class TopicIds:
    """Topic ids by slug, created on first use; topics are few, so they are kept per import."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, int] = {}

    def ids_for(self, names: Iterable[str]) -> list[int]:
        names = list(names)
        missing = [n for n in names if topic_slug(n) not in self.ids]
        if missing:
            for topic in ensure_topics(self.session, missing):
                assert topic.id is not None
                self.ids[topic.slug] = topic.id
        return [self.ids[topic_slug(n)] for n in names]


class FollowIds:
    """Resource ids for the names or slugs members follow, looked up once per import."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, int | None] = {}

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names that name no resource."""
        out = []
        for name in names:
            if name not in self.ids:
                found = archive_store.find_resource(self.session, name)
                self.ids[name] = found.id if found is not None else None
            if self.ids[name] is None:
                out.append(name)
        return out

    def check(self, record: MemberRecord, where: str) -> None:
        """Raise ``MemberError`` naming the first follow that names no resource."""
        unknown = self.missing(record.follows)
        if unknown:
            raise MemberError(
                where,
                "follows",
                f"no person or organisation named {unknown[0]!r} "
                "(see digest resources list; a resource exists once an article mentions it)",
            )

    def ids_for(self, names: Iterable[str]) -> list[int]:
        names = list(names)
        self.missing(names)
        return [i for i in (self.ids[n] for n in names) if i is not None]


def _replace_follows(
    session: Session, follow_ids: FollowIds, wanted: Mapping[int, Sequence[str]]
) -> None:
    """Set each member's followed resources to exactly ``wanted[member_id]``."""
    archive_store.set_follows(
        session, {member_id: follow_ids.ids_for(names) for member_id, names in wanted.items()}
    )


def _replace_topics(
    session: Session, topic_ids: TopicIds, wanted: Mapping[int, Sequence[str]]
) -> None:
    """Set each member's topics to exactly ``wanted[member_id]``, with two bulk statements."""
    if not wanted:
        return
    ids = list(wanted)
    session.execute(delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id).in_(ids)))
    rows = [
        {"subscriber_id": member_id, "topic_id": topic_id}
        for member_id, names in wanted.items()
        for topic_id in dict.fromkeys(topic_ids.ids_for(names))
    ]
    if rows:
        session.execute(insert(SubscriberTopic), rows)


def _apply_profile(member: Subscriber, record: MemberRecord, fields: Iterable[str]) -> bool:
    """Copy the given profile fields (not topics) onto ``member``; True if anything changed."""
    changed = False
    for name in fields:
        if name in ("topics", "follows"):
            continue
        value = getattr(record, name)
        if getattr(member, name) != value:
            setattr(member, name, value)
            changed = True
    return changed


def _new_member(record: MemberRecord, status: str, now: datetime) -> Subscriber:
    return Subscriber(**_new_member_values(record, status, now))


def _new_member_values(record: MemberRecord, status: str, now: datetime) -> dict[str, Any]:
    return {
        "email": record.email,
        "name": record.name,
        "status": status,
        "frequency": record.frequency,
        "timezone": record.timezone,
        "send_hour": record.send_hour,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": now if status == ACTIVE else None,
    }


_EXISTING_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.name,
    Subscriber.frequency,
    Subscriber.timezone,
    Subscriber.send_hour,
)


def write_chunk(
    session: Session,
    topic_ids: TopicIds,
    chunk: list[tuple[MemberRecord, frozenset[str]]],
    status: str,
    now: datetime,
    report: ImportReport,
    follow_ids: FollowIds | None = None,
) -> None:
    """Write one chunk with bulk statements: one lookup, one INSERT, one UPDATE, topics.

    Core-level bulk statements rather than ORM objects: building a SQLModel instance per row
    costs more than the database work, and a 100k-row list would take minutes.
    """
    emails = [record.email for record, _ in chunk]
    legacy = {form: email for email in emails if (form := unicode_form(email)) is not None}
    existing: dict[str, Any] = {}
    found = session.execute(
        select(*_EXISTING_COLUMNS).where(col(Subscriber.email).in_([*emails, *legacy]))
    ).all()
    for row in sorted(found, key=lambda r: r.email in legacy):  # the ASCII row wins
        existing.setdefault(legacy.get(row.email, row.email), row)
    current_topics = member_topic_slugs(session, [row.id for row in existing.values()])
    topics: dict[int, Sequence[str]] = {}
    follows: dict[int, Sequence[str]] = {}
    fresh: list[MemberRecord] = []
    updates: list[dict[str, Any]] = []
    for record, present in chunk:
        row = existing.get(record.email)
        if row is None:
            fresh.append(record)
            report.new += 1
            continue
        if row.status in SUPPRESSED_STATUSES:
            report.suppressed += 1
            continue
        report.updated += 1
        changes = {
            name: getattr(record, name)
            for name in PROFILE_FIELDS
            if name not in ("topics", "follows")
            and name in present
            and getattr(row, name) != getattr(record, name)
        }
        if row.email != record.email:  # stored with a Unicode domain: now mailable
            changes["email"] = record.email
        if "topics" in present:
            wanted = {topic_slug(t) for t in record.topics}
            if wanted != current_topics.get(row.id, set()):
                topics[row.id] = record.topics
                changes["updated_at"] = now
        if "follows" in present:
            follows[row.id] = record.follows
        if changes:
            updates.append({"id": row.id, **changes, "updated_at": now})
    if fresh:
        created = session.execute(
            insert(Subscriber).returning(col(Subscriber.id), col(Subscriber.email)),
            [_new_member_values(record, status, now) for record in fresh],
        )
        ids = {email: member_id for member_id, email in created}
        for record in fresh:
            if record.topics:
                topics[ids[record.email]] = record.topics
            if record.follows:
                follows[ids[record.email]] = record.follows
    if updates:
        # Grouped by the set of changed columns: one executemany per shape.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for values in updates:
            shapes[tuple(sorted(values))].append(values)
        for group in shapes.values():
            session.execute(update(Subscriber), group)
    _replace_topics(session, topic_ids, topics)
    _replace_follows(session, follow_ids or FollowIds(session), follows)
    session.expunge_all()  # nothing from this chunk stays in the identity map


# ---------------------------------------------------------------- single members


def get_member(session: Session, email: str) -> Subscriber | None:
    """The member with this address (however it is cased or its domain spelled), or None."""
    forms = lookup_emails(email)
    found = {
        m.email: m for m in session.exec(select(Subscriber).where(col(Subscriber.email).in_(forms)))
    }
    return next((found[f] for f in forms if f in found), None)


def member_by_id(session: Session, member_id: int) -> Subscriber | None:
    """The member a signed link names (links carry the id; the address is checked after)."""
    return session.get(Subscriber, member_id)


def _require(session: Session, email: str) -> Subscriber:
    member = get_member(session, email)
    if member is None:
        raise MemberNotFound(email.strip())
    return member


def set_status(
    session: Session, email: str, status: str, reason: str | None, now: datetime
) -> Subscriber:
    """Change a member's status, recording why and when (``unsubscribed_at``, ``confirmed_at``)."""
    if status not in MEMBER_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MEMBER_STATUSES)}, not {status!r}")
    member = _require(session, email)
    member.status = status
    member.status_reason = reason
    member.updated_at = now
    if status == UNSUBSCRIBED:
        member.unsubscribed_at = member.unsubscribed_at or now
    elif status not in SUPPRESSED_STATUSES:
        member.unsubscribed_at = None
    if status == ACTIVE and member.confirmed_at is None:
        member.confirmed_at = now
    session.add(member)
    session.flush()
    return member


@dataclass(frozen=True)
class AddResult:
    member: MemberRow
    created: bool
    changed: bool


def add_member(
    session: Session,
    record: MemberRecord,
    now: datetime,
    *,
    given: Collection[str] = PROFILE_FIELDS,
    status: str | None = None,
    reactivate: bool = False,
) -> AddResult:
    """Create a member from ``record``, or write its ``given`` fields onto an existing one.

    A new member gets every field of the record (defaults where nothing was given) and needs
    at least one topic (otherwise they would get nothing). Raises ``MemberError``, or
    ``SuppressedMember`` for an unsubscribed/bounced address unless ``reactivate``.
    """
    where = record.email
    if status is not None and status not in OPERATOR_STATUSES:
        raise MemberError(where, "status", f"must be one of {', '.join(OPERATOR_STATUSES)}")
    topic_ids = TopicIds(session)
    follow_ids = FollowIds(session)
    if "follows" in given:
        follow_ids.check(record, where)
    member = get_member(session, record.email)
    if member is None:
        if not record.follows_something:
            raise MemberError(
                where,
                "topics",
                "a new member needs at least one topic or resource to follow",
                "no_topics",
            )
        new_status = check_new_status(status or ACTIVE, where)
        member = _new_member(record, new_status, now)
        session.add(member)
        session.flush()
        assert member.id is not None
        _replace_topics(session, topic_ids, {member.id: record.topics})
        _replace_follows(session, follow_ids, {member.id: record.follows})
        return AddResult(_row(session, member), created=True, changed=True)
    if member.status in SUPPRESSED_STATUSES and not reactivate:
        raise SuppressedMember(member.email, member.status)
    changed = _apply_profile(member, record, given)
    if member.email != record.email:  # stored with a Unicode domain: now mailable
        member.email = record.email
        changed = True
    if member.status in SUPPRESSED_STATUSES:
        set_status(session, member.email, status or ACTIVE, "reactivated by operator", now)
        changed = True
    elif status is not None and status != member.status:
        set_status(session, member.email, status, "changed by operator", now)
        changed = True
    assert member.id is not None
    if "topics" in given:
        old = member_topic_slugs(session, [member.id]).get(member.id, set())
        if old != {topic_slug(t) for t in record.topics}:
            _replace_topics(session, topic_ids, {member.id: record.topics})
            changed = True
    if "follows" in given:
        old_follows = set(archive_store.follows_ids(session, member.id))
        if old_follows != set(follow_ids.ids_for(record.follows)):
            _replace_follows(session, follow_ids, {member.id: record.follows})
            changed = True
    if changed:
        member.updated_at = now
    session.add(member)
    session.flush()
    return AddResult(_row(session, member), created=False, changed=changed)


def remove_member(session: Session, email: str, now: datetime, forget: bool = False) -> str:
    """Unsubscribe a member (keeping the suppression record), or with ``forget`` erase them.

    Erasure deletes their deliveries and topics too, so nothing about them is left behind;
    an import could then bring the address back, which is what erasure means.
    Returns the stored address.
    """
    member = _require(session, email)
    stored = member.email
    if not forget:
        set_status(session, stored, UNSUBSCRIBED, "removed by operator", now)
        return stored
    member_id = member.id
    session.expunge(member)
    session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == member_id))
    session.execute(delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id) == member_id))
    session.execute(
        delete(SubscriberResource).where(col(SubscriberResource.subscriber_id) == member_id)
    )
    session.execute(delete(Subscriber).where(col(Subscriber.id) == member_id))
    session.flush()
    return stored


# ---------------------------------------------------------------- reading


def member_topic_slugs(session: Session, member_ids: Iterable[int]) -> dict[int, set[str]]:
    """Topic slugs per member id (members without topics are absent), read in chunks."""
    ids = list(dict.fromkeys(member_ids))
    out: dict[int, set[str]] = defaultdict(set)
    for part in chunks(ids):
        rows = session.exec(
            select(SubscriberTopic.subscriber_id, Topic.slug)
            .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
            .where(col(SubscriberTopic.subscriber_id).in_(part))
        )
        for member_id, slug in rows:
            out[member_id].add(slug)
    return dict(out)


def _topic_names(session: Session, member_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    if not member_ids:
        return out
    rows = session.exec(
        select(SubscriberTopic.subscriber_id, Topic.name)
        .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
        .where(col(SubscriberTopic.subscriber_id).in_(member_ids))
    )
    for member_id, name in rows:
        out[member_id].append(name)
    for names in out.values():
        names.sort(key=str.casefold)  # the same order on every backend's collation
    return out


def _rows(session: Session, members: Sequence[Subscriber]) -> list[MemberRow]:
    ids = [m.id for m in members if m.id is not None]
    names = _topic_names(session, ids)
    follows = archive_store.follows_of(session, ids)
    return [
        MemberRow(
            id=m.id,
            email=m.email,
            name=m.name,
            status=m.status,
            topics=tuple(names.get(m.id, ())),
            frequency=m.frequency,
            timezone=m.timezone,
            send_hour=m.send_hour,
            created_at=m.created_at,
            follows=tuple(r.name for r in follows.get(m.id, ())),
        )
        for m in members
        if m.id is not None
    ]


def _row(session: Session, member: Subscriber) -> MemberRow:
    return _rows(session, [member])[0]


def iter_members(
    session: Session,
    status: str | None = None,
    topic: str | None = None,
    batch_size: int = CHUNK,
) -> Iterator[MemberRow]:
    """Members in id order, read a batch at a time by keyset pagination (``id > last``)."""
    if status is not None and status not in MEMBER_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MEMBER_STATUSES)}, not {status!r}")
    query = select(Subscriber)
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic is not None:
        slug = topic_slug(topic)
        query = query.where(
            col(Subscriber.id).in_(
                select(SubscriberTopic.subscriber_id)
                .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
                .where(Topic.slug == slug)
            )
        )
    last = 0
    while True:
        batch = session.exec(
            query.where(col(Subscriber.id) > last).order_by(col(Subscriber.id)).limit(batch_size)
        ).all()
        if not batch:
            return
        yield from _rows(session, batch)
        last = batch[-1].id or last
        session.expunge_all()
        if len(batch) < batch_size:
            return


def count_by_status(session: Session) -> dict[str, int]:
    """How many members are in each state (every state, zeros included)."""
    found = dict(
        session.exec(select(Subscriber.status, func.count()).group_by(col(Subscriber.status))).all()
    )
    return {status: int(found.get(status, 0)) for status in MEMBER_STATUSES}


def first_address_where(
    session: Session, wanted: Callable[[str], bool], not_ending: Sequence[str] = ()
) -> str | None:
    """The first address, by id, of a member who may still be mailed (not unsubscribed or
    bounced) for which ``wanted`` is true. Addresses ending (case-folded) with one of
    ``not_ending`` are skipped in the query itself, so a store of such addresses is one scan.
    """
    query = select(Subscriber.email).where(col(Subscriber.status).not_in(SUPPRESSED_STATUSES))
    for suffix in not_ending:
        query = query.where(func.lower(Subscriber.email).not_like(f"%{suffix.lower()}"))
    for email in session.exec(query.order_by(col(Subscriber.id)).execution_options(yield_per=500)):
        if wanted(email):
            return email
    return None


def follow_topic(session: Session, member_id: int, name: str, on: bool, now: datetime) -> bool:
    """Add (or with ``on`` false, drop) one topic of a member's; True if it changed.

    The member's last topic is kept when they follow no resource either: a member who
    follows nothing would get every article, which nobody asks for by unticking a topic.
    """
    current = member_topic_slugs(session, [member_id]).get(member_id, set())
    slug = topic_slug(name)
    if on == (slug in current):
        return False
    names = _topic_names(session, [member_id]).get(member_id, [])
    if on:
        wanted = [*names, name]
    else:
        wanted = [n for n in names if topic_slug(n) != slug]
        if not wanted and not archive_store.follows_ids(session, member_id):
            return False
    _replace_topics(session, TopicIds(session), {member_id: wanted})
    session.execute(
        update(Subscriber).where(col(Subscriber.id) == member_id).values(updated_at=now)
    )
    return True


# ------------------------------------------------------------------ the newsroom's figures


def membership_by_day(session: Session, since: datetime) -> dict[str, dict[str, int]]:
    """Members per UTC day since ``since``: joined (confirmed, or added active), left
    (unsubscribed) and bounced (marked bounced)."""
    dialect = session.get_bind().dialect.name
    joined_at = func.coalesce(col(Subscriber.confirmed_at), col(Subscriber.created_at))
    queries = (
        ("joined", joined_at, col(Subscriber.status) != PENDING),
        ("left", col(Subscriber.unsubscribed_at), col(Subscriber.status) == _UNSUBSCRIBED),
        ("bounced", col(Subscriber.updated_at), col(Subscriber.status) == BOUNCED),
    )
    found: dict[str, dict[str, int]] = {}
    for kind, column, condition in queries:
        day = utc_day(column, dialect)
        for key, count in session.exec(
            select(day, func.count())
            .where(condition, column >= type_coerce(since, UTCDateTime()))
            .group_by(day)
        ).all():
            found.setdefault(str(key), {})[kind] = int(count)
    return found


def schedule_groups(session: Session) -> list[tuple[str, str, int, int]]:
    """Active members as (frequency, time zone, send hour, how many): what the schedule
    needs to say who is due when, without reading members one by one."""
    rows = session.exec(
        select(Subscriber.frequency, Subscriber.timezone, Subscriber.send_hour, func.count())
        .where(col(Subscriber.status) == ACTIVE)
        .group_by(col(Subscriber.frequency), col(Subscriber.timezone), col(Subscriber.send_hour))
    ).all()
    return [(f, z, int(h), int(n)) for f, z, h, n in rows]
