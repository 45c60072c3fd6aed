"""The one classifier: what a returned message says, as hard bounce, soft bounce, complaint,
unsubscribe, or unclassified (kept, never dropped).

* Complaints: ARF feedback reports (RFC 5965), from the feedback loops of Yahoo, Microsoft
  (JMRP), Comcast and others: ``multipart/report; report-type=feedback-report``.
* Bounces: RFC 3464 delivery status notifications and the non-standard bounces of common MTAs
  (qmail, Exim, Postfix, Exchange, ...), detected by ``flufl.bounce`` (Mailman's detectors);
  the enhanced status code of a DSN decides soft (4.x.x, or a delay) from hard (5.x.x).
* Unsubscribes: the mail a ``List-Unsubscribe: <mailto:...?subject=unsubscribe%20TOKEN>``
  makes a mail client send, with the member's signed token in the subject.

Pure: bytes in, a ``Report`` out. Which delivery and member a report is about, and whether
its tokens verify, is ``intake``'s business: every identifier here is a claim until checked.
Provider events (SES, Mailgun, Postmark, SendGrid) are mapped to the same words in
``providers``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from flufl.bounce import all_failures

from digest.models import COMPLAINT, HARD_BOUNCE, SOFT_BOUNCE, UNCLASSIFIED, UNSUBSCRIBE

log = logging.getLogger(__name__)

#: ARF feedback types that are a recipient's complaint about our mail.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
#: Headers of a received message that carry the address it was delivered to (a VERP token).
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
#: A signed member token (itsdangerous, URL-safe) after the word "unsubscribe".
_UNSUBSCRIBE = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_.\-]{20,400})", re.IGNORECASE)
#: A DSN's enhanced status code (RFC 3463), as it appears in a Status field.
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
#: Message-ID fields (Message-ID, In-Reply-To, References) in headers or quoted text.
_ID_FIELD = re.compile(
    rb"(?i)\b(?:message-id|in-reply-to|references)[ \t]*:[ \t]*((?:<[^<>\s]{1,400}>[\s,]*)+)"
)
#: One Message-ID: ``<local@domain>``.
_MESSAGE_ID = re.compile(rb"<([^<>\s@]{1,200}@[A-Za-z0-9.\-]{1,253})>")
#: Read at most this much of a message's text when looking for our Message-IDs.
_SCAN_BYTES = 2_000_000


@dataclass(frozen=True)
class Report:
    """What one returned message says, and every claim it makes about what it is about."""

    kind: str
    detail: str  # what it was recognised as, for the event's diagnostic
    recipients: tuple[str, ...] = ()  # addresses it reports (final recipient, complainant)
    status: str | None = None  # enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None  # the remote server's words
    message_ids: tuple[str, ...] = ()  # Message-IDs on our domain it quotes (the original's)
    addresses: tuple[str, ...] = ()  # addresses that may carry a VERP token (envelope, original)
    unsubscribe_tokens: tuple[str, ...] = ()  # signed member tokens (subject, List-Unsubscribe)
    occurred_at: datetime | None = None


def parse(raw: bytes) -> Message:
    """The message as ``flufl.bounce`` reads it (the compat32 API)."""
    return message_from_bytes(raw)


def classify_message(raw: bytes, message_id_domain: str) -> Report:
    """Classify one received message; ``message_id_domain`` is the domain of our Message-IDs."""
    try:
        msg = parse(raw)
    except Exception as exc:  # the parser is lenient; anything it cannot take is kept as is
        return Report(UNCLASSIFIED, f"unreadable: {type(exc).__name__}: {exc}")
    addresses = _envelope_addresses(msg)
    ids = _our_message_ids(msg, raw, message_id_domain)
    arf = _feedback_report(msg)
    if arf is not None:
        return _complaint(msg, arf, addresses, ids)
    bounce = _bounce(msg, addresses, ids)
    if bounce is not None:
        return bounce
    tokens = _unsubscribe_tokens(msg)
    if tokens:
        return Report(
            UNSUBSCRIBE,
            "unsubscribe request by mail (List-Unsubscribe mailto)",
            recipients=tuple(a for _, a in getaddresses(msg.get_all("From", [])) if a),
            unsubscribe_tokens=tokens,
            occurred_at=_date(msg.get("Date")),
        )
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    what = "an automatic reply" if auto.startswith("auto-") else "neither a bounce nor a report"
    return Report(UNCLASSIFIED, what, addresses=addresses, message_ids=ids)


# ------------------------------------------------------------------ complaints (RFC 5965)


def _feedback_report(msg: Message) -> Message | None:
    """The fields of an ARF report's ``message/feedback-report`` part, if it is one."""
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):  # some reporters send it as plain text
            return HeaderParser().parsestr(payload)
    return None


def _complaint(
    msg: Message, fields: Message, addresses: tuple[str, ...], ids: tuple[str, ...]
) -> Report:
    feedback = str(fields.get("Feedback-Type", "")).strip().lower()
    reported = tuple(a for _, a in getaddresses(fields.get_all("Original-Rcpt-To", []) or []) if a)
    original = _original_headers(msg)
    tokens: tuple[str, ...] = ()
    more: tuple[str, ...] = ()
    if original is not None:
        tokens = _list_unsubscribe_tokens(original.get("List-Unsubscribe", ""))
        more = tuple(a for _, a in getaddresses(original.get_all("Return-Path", []) or []) if a)
        mail_from = fields.get("Original-Mail-From")
        if mail_from:
            more += tuple(a for _, a in getaddresses([str(mail_from)]) if a)
    agent = " ".join(str(fields.get("User-Agent", "")).split())[:200]
    occurred = _date(fields.get("Arrival-Date") or fields.get("Received-Date") or msg.get("Date"))
    if feedback not in COMPLAINT_TYPES:
        return Report(
            UNCLASSIFIED,
            f"ARF report of type {feedback or 'none'!r}, not a complaint",
            recipients=reported,
            message_ids=ids,
            occurred_at=occurred,
        )
    return Report(
        COMPLAINT,
        f"ARF {feedback} report" + (f" from {agent}" if agent else ""),
        recipients=reported,
        diagnostic=f"Feedback-Type: {feedback}",
        message_ids=ids,
        addresses=addresses + more,
        unsubscribe_tokens=tokens,
        occurred_at=occurred,
    )


def _original_headers(msg: Message) -> Message | None:
    """The headers of the message a report or bounce is about (rfc822 or rfc822-headers)."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def _list_unsubscribe_tokens(header: str) -> tuple[str, ...]:
    """Our unsubscribe token in a quoted List-Unsubscribe header (https or mailto form)."""
    found: list[str] = []
    for url in re.findall(r"<([^<>]+)>", str(header)):
        parts = urlsplit(url.strip())
        if parts.scheme in ("http", "https") and "/unsubscribe/" in parts.path:
            found.append(parts.path.rstrip("/").rpartition("/")[2])
        elif parts.scheme == "mailto":
            found.extend(_UNSUBSCRIBE.findall(unquote(parts.query)))
    return tuple(dict.fromkeys(t for t in found if t))


# ------------------------------------------------------------------ bounces (RFC 3464 and MTAs)


@dataclass(frozen=True)
class _Block:
    """One per-recipient block of a ``message/delivery-status`` part."""

    recipient: str
    action: str
    status: str | None
    diagnostic: str | None


def _dsn_blocks(msg: Message) -> Iterator[_Block]:
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        for block in payload:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            if not action or not recipient:
                continue  # the per-message block (Reporting-MTA, Arrival-Date)
            status = _STATUS.search(str(block.get("Status", "")))
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            yield _Block(
                recipient.rpartition(";")[2].strip().strip("<>"),
                action.split()[0].strip(";"),
                ".".join(status.groups()) if status else None,
                diagnostic[:1000] or None,
            )


def _bounce(msg: Message, addresses: tuple[str, ...], ids: tuple[str, ...]) -> Report | None:
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector tripping over odd input: not a bounce we can read
        log.warning("flufl.bounce could not read a message: %s: %s", type(exc).__name__, exc)
        temporary, permanent = frozenset(), frozenset()
    failing = [b for b in _dsn_blocks(msg) if b.action in ("failed", "delayed", "error")]
    if not (temporary or permanent or failing):
        return None
    recipients = tuple(
        dict.fromkeys(
            [b.recipient for b in failing]
            + [a.decode("ascii", "replace") for a in sorted(permanent | temporary)]
        )
    )
    hard = [b for b in failing if b.status and b.status.startswith("5")]
    given_up = [b for b in failing if b.status is None and b.action != "delayed"]
    chosen = (hard or given_up or failing or [None])[0]
    if failing:  # a DSN: its enhanced status code decides; a failure without one is hard
        kind = HARD_BOUNCE if hard or given_up else SOFT_BOUNCE
        detail = "DSN (RFC 3464)"
        status = chosen.status if chosen else None
    else:  # another MTA's format: a status code in its text decides, else the detectors
        status = _status_in_text(msg)
        if status:
            kind = HARD_BOUNCE if status.startswith("5") else SOFT_BOUNCE
        else:
            kind = HARD_BOUNCE if permanent else SOFT_BOUNCE
        detail = "non-standard bounce (flufl.bounce)"
    diagnostic = chosen.diagnostic if chosen else None
    if chosen is not None and chosen.action == "delayed":
        detail += ", delivery delayed"
    return Report(
        kind,
        detail,
        recipients=recipients,
        status=status,
        diagnostic=diagnostic or _subject(msg),
        message_ids=ids,
        addresses=addresses + _original_return_paths(msg),
        occurred_at=_arrival(msg),
    )


def _status_in_text(msg: Message) -> str | None:
    """An enhanced status code in a non-standard bounce's text, when it gives one."""
    for text in _texts(msg, limit=20_000, skip_quoted=True):
        for match in _STATUS.finditer(text):
            if match.group(1) in "45":
                return ".".join(match.groups())
    return None


def _original_return_paths(msg: Message) -> tuple[str, ...]:
    original = _original_headers(msg)
    if original is None:
        return ()
    return tuple(a for _, a in getaddresses(original.get_all("Return-Path", []) or []) if a)


def _arrival(msg: Message) -> datetime | None:
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found = _date(payload[0].get("Arrival-Date"))
                if found:
                    return found
    return _date(msg.get("Date"))


# ------------------------------------------------------------------ unsubscribe by mail


def _unsubscribe_tokens(msg: Message) -> tuple[str, ...]:
    """Tokens after "unsubscribe" in the subject (what the mailto link puts there), else in
    the first lines of the text (clients that move the subject into the body)."""
    found = _UNSUBSCRIBE.findall(_subject(msg) or "")
    if not found:
        for text in _texts(msg, limit=4000, skip_quoted=True):
            found.extend(_UNSUBSCRIBE.findall(text))
    return tuple(dict.fromkeys(found))


# ------------------------------------------------------------------ shared readers


def _subject(msg: Message) -> str | None:
    raw = msg.get("Subject")
    if raw is None:
        return None
    try:
        text = str(make_header(decode_header(str(raw))))
    except Exception:  # a malformed encoded word: the raw text will do
        text = str(raw)
    return " ".join(text.split())[:500] or None


def _envelope_addresses(msg: Message) -> tuple[str, ...]:
    found: list[str] = []
    for name in ENVELOPE_HEADERS:
        values = msg.get_all(name, []) or []
        found.extend(a for _, a in getaddresses([str(v) for v in values]) if a)
    return tuple(dict.fromkeys(found))


def _texts(msg: Message, limit: int, skip_quoted: bool = False) -> Iterator[str]:
    """Decoded text parts (not attached originals when ``skip_quoted``), at most ``limit``."""
    budget = limit
    for part in _walk(msg, skip_quoted):
        if part.get_content_maintype() != "text" or budget <= 0:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload[:budget].decode(charset, "replace")
        except LookupError:
            text = payload[:budget].decode("utf-8", "replace")
        budget -= len(text)
        yield text


def _walk(msg: Message, skip_quoted: bool) -> Iterable[Message]:
    if not skip_quoted:
        return msg.walk()
    out: list[Message] = []

    def visit(part: Message) -> None:
        if part.get_content_type() == "message/rfc822":
            return
        out.append(part)
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    visit(sub)

    visit(msg)
    return out


def _our_message_ids(msg: Message, raw: bytes, domain: str) -> tuple[str, ...]:
    """Message-IDs on our domain in the message's Message-ID, In-Reply-To and References
    fields: the original's header in an attached copy or in the quoted text of a
    non-standard bounce, or the bounce's own References.

    The message's own Message-ID is not one of them (a bounce has its own).
    """
    own = str(msg.get("Message-ID", "")).strip().lower()
    wanted = domain.lower().encode()
    chunks = [raw[:_SCAN_BYTES]]
    chunks.extend(t.encode("utf-8", "replace") for t in _texts(msg, limit=_SCAN_BYTES))
    found: list[str] = []
    for chunk in chunks:
        for field in _ID_FIELD.finditer(chunk):
            for match in _MESSAGE_ID.finditer(field.group(1)):
                if match.group(1).rpartition(b"@")[2].lower() != wanted:
                    continue
                text = match.group(0).decode("ascii", "replace")
                if text.lower() != own:
                    found.append(text)
    return tuple(dict.fromkeys(found))


def _date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value).strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
