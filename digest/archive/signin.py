"""Members sign in to the archive with a one-time link sent by email (no password).

A link names a random nonce, signed (itsdangerous) so a guessed or altered one is refused
before the store is asked. Its row says who it is for, when it was made and whether it was
used: a link works once, for ``LINK_MINUTES`` after it was made, and using it is one
conditional UPDATE, so two clicks racing each other sign in once. Asking for a link never
says whether the address is a member's: the caller answers the same words either way, and
only members are mailed (through ``outbound``, the one door for mail that is not a digest).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Engine, delete, update
from sqlmodel import Session, col

from digest import catalog
from digest.db import session_scope
from digest.members.rules import SUBSCRIBED_STATUSES, MemberError, normalize_email
from digest.members.store import get_member, member_by_id
from digest.models import SignInLink
from digest.outbound import Outbound

log = logging.getLogger(__name__)

#: How long a sign-in link works.
LINK_MINUTES = 20
#: Used and expired links are kept this long (then deleted when new ones are made).
KEEP_DAYS = 2


class SignInRefused(Exception):
    """The link cannot sign anyone in; ``reason``: invalid, expired or used."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LinkStatus:
    member_id: int
    created_at: datetime
    next_path: str


class SignIn:
    """Makes, mails, checks and uses one-time sign-in links; takes the store, the outbound
    door, the secret and the clock."""

    def __init__(
        self,
        engine: Engine,
        outbound: Outbound,
        secret_key: str,
        base_url: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.outbound = outbound
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._serializer = URLSafeSerializer(secret_key, salt="digest.signin-link")

    @property
    def lifetime(self) -> timedelta:
        return timedelta(minutes=LINK_MINUTES)

    def request(self, email: str, next_path: str = "/archive") -> bool:
        """Mail a link if ``email`` is a subscribed member's; True if one was sent. Using the
        link leads to ``next_path`` (a path on this site, checked by the caller).

        The caller must answer the same whatever this returns.
        """
        try:
            address = normalize_email(email, "signin")
        except MemberError:
            return False
        now = self.clock()
        with session_scope(self.engine) as session:
            member = get_member(session, address)
            if member is None or member.status not in SUBSCRIBED_STATUSES:
                return False
            assert member.id is not None
            nonce = secrets.token_urlsafe(24)
            session.add(SignInLink(nonce=nonce, subscriber_id=member.id, created_at=now))
            session.execute(
                delete(SignInLink).where(
                    col(SignInLink.created_at) < now - timedelta(days=KEEP_DAYS)
                )
            )
            view = catalog.member_views(session, [member])[0]
        token = self._serializer.dumps({"n": nonce, "t": next_path})
        url = f"{self.base_url}/signin/{token}"
        sent = self.outbound.notice(
            "signin", view, {"signin_url": url, "minutes": LINK_MINUTES}, now
        )
        log.info("sign-in link for member %s: %s", view.id, sent.server_said or "sent")
        return sent.ok

    def _payload(self, token: str) -> tuple[str, str]:
        """(nonce, the path to go to) from a link's token; ``SignInRefused`` if forged."""
        if len(token) > 1024:
            raise SignInRefused("invalid")
        try:
            data = self._serializer.loads(token)
        except (BadSignature, UnicodeError, ValueError):
            raise SignInRefused("invalid") from None
        if not isinstance(data, dict):
            raise SignInRefused("invalid")
        nonce, target = data.get("n"), data.get("t")
        if not isinstance(nonce, str) or len(nonce) > 64 or not isinstance(target, str):
            raise SignInRefused("invalid")
        return nonce, target

    def check(self, token: str) -> LinkStatus:
        """What the link would do, changing nothing (a GET, or a mail scanner, may look)."""
        nonce, target = self._payload(token)
        with Session(self.engine) as session:
            row = session.get(SignInLink, nonce)
            if row is None:
                raise SignInRefused("invalid")
            if row.used_at is not None:
                raise SignInRefused("used")
            if self.clock() > row.created_at + self.lifetime:
                raise SignInRefused("expired")
            member = member_by_id(session, row.subscriber_id)
            if member is None or member.status not in SUBSCRIBED_STATUSES:
                raise SignInRefused("invalid")
            return LinkStatus(row.subscriber_id, row.created_at, target)

    def use(self, token: str) -> LinkStatus:
        """Spend the link (once: a second use or a late one is refused): whom it signs in
        and where they were going."""
        status = self.check(token)
        nonce, _ = self._payload(token)
        now = self.clock()
        with session_scope(self.engine) as session:
            spent = session.execute(
                update(SignInLink)
                .where(
                    col(SignInLink.nonce) == nonce,
                    col(SignInLink.used_at).is_(None),
                    col(SignInLink.created_at) >= now - self.lifetime,
                )
                .values(used_at=now)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise SignInRefused("used")
        return status

    def member(self, member_id: int) -> tuple[str, str] | None:
        """(status, address) of the member now, or None: a session lasts only while they
        are a member."""
        with Session(self.engine) as session:
            member = member_by_id(session, member_id)
            return (member.status, member.email) if member is not None else None
