"""Signed, expiring tokens for confirm / preferences / unsubscribe links.

A token is bound to its *purpose* (the itsdangerous salt, so an unsubscribe token never opens
the preferences page) and to its *member* (id plus a keyed hash of the address, so a token
cannot be replayed for another member, nor for a new member who re-uses a deleted id). Time
comes from the caller (``now``), never from the system clock, so tests drive expiry directly.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from itsdangerous import BadSignature, Signer, URLSafeSerializer

from digest.content import DigestLinks, MemberView

PURPOSES = frozenset({"unsubscribe", "preferences", "confirm"})

#: Tolerated clock skew between the host that signed and the host that verifies.
FUTURE_SKEW = timedelta(minutes=5)


class _Signer(Signer):
    """itsdangerous' signer with its derived key worked out once, not for every signature.

    The serializer builds a signer per token and the default derives the key (a hash of salt
    and secret) each time; a send run signs two links per message.
    """

    _derived: dict[tuple[bytes, bytes, str], bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else secret_key
        secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        key = (secret, self.salt, self.key_derivation)
        derived = self._derived.get(key)
        if derived is None:
            derived = self._derived[key] = super().derive_key(secret_key)
        return derived


class InvalidToken(Exception):  # noqa: N818 - the public name the web layer catches
    """The token is forged, altered, expired, for another purpose or for another member."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenData:
    member_id: int
    email_hash: str
    issued_at: datetime


@dataclass(frozen=True)
class ClickData:
    """What an article's click link names: never the member unless they are tracked."""

    edition: str
    article_id: int
    position: str
    topic: str = ""
    member_id: int | None = None


#: A click token's longest accepted form (an edition key, an id, a position, a topic slug).
MAX_CLICK_TOKEN = 600


def _epoch(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; use one of {sorted(PURPOSES)}")


class TokenSigner:
    """Makes and checks link tokens; one instance per secret key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError(
                "secret key is empty: set DIGEST_SECRET_KEY in the environment "
                "(a long random string) so links can be signed"
            )
        self._key = secret_key.encode("utf-8")
        self._serializers = {
            purpose: URLSafeSerializer(secret_key, salt=f"digest.{purpose}", signer=_Signer)
            for purpose in PURPOSES
        }
        self._signers = {p: s.make_signer() for p, s in self._serializers.items()}
        # "view in browser" links name a delivery, not a member: a payload of their own
        self._view = URLSafeSerializer(secret_key, salt="digest.view", signer=_Signer)
        self._view_signer = self._view.make_signer()
        # article click links: edition, article, position, topic (and member when tracked)
        self._click = URLSafeSerializer(secret_key, salt="digest.click", signer=_Signer)
        self._click_signer = self._click.make_signer()
        # an editor's one-time sign-in link: the account and its current login nonce
        self._editor = URLSafeSerializer(secret_key, salt="digest.editor-link", signer=_Signer)

    def email_hash(self, email: str) -> str:
        """A short keyed hash: identifies the address without revealing it in the link."""
        digest = hmac.digest(self._key, email.strip().lower().encode("utf-8"), "sha256")
        return base64.urlsafe_b64encode(digest[:9]).decode("ascii")

    def make(
        self, member_id: int, email: str, purpose: str, now: datetime, email_hash: str = ""
    ) -> str:
        """A token; ``email_hash`` may be passed when the caller already has it."""
        return self.make_many(member_id, email, (purpose,), now, email_hash)[0]

    def make_many(
        self,
        member_id: int,
        email: str,
        purposes: tuple[str, ...],
        now: datetime,
        email_hash: str = "",
    ) -> list[str]:
        """One token per purpose for the same member and time, exactly as ``make`` gives them.

        The payload is encoded once and each purpose's signer is kept: every message carries
        two links, so this runs for every member of every send.
        """
        for purpose in purposes:
            _check_purpose(purpose)
        payload = [int(member_id), email_hash or self.email_hash(email), _epoch(now)]
        encoded = self._serializers[purposes[0]].dump_payload(payload)
        return [self._signers[p].sign(encoded).decode("utf-8") for p in purposes]

    def decode(
        self, token: str, purpose: str, now: datetime, max_age: timedelta | None = None
    ) -> TokenData:
        """Check signature, purpose and age; the member binding is left to the caller."""
        _check_purpose(purpose)
        try:
            payload = self._serializers[purpose].loads(token)
        except BadSignature:
            raise InvalidToken("bad signature or wrong purpose") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or not all(isinstance(x, t) for x, t in zip(payload, (int, str, int), strict=True))
            or isinstance(payload[0], bool)
        ):
            raise InvalidToken("malformed payload")
        member_id, email_hash, issued = payload
        issued_at = datetime.fromtimestamp(issued, UTC)
        current = _epoch(now)
        if issued - current > FUTURE_SKEW.total_seconds():
            raise InvalidToken("issued in the future")
        if max_age is not None and current - issued > max_age.total_seconds():
            raise InvalidToken("expired")
        return TokenData(member_id, email_hash, issued_at)

    def make_view(self, delivery_id: int, now: datetime) -> str:
        """A token for one delivery's web copy: its id and the time, signed; nothing personal."""
        payload = self._view.dump_payload([int(delivery_id), _epoch(now)])
        return self._view_signer.sign(payload).decode("utf-8")

    def verify_view(self, token: str, now: datetime, max_age: timedelta | None = None) -> int:
        """The delivery id a view token was made for; InvalidToken if forged or expired."""
        try:
            payload = self._view.loads(token)
        except BadSignature:
            raise InvalidToken("bad signature") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not all(type(x) is int for x in payload)
        ):
            raise InvalidToken("malformed payload")
        delivery_id, issued = payload
        current = _epoch(now)
        if issued - current > FUTURE_SKEW.total_seconds():
            raise InvalidToken("issued in the future")
        if max_age is not None and current - issued > max_age.total_seconds():
            raise InvalidToken("expired")
        return delivery_id

    def make_click(self, data: ClickData) -> str:
        """An article click token: no time in it, so the link keeps working in old mail."""
        payload: list[object] = [data.edition, int(data.article_id), data.position, data.topic]
        if data.member_id is not None:
            payload.append(int(data.member_id))
        return self._click_signer.sign(self._click.dump_payload(payload)).decode("utf-8")

    def verify_click(self, token: str) -> ClickData:
        """What a click token names; InvalidToken if it is forged, altered or malformed."""
        if len(token) > MAX_CLICK_TOKEN:
            raise InvalidToken("too long")
        try:
            payload = self._click.loads(token)
        except BadSignature:
            raise InvalidToken("bad signature") from None
        if not isinstance(payload, list) or len(payload) not in (4, 5):
            raise InvalidToken("malformed payload")
        edition, article_id, position, topic = payload[:4]
        member = payload[4] if len(payload) == 5 else None
        if not (
            isinstance(edition, str)
            and type(article_id) is int
            and isinstance(position, str)
            and isinstance(topic, str)
            and (member is None or type(member) is int)
        ):
            raise InvalidToken("malformed payload")
        return ClickData(edition, article_id, position, topic, member)

    def make_editor_link(self, editor_id: int, nonce: str, now: datetime) -> str:
        """An editor's sign-in token: the account, the nonce it had (so the link works once:
        signing in spends the nonce) and the time (so it expires)."""
        return self._editor.dumps([int(editor_id), nonce, _epoch(now)])

    def verify_editor_link(self, token: str, now: datetime, max_age: timedelta) -> tuple[int, str]:
        """(editor id, nonce) of a sign-in token; InvalidToken if forged, altered or old."""
        if len(token) > MAX_CLICK_TOKEN:
            raise InvalidToken("too long")
        try:
            payload = self._editor.loads(token)
        except BadSignature:
            raise InvalidToken("bad signature") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or type(payload[0]) is not int
            or not isinstance(payload[1], str)
            or type(payload[2]) is not int
        ):
            raise InvalidToken("malformed payload")
        editor_id, nonce, issued = payload
        current = _epoch(now)
        if issued - current > FUTURE_SKEW.total_seconds():
            raise InvalidToken("issued in the future")
        if current - issued > max_age.total_seconds():
            raise InvalidToken("expired")
        return editor_id, nonce

    def verify(
        self, token: str, purpose: str, now: datetime, max_age: timedelta | None = None
    ) -> int:
        """The member id the token was made for; ``max_age=None`` means it never expires."""
        return self.decode(token, purpose, now, max_age).member_id

    def verify_for(
        self,
        token: str,
        purpose: str,
        member_id: int,
        email: str,
        now: datetime,
        max_age: timedelta | None = None,
    ) -> int:
        """Like :meth:`verify`, and the token must belong to this member with this address."""
        data = self.decode(token, purpose, now, max_age)
        if data.member_id != member_id:
            raise InvalidToken("token is for another member")
        if not hmac.compare_digest(data.email_hash, self.email_hash(email)):
            raise InvalidToken("token is for another address")
        return data.member_id


def view_url(signer: TokenSigner, base_url: str, delivery_id: int, now: datetime) -> str:
    """The "View in browser" URL of one delivery (served by ``digest web`` at ``/view/``)."""
    return f"{base_url.rstrip('/')}/view/{signer.make_view(delivery_id, now)}"


def member_links(
    signer: TokenSigner,
    base_url: str,
    member: MemberView,
    now: datetime,
    mailto: str,
    delivery_id: int | None = None,
) -> DigestLinks:
    """The personal links of one member's digest; with ``delivery_id``, its web copy's too."""
    base = base_url.rstrip("/")
    email_hash = signer.email_hash(member.email)
    prefs, unsub = signer.make_many(
        member.id, member.email, ("preferences", "unsubscribe"), now, email_hash
    )
    mailto_url = f"mailto:{quote(mailto, safe='@')}?subject=unsubscribe%20{unsub}"
    if len(mailto_url) > 900:  # the List-Unsubscribe header line must stay under 998 octets
        raise ValueError("unsubscribe mailto URL too long; shorten unsubscribe_mailto")
    return DigestLinks(
        preferences_url=f"{base}/preferences/{prefs}",
        unsubscribe_url=f"{base}/unsubscribe/{unsub}",
        unsubscribe_mailto=mailto_url,
        view_url=view_url(signer, base, delivery_id, now) if delivery_id is not None else "",
        subscribe_url=f"{base}/subscribe",
    )
