"""The delivery events in the store, and the rates they add up to.

A store module (like ``ledger``): the only code that writes ``delivery_event`` and
``webhook_nonce``, and that reads the ledger to find what a returned message or provider
event is about. The rates here are the ones ``digest deliveries stats``, ``digest status``,
``/metrics``, the newsroom's pages and the brake show:

* ``edition_rates`` and ``recent_rates``: per edition, and over the deliveries sent in the
  last N days;
* ``window_rates``: over the last N deliveries, what the brake compares with its limits.

A delivery counts once per kind however many events say so (three DSNs for one message are
one bounce), and a bounce the SMTP server gave in the session (550, 551, 553: the delivery
failed) counts as a hard bounce like one that came back later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from digest.db import chunks
from digest.mailer import HARD_BOUNCE_CODES
from digest.models import (
    COMPLAINT,
    EVENT_KINDS,
    FAILED,
    HARD_BOUNCE,
    SENT,
    SOFT_BOUNCE,
    UNSUBSCRIBE,
    Delivery,
    DeliveryEvent,
    Subscriber,
    WebhookNonce,
)

# ------------------------------------------------------------------ finding what it is about


@dataclass(frozen=True)
class DeliveryRef:
    """A delivery an event may be about: enough to verify a token and name the member."""

    id: int
    subscriber_id: int
    message_id: str
    edition: str
    status: str
    email: str
    member_status: str


def _refs(session: Session, condition: Any) -> list[DeliveryRef]:
    rows = session.exec(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.message_id,
            Delivery.edition,
            Delivery.status,
            Subscriber.email,
            Subscriber.status,
        )
        .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id))
        .where(condition)
    ).all()
    return [DeliveryRef(*row) for row in rows]


def delivery_by_id(session: Session, delivery_id: int) -> DeliveryRef | None:
    found = _refs(session, col(Delivery.id) == delivery_id)
    return found[0] if found else None


def delivery_by_message_id(session: Session, message_id: str) -> DeliveryRef | None:
    """The delivery whose Message-ID this is (with or without the angle brackets)."""
    value = message_id.strip()
    if not value:
        return None
    value = value if value.startswith("<") else f"<{value.strip('<>')}>"
    found = _refs(session, col(Delivery.message_id) == value)
    return found[0] if found else None


# ------------------------------------------------------------------ writing events


@dataclass(frozen=True)
class NewEvent:
    event_key: str
    kind: str
    source: str
    occurred_at: datetime
    received_at: datetime
    delivery_id: int | None = None
    subscriber_id: int | None = None
    recipient: str | None = None
    status_code: str | None = None
    diagnostic: str | None = None
    raw_ref: str | None = None
    effect: str | None = None


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_event(session: Session, event: NewEvent) -> int | None:
    """Record ``event``; None when its key was recorded before (the same event again)."""
    if event.kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event.kind!r}")
    values = {
        "event_key": event.event_key[:200],
        "kind": event.kind,
        "source": event.source[:20],
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "delivery_id": event.delivery_id,
        "subscriber_id": event.subscriber_id,
        "recipient": (event.recipient or None) and event.recipient[:320],
        "status_code": (event.status_code or None) and event.status_code[:20],
        "diagnostic": (event.diagnostic or None) and event.diagnostic[:2000],
        "raw_ref": (event.raw_ref or None) and event.raw_ref[:500],
        "effect": event.effect,
    }
    statement = (
        _insert(session)(DeliveryEvent)
        .values(values)
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(col(DeliveryEvent.id))
    )
    return session.execute(statement).scalar()


def set_effect(session: Session, event_id: int, effect: str) -> None:
    session.execute(
        update(DeliveryEvent).where(col(DeliveryEvent.id) == event_id).values(effect=effect)
    )


def event_exists(session: Session, event_key: str) -> bool:
    found = session.exec(
        select(DeliveryEvent.id).where(DeliveryEvent.event_key == event_key[:200])
    ).first()
    return found is not None


def soft_bounced_deliveries(session: Session, subscriber_id: int, since: datetime) -> int:
    """Soft bounces of a member received since ``since``, one per delivery (an event that
    names no delivery counts on its own)."""
    key = func.coalesce(col(DeliveryEvent.delivery_id), -col(DeliveryEvent.id))
    return int(
        session.exec(
            select(func.count(func.distinct(key))).where(
                DeliveryEvent.subscriber_id == subscriber_id,
                DeliveryEvent.kind == SOFT_BOUNCE,
                col(DeliveryEvent.received_at) >= since,
            )
        ).one()
    )


def use_nonce(session: Session, nonce: str, event_key: str, now: datetime) -> str | None:
    """Spend a signature's one-time value; the event key it was spent on before, if it was.

    Old nonces (a day and more) are swept now and then: a signature that old is refused by
    its timestamp anyway.
    """
    inserted = session.execute(
        _insert(session)(WebhookNonce)
        .values(nonce=nonce[:200], event_key=event_key[:200], received_at=now)
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(col(WebhookNonce.nonce))
    ).scalar()
    if inserted is not None:
        if now.second == 0:  # about once a minute under steady traffic
            session.execute(
                delete(WebhookNonce).where(col(WebhookNonce.received_at) < now - timedelta(days=1))
            )
        return None
    return session.exec(
        select(WebhookNonce.event_key).where(WebhookNonce.nonce == nonce[:200])
    ).one()


# ------------------------------------------------------------------ reading events


@dataclass(frozen=True)
class EventRow:
    id: int
    kind: str
    source: str
    occurred_at: datetime
    received_at: datetime
    delivery_id: int | None
    recipient: str | None
    status_code: str | None
    diagnostic: str | None
    raw_ref: str | None
    effect: str | None
    email: str | None = None  # the member it was about, when known

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "occurred_at": self.occurred_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "delivery_id": self.delivery_id,
            "email": self.email,
            "recipient": self.recipient,
            "status_code": self.status_code,
            "diagnostic": self.diagnostic,
            "raw_ref": self.raw_ref,
            "effect": self.effect,
        }


def _event_query() -> Any:
    return select(DeliveryEvent, Subscriber.email).join(
        Subscriber, col(Subscriber.id) == col(DeliveryEvent.subscriber_id), isouter=True
    )


def _row(event: DeliveryEvent, email: str | None) -> EventRow:
    return EventRow(
        id=event.id or 0,
        kind=event.kind,
        source=event.source,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        delivery_id=event.delivery_id,
        recipient=event.recipient,
        status_code=event.status_code,
        diagnostic=event.diagnostic,
        raw_ref=event.raw_ref,
        effect=event.effect,
        email=email,
    )


def events_by_delivery(session: Session, delivery_ids: Iterable[int]) -> dict[int, list[EventRow]]:
    """Each delivery's events, oldest first."""
    out: dict[int, list[EventRow]] = {}
    ids = sorted(set(delivery_ids))
    for part in chunks(ids):
        rows = session.exec(
            _event_query()
            .where(col(DeliveryEvent.delivery_id).in_(part))
            .order_by(col(DeliveryEvent.received_at), col(DeliveryEvent.id))
        ).all()
        for event, email in rows:
            assert event.delivery_id is not None
            out.setdefault(event.delivery_id, []).append(_row(event, email))
    return out


def list_events(
    session: Session,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    limit: int | None = 100,
) -> list[EventRow]:
    """Events, newest first."""
    query = _event_query()
    if kind is not None:
        query = query.where(DeliveryEvent.kind == kind)
    if since is not None:
        query = query.where(col(DeliveryEvent.received_at) >= since)
    query = query.order_by(col(DeliveryEvent.received_at).desc(), col(DeliveryEvent.id).desc())
    if limit:
        query = query.limit(limit)
    return [_row(event, email) for event, email in session.exec(query).all()]


def event_counts(session: Session, since: datetime | None = None) -> dict[str, int]:
    """Events received by kind (every kind, zeros included), since ``since`` if given.
    ``unclassified`` is the inbound mail kept for a person to read."""
    query = select(DeliveryEvent.kind, func.count()).group_by(col(DeliveryEvent.kind))
    if since is not None:
        query = query.where(col(DeliveryEvent.received_at) >= since)
    found = dict(session.exec(query).all())
    return {kind: int(found.get(kind, 0)) for kind in EVENT_KINDS}


# ------------------------------------------------------------------ rates


@dataclass(frozen=True)
class Rates:
    """Bounces and complaints among deliveries that reached a verdict.

    ``attempted``: deliveries sent, plus those the server refused as a hard bounce in the
    session. Each kind counts deliveries, not events.
    """

    attempted: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.attempted if self.attempted else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.attempted if self.attempted else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "hard_bounces": self.hard_bounces,
            "soft_bounces": self.soft_bounces,
            "complaints": self.complaints,
            "unsubscribes": self.unsubscribes,
            "bounce_rate": round(self.bounce_rate, 6),
            "complaint_rate": round(self.complaint_rate, 6),
        }


_SESSION_HARD = and_(
    col(Delivery.status) == FAILED, col(Delivery.smtp_code).in_(sorted(HARD_BOUNCE_CODES))
)
_VERDICT = or_(col(Delivery.status) == SENT, _SESSION_HARD)
_COUNTED = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE)


def _finished_since(since: datetime | None) -> Any:
    if since is None:
        return _VERDICT
    return or_(
        and_(col(Delivery.status) == SENT, col(Delivery.sent_at) >= since),
        and_(_SESSION_HARD, col(Delivery.updated_at) >= since),
    )


def edition_rates(session: Session, since: datetime | None = None) -> dict[str, Rates]:
    """Rates per edition key, over deliveries finished since ``since`` (all when None)."""
    finished = _finished_since(since)
    base: dict[str, tuple[int, int]] = {}
    for edition, attempted, in_session in session.exec(
        select(
            Delivery.edition,
            func.count(),
            func.sum(case((_SESSION_HARD, 1), else_=0)),
        )
        .where(finished)
        .group_by(col(Delivery.edition))
    ).all():
        base[edition] = (int(attempted), int(in_session or 0))
    kinds: dict[str, dict[str, int]] = {}
    for edition, kind, count in session.exec(
        select(Delivery.edition, DeliveryEvent.kind, func.count(func.distinct(Delivery.id)))
        .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
        .where(finished, col(DeliveryEvent.kind).in_(_COUNTED))
        .group_by(col(Delivery.edition), col(DeliveryEvent.kind))
    ).all():
        kinds.setdefault(edition, {})[kind] = int(count)
    return {
        edition: _rates(attempted, in_session, kinds.get(edition, {}))
        for edition, (attempted, in_session) in sorted(base.items())
    }


def recent_rates(session: Session, now: datetime, days: int = 7) -> Rates:
    """Rates over the deliveries finished in the last ``days`` days."""
    finished = _finished_since(now - timedelta(days=days))
    attempted, in_session = session.exec(
        select(func.count(), func.sum(case((_SESSION_HARD, 1), else_=0))).where(finished)
    ).one()
    kinds = dict(
        session.exec(
            select(DeliveryEvent.kind, func.count(func.distinct(Delivery.id)))
            .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
            .where(finished, col(DeliveryEvent.kind).in_(_COUNTED))
            .group_by(col(DeliveryEvent.kind))
        ).all()
    )
    return _rates(int(attempted or 0), int(in_session or 0), kinds)


def window_rates(session: Session, window: int, since: datetime | None = None) -> Rates:
    """Rates over the last ``window`` deliveries that reached a verdict (newest ids), counting
    only bounces and complaints that arrived after ``since`` (the brake's last resume)."""
    last = (
        select(Delivery.id, Delivery.status, Delivery.smtp_code, Delivery.updated_at)
        .where(_VERDICT)
        .order_by(col(Delivery.id).desc())
        .limit(window)
        .subquery()
    )
    in_session = last.c.status == FAILED
    if since is not None:
        in_session = and_(in_session, last.c.updated_at > since)
    attempted, session_hard = session.exec(
        select(func.count(), func.sum(case((in_session, 1), else_=0))).select_from(last)
    ).one()
    query = (
        select(DeliveryEvent.kind, func.count(func.distinct(col(DeliveryEvent.delivery_id))))
        .join(last, last.c.id == col(DeliveryEvent.delivery_id))
        .where(col(DeliveryEvent.kind).in_(_COUNTED))
        .group_by(col(DeliveryEvent.kind))
    )
    if since is not None:
        query = query.where(col(DeliveryEvent.received_at) > since)
    kinds = dict(session.exec(query).all())
    return _rates(int(attempted or 0), int(session_hard or 0), kinds)


def _rates(attempted: int, in_session: int, kinds: dict[str, int]) -> Rates:
    return Rates(
        attempted=attempted,
        hard_bounces=in_session + int(kinds.get(HARD_BOUNCE, 0)),
        soft_bounces=int(kinds.get(SOFT_BOUNCE, 0)),
        complaints=int(kinds.get(COMPLAINT, 0)),
        unsubscribes=int(kinds.get(UNSUBSCRIBE, 0)),
    )
