"""The store's tables.

Invariants live in the schema, not in Python: one Delivery per (member, edition) and one row
per article URL are unique constraints. A Delivery carries the ids of its articles as a JSON
list and the first-seen window it covers, so the ledger grows by one row per edition, never by
one row per member per article.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, String, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel

#: A member's states: pending (awaiting double opt-in) -> active <-> paused; unsubscribed and
#: bounced are suppression records. Everything else says ``members.ACTIVE`` etc.
PENDING, ACTIVE, PAUSED, UNSUBSCRIBED, BOUNCED = (
    "pending", "active", "paused", "unsubscribed", "bounced",
)  # fmt: skip
MEMBER_STATUSES = (PENDING, ACTIVE, PAUSED, UNSUBSCRIBED, BOUNCED)
#: Statuses an import never overrides: the member said no, or the address is dead.
SUPPRESSED_STATUSES = frozenset({UNSUBSCRIBED, BOUNCED})
#: A delivery's states (the ledger's words): planned -> sending -> sent | retry | failed;
#: skipped for editions deliberately not sent. Everything else says ``ledger.SENT`` etc.
PLANNED, SENDING, SENT, RETRY, FAILED, SKIPPED = (
    "planned", "sending", "sent", "retry", "failed", "skipped",
)  # fmt: skip
DELIVERY_STATUSES = (PLANNED, SENDING, SENT, RETRY, FAILED, SKIPPED)
#: Deliveries whose window counts as taken: their articles are not offered again.
WINDOW_TAKING_STATUSES = (PLANNED, SENDING, SENT, RETRY)
#: Deliveries not finished yet: the queue.
UNFINISHED_STATUSES = (PLANNED, RETRY, SENDING)
FREQUENCIES = ("daily", "weekly")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the offset if left to itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Topic(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    name: str = Field(sa_column=Column(String(200), nullable=False))


class ArticleTopic(SQLModel, table=True):
    __tablename__ = "article_topic"
    article_id: int = Field(foreign_key="article.id", primary_key=True, ondelete="CASCADE")
    topic_id: int = Field(foreign_key="topic.id", primary_key=True, index=True)


class Article(SQLModel, table=True):
    __table_args__ = (Index("ix_article_first_seen", "first_seen_at"),)
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2048), unique=True, nullable=False))
    guid: str | None = Field(default=None, sa_column=Column(String(2048), unique=True))
    title: str = Field(sa_column=Column(Text, nullable=False))
    published_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    first_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    key_points: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    summary: str | None = Field(default=None, sa_column=Column(Text))
    source: str | None = Field(default=None, sa_column=Column(String(500)))
    image_url: str | None = Field(default=None, sa_column=Column(String(2048)))
    content_hash: str = Field(default="", sa_column=Column(String(64), nullable=False))
    #: an editor's hold: not offered to anyone before this instant (then as if first seen then)
    held_until: datetime | None = _ts()
    #: an editor's retraction: never offered again; deliveries already sent are history
    retracted_at: datetime | None = _ts()


class Mention(SQLModel, table=True):
    """A person or organisation an article mentions, in the order the article lists them."""

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True, ondelete="CASCADE")
    position: int = 0
    name: str = Field(sa_column=Column(String(500), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str | None = Field(default=None, sa_column=Column(String(2048)))
    resource_id: int | None = Field(
        default=None, foreign_key="resource.id", index=True, ondelete="CASCADE"
    )


#: A resource's kinds: what the import's ``kind`` field may say; anything unsaid is "other".
PERSON, ORGANISATION, OTHER = "person", "organisation", "other"
RESOURCE_KINDS = (PERSON, ORGANISATION, OTHER)


class Resource(SQLModel, table=True):
    """A person or organisation articles mention: one row however many articles name it.

    ``slug`` is its address on the site and stays when it is renamed; the names it is known
    by (its own, former ones, those of resources merged into it) are ``ResourceAlias`` rows.
    """

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    name: str = Field(sa_column=Column(String(500), nullable=False))
    kind: str = Field(default=OTHER, sa_column=Column(String(20), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str | None = Field(default=None, sa_column=Column(String(2048)))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


#: What an alias is: a name's normalised form, or a slug a resource had before a merge.
ALIAS_NAME, ALIAS_SLUG = "name", "slug"


class ResourceAlias(SQLModel, table=True):
    """A way a resource is found: by the normalised form of a name, or by a former slug."""

    __tablename__ = "resource_alias"
    kind: str = Field(sa_column=Column(String(10), primary_key=True))
    value: str = Field(sa_column=Column(String(1500), primary_key=True))
    resource_id: int = Field(foreign_key="resource.id", index=True, ondelete="CASCADE")


class ArticleSearch(SQLModel, table=True):
    """The text search looks in, per article: the title; ``lead``, what visitors may read
    (summary, first key point, resource names); ``more``, the members-only key points. The
    migration adds the engine's index over it (SQLite FTS5, PostgreSQL tsvector + GIN)."""

    __tablename__ = "article_search"
    article_id: int = Field(foreign_key="article.id", primary_key=True, ondelete="CASCADE")
    title: str = Field(sa_column=Column(Text, nullable=False))
    lead: str = Field(sa_column=Column(Text, nullable=False))
    more: str = Field(sa_column=Column(Text, nullable=False))


class Subscriber(SQLModel, table=True):
    __table_args__ = (Index("ix_subscriber_status", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = Field(default="", sa_column=Column(String(200), nullable=False))
    status: str = Field(default="active", sa_column=Column(String(20), nullable=False))
    frequency: str = Field(default="daily", sa_column=Column(String(10), nullable=False))
    timezone: str = Field(default="UTC", sa_column=Column(String(64), nullable=False))
    send_hour: int = 7
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    confirmed_at: datetime | None = _ts()
    unsubscribed_at: datetime | None = _ts()
    status_reason: str | None = Field(default=None, sa_column=Column(Text))


class SubscriberTopic(SQLModel, table=True):
    __tablename__ = "subscriber_topic"
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    topic_id: int = Field(foreign_key="topic.id", primary_key=True, index=True)


class SubscriberResource(SQLModel, table=True):
    """A member follows a resource: its articles are in their digest as their topics' are."""

    __tablename__ = "subscriber_resource"
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    resource_id: int = Field(
        foreign_key="resource.id", primary_key=True, index=True, ondelete="CASCADE"
    )


class SignInLink(SQLModel, table=True):
    """A one-time sign-in link sent to a member: used once (``used_at``), then never again."""

    __tablename__ = "signin_link"
    nonce: str = Field(sa_column=Column(String(64), primary_key=True))
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    used_at: datetime | None = _ts()


class Delivery(SQLModel, table=True):
    """One edition for one member: the ledger row and the queue entry at once."""

    __table_args__ = (
        UniqueConstraint("subscriber_id", "edition", name="uq_delivery_member_edition"),
        Index("ix_delivery_queue", "status", "next_attempt_at"),
        Index("ix_delivery_member_window", "subscriber_id", "window_end"),
        # the newsroom's reports: outcomes per day (by status and when) and per edition
        Index("ix_delivery_status_sent", "status", "sent_at"),
        Index("ix_delivery_status_updated", "status", "updated_at"),
        Index("ix_delivery_edition", "edition", "planned_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id")
    edition: str = Field(sa_column=Column(String(40), nullable=False))
    status: str = Field(default="planned", sa_column=Column(String(20), nullable=False))
    message_id: str = Field(sa_column=Column(String(255), unique=True, nullable=False))
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    window_start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    window_end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    article_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    smtp_code: int | None = None
    smtp_reply: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    worker_id: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_until: datetime | None = _ts()
    next_attempt_at: datetime | None = _ts()
    planned_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = _ts()
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    size_bytes: int | None = None  # of the message as last sent


class SchedulerState(SQLModel, table=True):
    """The single active scheduler's lease and heartbeat (one row per scheduler name).

    A scheduler takes over only once ``lease_until`` has passed, so a standby waits while the
    active one renews; ``digest status`` reads the rest.
    """

    __tablename__ = "scheduler_state"
    name: str = Field(sa_column=Column(String(50), primary_key=True))
    holder: str | None = Field(default=None, sa_column=Column(String(200)))
    host: str | None = Field(default=None, sa_column=Column(String(200)))
    pid: int | None = None
    acquired_at: datetime | None = _ts()
    lease_until: datetime | None = _ts()
    last_tick_at: datetime | None = _ts()
    last_tick_report: str | None = Field(default=None, sa_column=Column(Text))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class ProcessState(SQLModel, table=True):
    """A scheduler's or worker's heartbeat: one row per process, written every
    ``heartbeat_seconds`` and when its state changes, so ``digest status`` and ``/metrics``
    show every process's state, its last error and what it sends now, whichever host it
    runs on. ``counters`` (JSON) are the process's own totals since it started."""

    __tablename__ = "process_state"
    id: str = Field(sa_column=Column(String(200), primary_key=True))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    host: str = Field(sa_column=Column(String(200), nullable=False))
    pid: int
    state: str = Field(sa_column=Column(String(60), nullable=False))
    detail: str | None = Field(default=None, sa_column=Column(Text))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _ts()
    counters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


#: What a returned message or provider event says about a delivery (the classifier's words).
HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE, DELAYED, UNCLASSIFIED = (
    "hard_bounce", "soft_bounce", "complaint", "unsubscribe", "delayed", "unclassified",
)  # fmt: skip
EVENT_KINDS = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE, DELAYED, UNCLASSIFIED)


class DeliveryEvent(SQLModel, table=True):
    """Something that came back about a delivery: a bounce, a complaint, an unsubscribe.

    ``event_key`` is unique: the provider's event id, or a hash of a received message, so the
    same event delivered three times is recorded (and has its effect) once. Mail that could
    not be classified is kept too (``unclassified``, with ``raw_ref`` naming the kept copy);
    an event that names no delivery we can trust has no delivery and no member.
    """

    __tablename__ = "delivery_event"
    __table_args__ = (
        Index("ix_delivery_event_delivery", "delivery_id"),
        Index("ix_delivery_event_member", "subscriber_id", "kind", "received_at"),
        Index("ix_delivery_event_received", "received_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    source: str = Field(sa_column=Column(String(20), nullable=False))
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="CASCADE")
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="CASCADE")
    recipient: str | None = Field(default=None, sa_column=Column(String(320)))
    status_code: str | None = Field(default=None, sa_column=Column(String(20)))
    diagnostic: str | None = Field(default=None, sa_column=Column(Text))
    raw_ref: str | None = Field(default=None, sa_column=Column(String(500)))
    effect: str | None = Field(default=None, sa_column=Column(Text))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class WebhookNonce(SQLModel, table=True):
    """A provider signature's one-time value (Mailgun's token), so it is never used twice."""

    __tablename__ = "webhook_nonce"
    nonce: str = Field(sa_column=Column(String(200), primary_key=True))
    event_key: str = Field(sa_column=Column(String(200), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class SendingState(SQLModel, table=True):
    """The brake: whether sending is paused, why and since when (one row, ``main``).

    Persisted so a restart keeps the pause; ``resumed_at`` is where the rates that can trip
    it again start counting.
    """

    __tablename__ = "sending_state"
    name: str = Field(sa_column=Column(String(50), primary_key=True))
    paused: bool = False
    reason: str | None = Field(default=None, sa_column=Column(Text))
    paused_at: datetime | None = _ts()
    resumed_at: datetime | None = _ts()
    resumed_by: str | None = Field(default=None, sa_column=Column(String(200)))
    updated_at: datetime | None = _ts()


class Editor(SQLModel, table=True):
    """A newsroom account: its own password (an argon2 hash, never the password) and name.

    ``login_nonce`` is spent by each one-time sign-in link, so a link works once.
    """

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = Field(default="", sa_column=Column(String(200), nullable=False))
    password_hash: str = Field(default="", sa_column=Column(String(255), nullable=False))
    login_nonce: str = Field(default="", sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_login_at: datetime | None = _ts()


class EditorSession(SQLModel, table=True):
    """A signed-in editor, server-side: the cookie holds a random token, the row its hash, so
    deleting the row ends the session wherever the cookie was copied."""

    __tablename__ = "editor_session"
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    editor_id: int = Field(foreign_key="editor.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    client: str = Field(default="", sa_column=Column(String(100), nullable=False))


class AuditEntry(SQLModel, table=True):
    """Who changed what, when: every change an editor makes (kept when the editor goes)."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    actor: str = Field(sa_column=Column(String(320), nullable=False))
    action: str = Field(sa_column=Column(String(50), nullable=False))
    target: str = Field(default="", sa_column=Column(String(2048), nullable=False))
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))


class ClickCount(SQLModel, table=True):
    """Clicks on an article's links in one edition, under one topic: an aggregate, no reader.

    ``discounted`` are clicks the link-scanner rule did not count.
    """

    __tablename__ = "click_count"
    __table_args__ = (Index("ix_click_count_edition", "edition"),)
    article_id: int = Field(foreign_key="article.id", primary_key=True, ondelete="CASCADE")
    edition: str = Field(sa_column=Column(String(40), primary_key=True))
    topic: str = Field(sa_column=Column(String(200), primary_key=True))
    clicks: int = 0
    discounted: int = 0
    last_click_at: datetime | None = _ts()


class MemberClick(SQLModel, table=True):
    """Which member clicked which article: only written with ``track_member_clicks = true``."""

    __tablename__ = "member_click"
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    article_id: int = Field(foreign_key="article.id", primary_key=True, ondelete="CASCADE")
    edition: str = Field(sa_column=Column(String(40), primary_key=True))
    clicks: int = 0
    last_click_at: datetime | None = _ts()


class FeedSource(SQLModel, table=True):
    """A feed an editor added from the newsroom: the scheduler's ingest job reads it with
    the ``[[sources]]`` of the config."""

    __tablename__ = "feed_source"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2048), unique=True, nullable=False))
    added_by: str = Field(default="", sa_column=Column(String(320), nullable=False))
    added_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
