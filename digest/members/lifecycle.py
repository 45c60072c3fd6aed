"""The membership lifecycle: request a subscription, confirm it, change preferences, leave.

Members never log in: every step after the request is opened by a signed link bound to the
member and its purpose (``digest.tokens``). The steps take what they need as arguments (the
store, the link signer, the clock and the outbound door), not a web request, so the web pages
are HTTP handlers over them and tests drive them without HTTP.

A visitor's request is validated once (``rules.parse_profile``) into a ``MemberRecord``;
that record is what the confirmation link carries (signed) and what the store writes, with no
second parse on the way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Engine
from sqlmodel import Session

from digest import catalog
from digest.archive import store as archive_store
from digest.clock import Clock
from digest.content import MemberView
from digest.db import session_scope
from digest.members.rules import (
    ACTIVE,
    PAUSED,
    PENDING,
    SUBSCRIBED_STATUSES,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    MemberRecord,
    SuppressedMember,
)
from digest.members.store import add_member, get_member, member_by_id, set_status
from digest.models import Subscriber
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenData, TokenSigner

if TYPE_CHECKING:  # the door is passed in; members sit below it
    from digest.outbound import Outbound

log = logging.getLogger(__name__)

#: Fields a preferences form writes.
_REQUESTED = frozenset({"topics", "follows", "frequency", "timezone", "send_hour"})
#: Fields a confirmed request writes: all of them, the name too (blank included), so the
#: request the owner confirmed replaces whatever an earlier one asked for.
_CONFIRMED = _REQUESTED | {"name"}

#: What a preferences page may do, and the notice each leaves.
ACTIONS = ("save", "pause", "resume", "unsubscribe")


@dataclass(frozen=True)
class Requested:
    """What a subscribe request did: which mail went out (``confirm``, ``preferences``, or
    none because the address had its share of mails for now: ``limited``, with the seconds
    until another may go in ``wait``) and whether the server took it."""

    kind: str
    sent: bool
    wait: float | None = None


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link is for: the member, what they asked for, and whether they
    are subscribed already (then the link has nothing left to do)."""

    member: MemberView
    asked: MemberRecord
    already: bool


class Membership:
    """The lifecycle over one store; one instance per process, shared by its requests.

    ``mail_allowance(email)`` says how long until the address may be mailed again from a
    subscribe request (None: now); it bounds what the form can make anyone receive.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        signer: TokenSigner,
        outbound: Outbound,
        clock: Clock,
        mail_allowance: Callable[[str], float | None] = lambda email: None,
    ) -> None:
        self.engine, self.settings, self.signer = engine, settings, signer
        self.outbound, self.clock = outbound, clock
        self.mail_allowance = mail_allowance
        self._profiles = URLSafeSerializer(settings.secret_key, salt="digest.confirm-profile")

    # -- links

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/{path}/{token}"

    def preferences_url(self, member_id: int, email: str, now: datetime) -> str:
        return self._link("preferences", self.signer.make(member_id, email, "preferences", now))

    def _max_age(self, purpose: str) -> timedelta | None:
        days = {
            "confirm": self.settings.confirm_link_days,
            "preferences": self.settings.preferences_link_days,
        }.get(purpose)
        return None if days is None else timedelta(days=max(1, days))

    def _member(self, session: Session, token: str, purpose: str) -> tuple[Subscriber, TokenData]:
        """The member a link is for; InvalidToken if forged, expired or not theirs."""
        now = self.clock()
        max_age = self._max_age(purpose)
        data = self.signer.decode(token, purpose, now, max_age)
        member = member_by_id(session, data.member_id)
        if member is None:
            raise InvalidToken("no such member")
        self.signer.verify_for(token, purpose, data.member_id, member.email, now, max_age)
        return member, data

    @staticmethod
    def _view(session: Session, member: Subscriber) -> MemberView:
        return catalog.member_views(session, [member])[0]

    # -- the request's profile, sealed into the confirmation link

    @staticmethod
    def _tag(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]

    def seal(self, token: str, record: MemberRecord) -> str:
        """The requested profile, signed and bound to one confirm token."""
        return self._profiles.dumps({"k": self._tag(token), **record.as_json()})

    def unseal(self, token: str, sealed: str | None, email: str) -> MemberRecord | None:
        if not sealed:
            return None
        try:
            data = self._profiles.loads(sealed)
            if not isinstance(data, dict) or data.get("k") != self._tag(token):
                raise InvalidToken("profile belongs to another link")
            return MemberRecord.from_json(email, data)
        except (BadSignature, ValueError, TypeError):
            raise InvalidToken("altered confirmation link") from None

    # -- subscribe

    def request(self, record: MemberRecord) -> Requested:
        """Create or find the member and mail them.

        New and pending members get a confirmation link; unsubscribed or bounced ones too
        (only their own click reactivates them); subscribed members get a link to their
        preferences and nothing about them changes, so a stranger cannot alter a subscription.

        Anyone can ask for any address, so nothing the visitor typed reaches the mail or the
        store's row: the confirmation is addressed and worded without a name, and a new
        pending row has none. The requested profile, name included, travels sealed in the
        link and becomes the member's only when the owner confirms that request.
        """
        now = self.clock()
        wait = self.mail_allowance(record.email)
        if wait is not None:
            # Said as it is ("we already sent you a link"): the cap counts requests for any
            # address, member or not, so saying so tells nothing about membership, and the
            # owner learns to use the link they have instead of waiting for one that never
            # comes. Nothing about the member changes; the links already sent keep working.
            log.warning("subscribe: %s has had its share of mails for now; none sent", record.email)
            return Requested("limited", False, wait)
        with session_scope(self.engine) as session:
            member = get_member(session, record.email)
            if member is None:
                add_member(session, dataclasses.replace(record, name=""), now, status=PENDING)
                member = get_member(session, record.email)
                assert member is not None
            view = self._view(session, member)
            found = (archive_store.find_resource(session, given) for given in record.follows)
            following = [r.name for r in found if r is not None]
        if view.status in SUBSCRIBED_STATUSES:
            url = self.preferences_url(view.id, view.email, now)
            sent = self.outbound.notice("manage", view, {"preferences_url": url}, now)
            return Requested("preferences", sent.ok)
        token = self.signer.make(view.id, view.email, "confirm", now)
        url = f"{self._link('confirm', token)}?p={self.seal(token, record)}"
        nameless = dataclasses.replace(view, name="")  # To: the bare address
        asked = MemberView(
            id=view.id,
            email=view.email,
            name="",
            status=view.status,
            frequency=record.frequency,
            timezone=record.timezone,
            send_hour=record.send_hour,
            topics=record.topics,  # chosen among the offered topics: our words, not theirs
        )
        # the people and organisations asked for, by their names in the store
        context = {"confirm_url": url, "member": asked, "following": following}
        sent = self.outbound.notice("confirm", nameless, context, now)
        return Requested("confirm", sent.ok)

    # -- confirm

    @staticmethod
    def _stale(member: Subscriber, data: TokenData) -> bool:
        """A confirm link older than the unsubscribe or bounce must not undo it."""
        return member.status in SUPPRESSED_STATUSES and data.issued_at < member.updated_at.replace(
            microsecond=0
        )

    def confirmation(self, token: str, sealed: str | None) -> Confirmation:
        """What the link would confirm (the page asks before anything changes)."""
        with Session(self.engine) as session:
            member, data = self._member(session, token, "confirm")
            view = self._view(session, member)
            already = view.status in SUBSCRIBED_STATUSES
            if not already and self._stale(member, data):
                raise InvalidToken("stale")
        asked = self.unseal(token, sealed, view.email) or MemberRecord(
            view.email, view.name, view.topics, view.frequency, view.timezone, view.send_hour
        )
        return Confirmation(view, asked, already)

    def confirm(self, token: str, sealed: str | None) -> MemberView:
        """Activate the member with the profile they asked for; repeated, it changes nothing."""
        now = self.clock()
        with session_scope(self.engine) as session:
            member, data = self._member(session, token, "confirm")
            if member.status in SUBSCRIBED_STATUSES:
                return self._view(session, member)
            if self._stale(member, data):
                raise InvalidToken("stale")
            asked = self.unseal(token, sealed, member.email)
            if asked is not None:
                add_member(session, asked, now, given=_CONFIRMED, reactivate=True)
            set_status(
                session, member.email, ACTIVE, "confirmed by the member (double opt-in)", now
            )
            stored = get_member(session, member.email)
            assert stored is not None
            return self._view(session, stored)

    # -- preferences

    def preferences(self, token: str) -> MemberView:
        """The member a preferences link opens."""
        with Session(self.engine) as session:
            member, _ = self._member(session, token, "preferences")
            return self._view(session, member)

    def change(self, token: str, action: str, record: MemberRecord | None = None) -> str:
        """Save (``record``), pause, resume or unsubscribe for the link's member.

        Returns the action done; raises SuppressedMember for anything but unsubscribing an
        unsubscribed or bounced member (only a new subscription brings them back).
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        now = self.clock()
        with session_scope(self.engine) as session:
            member, _ = self._member(session, token, "preferences")
            email = member.email
            if action == "unsubscribe":
                if member.status not in SUPPRESSED_STATUSES:
                    set_status(
                        session, email, UNSUBSCRIBED, "unsubscribed on preferences page", now
                    )
                return "unsubscribed"
            if member.status in SUPPRESSED_STATUSES:
                raise SuppressedMember(email, member.status)
            if action == "pause":
                if member.status != PAUSED:
                    set_status(session, email, PAUSED, "paused by the member", now)
                return "paused"
            if action == "resume":
                if member.status != ACTIVE:
                    set_status(session, email, ACTIVE, "resumed by the member", now)
                return "resumed"
            assert record is not None
            mine = dataclasses.replace(record, email=email)  # the link decides who, not the form
            add_member(session, mine, now, given=_REQUESTED)
            return "saved"

    # -- unsubscribe

    def unsubscribing(self, token: str) -> MemberView:
        """The member an unsubscribe link is for (the page asks before anything changes)."""
        with Session(self.engine) as session:
            member, _ = self._member(session, token, "unsubscribe")
            return self._view(session, member)

    def unsubscribe(self, token: str, how: str) -> MemberView:
        """Unsubscribe the link's member; idempotent, and a bounce stays a bounce."""
        now = self.clock()
        with session_scope(self.engine) as session:
            member, _ = self._member(session, token, "unsubscribe")
            if member.status not in SUPPRESSED_STATUSES:
                set_status(session, member.email, UNSUBSCRIBED, how, now)
            return self._view(session, member)
