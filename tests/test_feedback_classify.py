"""The classifier on what real MTAs and feedback loops send: DSNs (hard and soft), a qmail
bounce, an ARF complaint (plain and redacted), an unsubscribe mail, and mail that is none of
these (kept as unclassified)."""

from __future__ import annotations

import pytest

from digest.feedback.classify import classify_message
from digest.models import COMPLAINT, HARD_BOUNCE, SOFT_BOUNCE, UNCLASSIFIED, UNSUBSCRIBE
from tests.returned_mail import Original, arf, dsn, qmail_bounce, unsubscribe_mail

DOMAIN = "news.example.org"
MID = "<daily.2026-11-24.0192f3a1b2c3d4e5f6a7b8c9d0@news.example.org>"
TOKEN = "WzEsIkFhYmJjY2RkZWVmZiIsMTc2NDAwMDAwMF0.signature-part_x"
ORIGINAL = Original(
    "bounces+1-abcdefghijklmnop@bounce.news.example.org",
    "ada@example.org",
    (
        "From: Science Digest <digest@news.example.org>\r\n"
        "To: Ada <ada@example.org>\r\n"
        "Subject: Your digest\r\n"
        f"Message-ID: {MID}\r\n"
        f"List-Unsubscribe: <https://news.example.org/unsubscribe/{TOKEN}>,\r\n"
        f" <mailto:unsubscribe@news.example.org?subject=unsubscribe%20{TOKEN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Stem cells repair a heart. Version 2.0.1 of the model ships.\r\n"
    ).encode(),
)


@pytest.mark.parametrize("quote", ["headers", "message", "none"])
def test_dsn_hard_bounce(quote: str) -> None:
    report = classify_message(dsn(ORIGINAL, quote=quote), DOMAIN)
    assert report.kind == HARD_BOUNCE
    assert report.status == "5.1.1"
    assert report.recipients == ("ada@example.org",)
    assert "550 5.1.1" in (report.diagnostic or "")
    assert ORIGINAL.envelope_sender in report.addresses  # the DSN's To: carries the VERP
    assert report.message_ids == ((MID,) if quote != "none" else ())
    assert report.occurred_at is not None


@pytest.mark.parametrize("action", ["failed", "delayed"])
def test_dsn_with_a_4xx_status_is_soft(action: str) -> None:
    report = classify_message(dsn(ORIGINAL, status="4.2.2", action=action), DOMAIN)
    assert report.kind == SOFT_BOUNCE and report.status == "4.2.2"


def test_dsn_failure_without_a_status_is_hard() -> None:
    raw = dsn(ORIGINAL).replace(b"Status: 5.1.1\r\n", b"")
    assert classify_message(raw, DOMAIN).kind == HARD_BOUNCE


def test_dsn_that_reports_delivery_is_not_a_bounce() -> None:
    raw = dsn(ORIGINAL, status="2.0.0", action="delivered")
    assert classify_message(raw, DOMAIN).kind == UNCLASSIFIED


def test_non_standard_qmail_bounce() -> None:
    report = classify_message(qmail_bounce(ORIGINAL), DOMAIN)
    assert report.kind == HARD_BOUNCE
    assert report.recipients == ("ada@example.org",)
    assert report.status == "5.1.1"
    assert report.message_ids == (MID,)


@pytest.mark.parametrize("redact", [False, True])
def test_arf_complaint(redact: bool) -> None:
    report = classify_message(arf(ORIGINAL, redact=redact), DOMAIN)
    assert report.kind == COMPLAINT
    assert "abuse" in report.detail and "Yahoo" in report.detail
    assert report.recipients == (() if redact else ("ada@example.org",))
    assert report.message_ids == (MID,)
    assert TOKEN in report.unsubscribe_tokens  # from the quoted List-Unsubscribe
    assert ORIGINAL.envelope_sender in report.addresses  # Original-Mail-From


def test_arf_that_is_not_a_complaint_is_kept_unclassified() -> None:
    report = classify_message(arf(ORIGINAL, feedback_type="not-spam"), DOMAIN)
    assert report.kind == UNCLASSIFIED and "not-spam" in report.detail


def test_unsubscribe_mail() -> None:
    report = classify_message(unsubscribe_mail(ORIGINAL), DOMAIN)
    assert report.kind == UNSUBSCRIBE
    assert report.unsubscribe_tokens == (TOKEN,)
    # a reply that quotes the subject still carries it
    reply = unsubscribe_mail(ORIGINAL).replace(b"Subject: unsubscribe", b"Subject: Re: unsubscribe")
    assert classify_message(reply, DOMAIN).unsubscribe_tokens == (TOKEN,)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: someone@example.net\r\nSubject: hello\r\n\r\nAre you there?\r\n",
        b"From: ada@example.org\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n"
        b"\r\nI am away until Monday.\r\n",
        b"\x00\xff\xfe garbage that is no message at all \r\n\r\n\x80\x81",
        b"",
    ],
)
def test_anything_else_is_unclassified(raw: bytes) -> None:
    assert classify_message(raw, DOMAIN).kind == UNCLASSIFIED


def test_only_our_message_ids_are_claims() -> None:
    raw = dsn(ORIGINAL).replace(MID.encode(), b"<someone-else@other.example.net>")
    assert classify_message(raw, DOMAIN).message_ids == ()
