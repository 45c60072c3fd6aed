"""One way in for everything that comes back: find what it is about, record it, act on it.

The SMTP receiver (``digest inbound``), the IMAP poller (``digest bounces poll``) and the
provider webhooks all end here, so a bounce has the same effect whichever way it came:

1. **What it is about.** Mail is unauthenticated, so only signed or unguessable claims count:
   a VERP return path whose token verifies (a forged token stops here: the event is kept, and
   nothing else happens), else one of our Message-IDs quoted in it, else a signed unsubscribe
   token. A provider event's signature has been checked by the door it came through, so the
   recipient it names is trusted too.
2. **Recorded once.** Every event has a key (the provider's event id, or a hash of the message
   received); the same event again is a duplicate and changes nothing.
3. **Its effect, through the members store.** A hard bounce marks the member ``bounced``;
   soft bounces do once ``soft_bounce_limit`` editions bounced within ``soft_bounce_days``;
   a complaint or an unsubscribe unsubscribes (and so suppresses) the address at once.
4. **The brake.** A complaint or a hard bounce may push the rates past their limits.

Every received message is kept as an ``.eml`` file in ``inbound_dir`` before anything else,
so a message that cannot be classified, or whose processing failed, is never lost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from digest import brake
from digest.db import session_scope
from digest.feedback import store
from digest.feedback.classify import Report, classify_message
from digest.feedback.verp import Verp, verp_from_settings
from digest.members import (
    BOUNCED,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    get_member,
    normalize_email,
    set_status,
)
from digest.members.rules import MemberError
from digest.models import (
    COMPLAINT,
    DELAYED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    UNCLASSIFIED,
    UNSUBSCRIBE,
    Subscriber,
)
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenSigner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One event to record, whichever door it came through, with what it claims to be about."""

    kind: str
    source: str  # smtp | lmtp | imap | file | ses | mailgun | postmark | sendgrid
    event_key: str
    detail: str = ""
    occurred_at: datetime | None = None
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    raw_ref: str | None = None
    verp_addresses: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    unsubscribe_tokens: tuple[str, ...] = ()
    #: the door checked a provider's signature: the recipient it names is who it is about
    trusted_recipient: bool = False


@dataclass(frozen=True)
class Recorded:
    """What became of one event."""

    kind: str
    effect: str
    duplicate: bool = False
    event_id: int | None = None
    delivery_id: int | None = None
    email: str | None = None
    changed_member: bool = False
    raw_ref: str | None = None


@dataclass
class _Target:
    delivery: store.DeliveryRef | None = None
    member_id: int | None = None
    email: str | None = None
    why: str = "nothing in it names a delivery or member of ours"
    refused: bool = False  # a claim that does not verify: no other claim is considered

    @property
    def found(self) -> bool:
        return self.member_id is not None


@dataclass
class IntakeCounts:
    """What a batch of messages or events did (for the poller's and the CLI's summary)."""

    received: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    changed_members: int = 0

    def add(self, recorded: Recorded) -> None:
        self.received += 1
        self.by_kind[recorded.kind] = self.by_kind.get(recorded.kind, 0) + 1
        self.duplicates += recorded.duplicate
        self.changed_members += recorded.changed_member

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())) or "nothing"
        return (
            f"{self.received} received ({kinds}); {self.changed_members} members changed, "
            f"{self.duplicates} duplicates"
        )


def fingerprint(data: bytes) -> str:
    """What a received message is known by: the same bytes twice are one event."""
    return hashlib.sha256(data).hexdigest()


class Intake:
    """Records and acts on returned mail and provider events for one store."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.verp: Verp | None = verp_from_settings(settings.bounce_address, settings.secret_key)
        self.signer = TokenSigner(settings.secret_key)
        self.folder = Path(settings.inbound_dir)

    # -- mail

    def keep(self, raw: bytes, now: datetime) -> str:
        """Keep the message as ``inbound_dir/<day>/<sha256>.eml``; its path is the raw ref.

        Written aside and renamed, so a file there is always whole; the same bytes twice are
        one file.
        """
        digest = fingerprint(raw)
        day = self.folder / now.strftime("%Y-%m-%d")
        target = day / f"{digest[:40]}.eml"
        if not target.exists():
            day.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=day, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return str(target.resolve())

    def receive_mail(
        self, raw: bytes, source: str, envelope_recipients: Sequence[str] = ()
    ) -> Recorded:
        """Keep, classify and record one received message (an SMTP envelope's recipients
        are where a VERP token is read first)."""
        now = self.clock()
        raw_ref = self.keep(raw, now)
        report = classify_message(raw, self.settings.from_domain)
        return self.record(self.from_report(report, raw, source, envelope_recipients, raw_ref))

    @staticmethod
    def from_report(
        report: Report,
        raw: bytes,
        source: str,
        envelope_recipients: Sequence[str] = (),
        raw_ref: str | None = None,
    ) -> Incoming:
        return Incoming(
            kind=report.kind,
            source=source,
            event_key=f"mail:{fingerprint(raw)}",
            detail=report.detail,
            occurred_at=report.occurred_at,
            recipient=report.recipients[0] if report.recipients else None,
            status=report.status,
            diagnostic=_diagnostic(report),
            raw_ref=raw_ref,
            verp_addresses=tuple(envelope_recipients) + report.addresses,
            message_ids=report.message_ids,
            unsubscribe_tokens=report.unsubscribe_tokens,
        )

    # -- any event

    def record(self, incoming: Incoming) -> Recorded:
        """Record ``incoming`` once and apply its effect, in one transaction."""
        now = self.clock()
        with session_scope(self.engine) as session:
            target = self._identify(session, incoming, now)
            event_id = store.insert_event(
                session,
                store.NewEvent(
                    event_key=incoming.event_key,
                    kind=incoming.kind,
                    source=incoming.source,
                    occurred_at=incoming.occurred_at or now,
                    received_at=now,
                    delivery_id=target.delivery.id if target.delivery else None,
                    subscriber_id=target.member_id,
                    recipient=incoming.recipient,
                    status_code=incoming.status,
                    diagnostic=incoming.diagnostic,
                    raw_ref=incoming.raw_ref,
                ),
            )
            if event_id is None:
                log.info("%s %s: already recorded", incoming.source, incoming.event_key)
                return Recorded(
                    incoming.kind,
                    "none: this event was recorded before",
                    duplicate=True,
                    email=target.email,
                    raw_ref=incoming.raw_ref,
                )
            effect, changed = self._apply(session, incoming, target, now)
            store.set_effect(session, event_id, effect)
        log.log(
            logging.WARNING if incoming.kind == UNCLASSIFIED or target.refused else logging.INFO,
            "%s %s for %s (%s): %s",
            incoming.source,
            incoming.kind,
            target.email or incoming.recipient or "unknown",
            incoming.detail or incoming.diagnostic or "-",
            effect,
        )
        if target.delivery is not None and incoming.kind in (COMPLAINT, HARD_BOUNCE):
            brake.evaluate(self.engine, self.settings, now)  # it counts towards the rates
        return Recorded(
            incoming.kind,
            effect,
            event_id=event_id,
            delivery_id=target.delivery.id if target.delivery else None,
            email=target.email,
            changed_member=changed,
            raw_ref=incoming.raw_ref,
        )

    def _identify(self, session: Session, incoming: Incoming, now: datetime) -> _Target:
        """Which delivery and member ``incoming`` is about, by the claims that can be trusted."""
        if self.verp is not None:
            tokens = [t for a in incoming.verp_addresses if (t := self.verp.parse(a))]
            for token in tokens:
                ref = store.delivery_by_id(session, token.delivery_id)
                if ref is not None and self.verp.verify(token, ref.message_id):
                    return _Target(ref, ref.subscriber_id, ref.email, "VERP return path")
            if tokens:
                return _Target(
                    why="its VERP token does not verify (forged, or from another store)",
                    refused=True,
                )
        for message_id in incoming.message_ids:
            ref = store.delivery_by_message_id(session, message_id)
            if ref is None:
                continue
            if (
                incoming.trusted_recipient
                and incoming.recipient
                and not _same(ref.email, incoming.recipient)
            ):
                continue  # the provider names someone else: believe the provider
            return _Target(ref, ref.subscriber_id, ref.email, "Message-ID")
        for token in incoming.unsubscribe_tokens:
            member = self._token_member(session, token, now)
            if member is not None:
                return _Target(None, member.id, member.email, "signed unsubscribe token")
        if incoming.unsubscribe_tokens and incoming.kind == UNSUBSCRIBE:
            return _Target(why="its unsubscribe token does not verify", refused=True)
        if incoming.trusted_recipient and incoming.recipient:
            member = get_member(session, incoming.recipient)
            if member is not None and member.id is not None:
                return _Target(None, member.id, member.email, "recipient named by the provider")
        return _Target()

    def _token_member(self, session: Session, token: str, now: datetime) -> Subscriber | None:
        """The member a signed unsubscribe token is for (it never expires), or None."""
        try:
            data = self.signer.decode(token, "unsubscribe", now)
            member = session.get(Subscriber, data.member_id)
            if member is None:
                return None
            self.signer.verify_for(token, "unsubscribe", data.member_id, member.email, now)
        except InvalidToken:
            return None
        return member

    def _apply(
        self, session: Session, incoming: Incoming, target: _Target, now: datetime
    ) -> tuple[str, bool]:
        """The event's effect on its member, worded for the event row; and whether it changed."""
        kind = incoming.kind
        if kind == UNCLASSIFIED:
            return f"none: kept for a person to read ({incoming.detail})", False
        if kind == DELAYED:
            return "none: a delay, not a failure", False
        if not target.found or target.email is None:
            return f"none: {target.why}", False
        member = get_member(session, target.email)
        if member is None:
            return "none: the member no longer exists", False
        status = member.status
        how = f"{incoming.source}: {incoming.detail or kind}"
        if kind == HARD_BOUNCE:
            if status in SUPPRESSED_STATUSES:
                return f"none: member already {status}", False
            reason = f"hard bounce ({how}) {incoming.status or ''}".strip()
            return self._set(session, member, BOUNCED, reason, now, "member bounced")
        if kind == SOFT_BOUNCE:
            days, limit = self.settings.soft_bounce_days, self.settings.soft_bounce_limit
            count = store.soft_bounced_deliveries(session, member.id or 0, now - timedelta(days))
            if status in SUPPRESSED_STATUSES:
                return f"none: member already {status}", False
            if count < limit:
                return f"counted: {count} of {limit} soft bounces within {days} days", False
            reason = f"{count} soft bounces within {days} days, last: {how}"
            return self._set(
                session,
                member,
                BOUNCED,
                reason,
                now,
                f"member bounced ({count} soft bounces within {days} days)",
            )
        if kind in (COMPLAINT, UNSUBSCRIBE):
            if status in SUPPRESSED_STATUSES:
                return f"none: member already {status}", False
            word = "complaint" if kind == COMPLAINT else "unsubscribe request"
            return self._set(
                session, member, UNSUBSCRIBED, f"{word} ({how})", now, "member unsubscribed"
            )
        return "none", False

    @staticmethod
    def _set(
        session: Session,
        member: Subscriber,
        status: str,
        reason: str,
        now: datetime,
        effect: str,
    ) -> tuple[str, bool]:
        set_status(session, member.email, status, reason[:1000], now)
        return effect, True


def _same(a: str, b: str) -> bool:
    try:
        return normalize_email(a) == normalize_email(b)
    except MemberError:
        return a.strip().lower() == b.strip().lower()


def _diagnostic(report: Report) -> str:
    parts = [report.detail]
    if report.diagnostic:
        parts.append(report.diagnostic)
    return "; ".join(parts)
