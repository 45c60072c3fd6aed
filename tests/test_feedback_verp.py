"""VERP return paths: one per delivery, short, signed, and a forged one never verifies."""

from __future__ import annotations

import re

import pytest

from digest.feedback.verp import Verp, verp_from_settings

MID = "<daily.2026-11-24.0192abc@news.example.org>"


def test_address_names_the_delivery_and_verifies() -> None:
    verp = Verp("bounces@Bounce.Example.org", "secret-one")
    address = verp.address(12345, MID)
    assert re.fullmatch(r"bounces\+9ix-[0-9a-f]{20}@bounce\.example\.org", address), address
    assert len(address.partition("@")[0]) <= 64  # an SMTP local part's limit
    token = verp.parse(address)
    assert token is not None and token.delivery_id == 12345
    assert verp.verify(token, MID)
    # MTAs may fold the case of a local part, and angle brackets come with envelopes
    assert verp.parse(f"<{address.upper()}>") == token


def test_forged_or_foreign_tokens_do_not_verify() -> None:
    verp = Verp("bounces@bounce.example.org", "secret-one")
    token = verp.parse(verp.address(7, MID))
    assert token is not None
    assert not verp.verify(token, "<another@news.example.org>")  # another delivery's row
    other_key = Verp("bounces@bounce.example.org", "secret-two")
    assert not other_key.verify(token, MID)
    forged = verp.parse("bounces+7-aaaaaaaaaaaaaaaaaaaa@bounce.example.org")
    assert forged is not None and not verp.verify(forged, MID)
    # a token for delivery 8 made by changing the id of delivery 7's token
    moved = verp.parse(verp.address(7, MID).replace("+7-", "+8-"))
    assert moved is not None and not verp.verify(moved, MID)


@pytest.mark.parametrize(
    "address",
    [
        "bounces@bounce.example.org",
        "other+7-aaaaaaaaaaaaaaaa@bounce.example.org",
        "bounces+7-aaaaaaaaaaaaaaaa@elsewhere.example.org",
        "bounces+not-a-token@bounce.example.org",
        "bounces+7-aaaa@bounce.example.org",
        "",
    ],
)
def test_what_is_not_a_return_path(address: str) -> None:
    assert Verp("bounces@bounce.example.org", "k").parse(address) is None


def test_tokens_differ_per_delivery_and_are_not_guessable() -> None:
    verp = Verp("bounces@bounce.example.org", "k")
    macs = {verp.token(i, f"<m{i}@x>").split("-")[1] for i in range(1, 2000)}
    assert len(macs) == 1999  # 80 bits each: no two alike


def test_off_without_a_bounce_address() -> None:
    assert verp_from_settings("", "k") is None
    with pytest.raises(ValueError, match="DIGEST_SECRET_KEY"):
        Verp("bounces@bounce.example.org", "")
