"""Signed link tokens: bound to purpose and member, expiry driven by an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.content import MemberView
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenSigner, member_links

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


def test_round_trip_every_purpose(signer: TokenSigner) -> None:
    for purpose in ("unsubscribe", "preferences", "confirm"):
        token = signer.make(42, "ann@example.org", purpose, NOW)
        assert signer.verify(token, purpose, NOW, None) == 42
        assert signer.verify_for(token, purpose, 42, "Ann@Example.org", NOW, None) == 42


def test_tokens_are_itsdangerous_tokens_as_links_already_sent_carry(signer: TokenSigner) -> None:
    """Made several at a time with kept signers, still byte-for-byte what itsdangerous makes."""
    from itsdangerous import URLSafeSerializer

    payload = [42, signer.email_hash("ann@example.org"), int(NOW.timestamp())]
    purposes = ("preferences", "unsubscribe", "confirm")
    made = signer.make_many(42, "ann@example.org", purposes, NOW)
    for purpose, token in zip(purposes, made, strict=True):
        plain = URLSafeSerializer(SECRET, salt=f"digest.{purpose}").dumps(payload)
        assert token == plain == signer.make(42, "ann@example.org", purpose, NOW)
    with pytest.raises(ValueError):
        signer.make_many(42, "ann@example.org", ("unsubscribe", "admin"), NOW)


def test_empty_secret_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="DIGEST_SECRET_KEY"):
        TokenSigner("")


def test_forged_with_other_key_fails(signer: TokenSigner) -> None:
    forged = TokenSigner("another-secret").make(42, "ann@example.org", "unsubscribe", NOW)
    with pytest.raises(InvalidToken):
        signer.verify(forged, "unsubscribe", NOW, None)


def test_any_altered_character_fails(signer: TokenSigner) -> None:
    token = signer.make(42, "ann@example.org", "unsubscribe", NOW)
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        altered = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(InvalidToken):
            signer.verify(altered, "unsubscribe", NOW, None)


def test_garbage_fails(signer: TokenSigner) -> None:
    for junk in ("", ".", "abc", "a.b.c", "x" * 500):
        with pytest.raises(InvalidToken):
            signer.verify(junk, "unsubscribe", NOW, None)


def test_wrong_purpose_fails(signer: TokenSigner) -> None:
    token = signer.make(42, "ann@example.org", "unsubscribe", NOW)
    with pytest.raises(InvalidToken):
        signer.verify(token, "preferences", NOW, None)
    with pytest.raises(ValueError):
        signer.verify(token, "admin", NOW, None)


def test_other_members_token_fails(signer: TokenSigner) -> None:
    token = signer.make(42, "ann@example.org", "preferences", NOW)
    with pytest.raises(InvalidToken, match="another member"):
        signer.verify_for(token, "preferences", 43, "bob@example.org", NOW, None)


def test_reused_id_after_delete_fails(signer: TokenSigner) -> None:
    token = signer.make(42, "ann@example.org", "unsubscribe", NOW)
    with pytest.raises(InvalidToken, match="another address"):
        signer.verify_for(token, "unsubscribe", 42, "new.member@example.org", NOW, None)


def test_expiry_follows_the_injected_clock(signer: TokenSigner) -> None:
    token = signer.make(7, "ann@example.org", "confirm", NOW)
    max_age = timedelta(days=Settings().confirm_link_days)
    assert signer.verify(token, "confirm", NOW + max_age - timedelta(seconds=1), max_age) == 7
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, "confirm", NOW + max_age + timedelta(seconds=1), max_age)
    with pytest.raises(InvalidToken, match="future"):
        signer.verify(token, "confirm", NOW - timedelta(hours=1), max_age)


def test_unsubscribe_never_expires(signer: TokenSigner) -> None:
    token = signer.make(7, "ann@example.org", "unsubscribe", NOW)
    assert signer.verify(token, "unsubscribe", NOW + timedelta(days=3650), None) == 7


def test_token_does_not_reveal_the_address(signer: TokenSigner) -> None:
    import base64

    token = signer.make(7, "ann@example.org", "unsubscribe", NOW)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"ann" not in decoded and b"example" not in decoded


def test_member_links(signer: TokenSigner) -> None:
    member = MemberView(
        id=5,
        email="ann@example.org",
        name="Ann",
        status="active",
        frequency="daily",
        timezone="UTC",
        send_hour=8,
    )
    links = member_links(signer, "https://news.example.org/", member, NOW, "unsub@example.org")
    prefix = "https://news.example.org/preferences/"
    assert links.preferences_url.startswith(prefix)
    prefs = links.preferences_url.removeprefix(prefix)
    assert signer.verify_for(prefs, "preferences", 5, member.email, NOW, None) == 5
    unsub = links.unsubscribe_url.removeprefix("https://news.example.org/unsubscribe/")
    assert signer.verify_for(unsub, "unsubscribe", 5, member.email, NOW, None) == 5
    assert links.unsubscribe_mailto == f"mailto:unsub@example.org?subject=unsubscribe%20{unsub}"
    assert len(links.unsubscribe_mailto) < 200
    assert len(links.unsubscribe_url) < 200


def test_tokens_are_plain_itsdangerous_tokens() -> None:
    """The cached-key signer changes nothing: tokens made before and after verify either way."""
    from itsdangerous import URLSafeSerializer

    secret = "s" * 40
    signer = TokenSigner(secret)
    plain = URLSafeSerializer(secret, salt="digest.unsubscribe")
    token = signer.make(7, "ann@example.org", "unsubscribe", NOW)
    assert plain.loads(token) == [7, signer.email_hash("ann@example.org"), int(NOW.timestamp())]
    old = plain.dumps([8, signer.email_hash("bob@example.org"), int(NOW.timestamp())])
    assert signer.verify(old, "unsubscribe", NOW) == 8
    other = TokenSigner("t" * 40)  # another key: its own derived key, never the first one's
    with pytest.raises(InvalidToken):
        other.verify(token, "unsubscribe", NOW)


def test_view_tokens_name_a_delivery_and_nothing_personal(signer: TokenSigner) -> None:
    import base64
    import json

    token = signer.make_view(1234, NOW)
    assert signer.verify_view(token, NOW, timedelta(days=365)) == 1234
    payload = token.split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded == [1234, int(NOW.timestamp())]  # the delivery and the time: no address
    # forged, altered, expired, from the future, or another purpose's token: refused
    with pytest.raises(InvalidToken):
        TokenSigner("another-secret-key-0123456789ab").verify_view(token, NOW)
    with pytest.raises(InvalidToken):
        signer.verify_view(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), NOW)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify_view(token, NOW + timedelta(days=366), timedelta(days=365))
    with pytest.raises(InvalidToken):
        signer.verify_view(signer.make_view(1, NOW + timedelta(hours=1)), NOW)
    unsubscribe = signer.make(1234, "ann@example.org", "unsubscribe", NOW)
    with pytest.raises(InvalidToken):
        signer.verify_view(unsubscribe, NOW)
    with pytest.raises(InvalidToken):
        signer.verify(token, "unsubscribe", NOW)


def test_member_links_carry_the_view_link_only_for_a_delivery(signer: TokenSigner) -> None:
    ann = MemberView(
        id=7, email="ann@example.org", name="Ann", status="active", frequency="daily",
        timezone="UTC", send_hour=8,
    )  # fmt: skip
    plain = member_links(signer, "https://news.example.org/", ann, NOW, "u@news.example.org")
    assert plain.view_url == "" and plain.subscribe_url == "https://news.example.org/subscribe"
    links = member_links(signer, "https://news.example.org", ann, NOW, "u@news.example.org", 99)
    token = links.view_url.removeprefix("https://news.example.org/view/")
    assert signer.verify_view(token, NOW) == 99
