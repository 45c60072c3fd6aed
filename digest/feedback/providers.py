"""Provider webhooks: check who sent an event, then say what it means in the classifier's words.

Each provider proves its events differently, and each check here is the real one:

* **Amazon SES through SNS**: the SNS message is signed (RSA, SHA1 for SignatureVersion 1,
  SHA256 for 2) by a certificate whose URL must be ``https://sns.<region>.amazonaws.com/...pem``
  (fetched once and cached); the topic must be ``ses_topic_arn``. A subscription
  confirmation is confirmed by fetching its SubscribeURL (same host rule).
* **Mailgun**: HMAC-SHA256 of timestamp and token with the webhook signing key; a token is
  spent once (it is not bound to the body, so a second use with other data is refused).
* **Postmark**: HTTP basic auth with the configured user and password.
* **SendGrid**: the Signed Event Webhook, ECDSA (P-256, SHA256) over timestamp and body with
  the account's public key.

Every signature carries a time (the SNS Timestamp, Mailgun's and SendGrid's timestamps,
Postmark's event time): one further than ``webhook_tolerance_seconds`` from now is refused,
so a captured request cannot be replayed later. Within that window a repeat is a duplicate,
recorded once by the provider's event id. A refusal raises ``WebhookRefused`` with the HTTP
status to answer; nothing is recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from digest.feedback.intake import Incoming
from digest.models import COMPLAINT, DELAYED, HARD_BOUNCE, SOFT_BOUNCE, UNSUBSCRIBE

PROVIDERS = ("ses", "mailgun", "postmark", "sendgrid")


class WebhookRefused(Exception):  # noqa: N818 - what the web layer catches and answers
    """The request is not a genuine, fresh event: answer ``status`` and record nothing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused(400, "the body is not JSON") from None


def check_time(when: datetime | None, now: datetime, tolerance: float, what: str) -> None:
    """Refuse a signature older (or further ahead) than the tolerance."""
    if when is None:
        raise WebhookRefused(400, f"{what} is missing or not a time")
    if abs((now - when).total_seconds()) > tolerance:
        raise WebhookRefused(400, f"{what} {when.isoformat()} is outside the accepted window")


def _epoch(value: object) -> datetime | None:
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    if not (0 < seconds < 1e11):
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _text(value: object, limit: int = 1000) -> str | None:
    if value is None or value == "":
        return None
    return " ".join(str(value).split())[:limit]


def _status(value: object) -> str | None:
    match = re.search(r"\b[245]\.\d{1,3}\.\d{1,3}\b", str(value or ""))
    return match.group(0) if match else None


# ------------------------------------------------------------------ Mailgun


@dataclass(frozen=True)
class MailgunEvent:
    nonce: str  # the signature's token: spent once
    event_key: str
    incoming: Incoming | None  # None: an event type that changes nothing (delivered, opened)


def mailgun(body: bytes, signing_key: str, now: datetime, tolerance: float) -> MailgunEvent:
    """Mailgun's JSON event webhook: ``{"signature": {...}, "event-data": {...}}``."""
    if not signing_key:
        raise WebhookRefused(403, "DIGEST_MAILGUN_SIGNING_KEY is not set")
    payload = _json(body)
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise WebhookRefused(400, "no signature object")
    timestamp = str(signature.get("timestamp", ""))
    token = str(signature.get("token", ""))
    given = str(signature.get("signature", ""))
    if not (timestamp and token and given):
        raise WebhookRefused(400, "the signature lacks timestamp, token or signature")
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise WebhookRefused(403, "bad signature")
    check_time(_epoch(timestamp), now, tolerance, "the signature timestamp")
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise WebhookRefused(400, "no event-data object")
    event_id = str(data.get("id") or "")
    if not event_id:
        raise WebhookRefused(400, "the event has no id")
    key = f"mailgun:{event_id}"
    event = str(data.get("event", "")).lower()
    severity = str(data.get("severity", "")).lower()
    kind = {
        "complained": COMPLAINT,
        "unsubscribed": UNSUBSCRIBE,
        "failed": HARD_BOUNCE if severity == "permanent" else SOFT_BOUNCE,
    }.get(event)
    if kind is None:
        return MailgunEvent(token, key, None)
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
    assert isinstance(status, dict)
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    assert isinstance(message, dict)
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    message_id = str(headers.get("message-id") or "").strip()
    code = status.get("code")
    return MailgunEvent(
        token,
        key,
        Incoming(
            kind=kind,
            source="mailgun",
            event_key=key,
            detail=f"Mailgun {event}" + (f" ({severity})" if severity else ""),
            occurred_at=_epoch(data.get("timestamp")),
            recipient=_text(data.get("recipient"), 320),
            status=_status(status.get("enhanced-code") or status.get("message")),
            diagnostic=_text(
                " ".join(
                    str(x)
                    for x in (
                        code,
                        status.get("message") or status.get("description"),
                        data.get("reason"),
                    )
                    if x
                )
            ),
            raw_ref=f"mailgun:{event_id}",
            message_ids=(message_id,) if message_id else (),
            trusted_recipient=True,
        ),
    )


# ------------------------------------------------------------------ Postmark

#: Postmark bounce types (``Type``) and what they mean here; the rest change nothing.
POSTMARK_BOUNCES = {
    "HardBounce": HARD_BOUNCE,
    "BadEmailAddress": HARD_BOUNCE,
    "SoftBounce": SOFT_BOUNCE,
    "DnsError": SOFT_BOUNCE,
    "Blocked": SOFT_BOUNCE,
    "Transient": DELAYED,
    "SpamComplaint": COMPLAINT,
    "SpamNotification": COMPLAINT,
    "Unsubscribe": UNSUBSCRIBE,
}
POSTMARK_SUPPRESSIONS = {
    "HardBounce": HARD_BOUNCE,
    "SpamComplaint": COMPLAINT,
    "ManualSuppression": UNSUBSCRIBE,
}


def check_basic_auth(header: str | None, user: str, password: str) -> None:
    if not (user and password):
        raise WebhookRefused(
            403, "DIGEST_POSTMARK_WEBHOOK_USER and DIGEST_POSTMARK_WEBHOOK_PASSWORD are not set"
        )
    scheme, _, value = (header or "").partition(" ")
    try:
        given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, _, given_password = given.partition(":")
    ok_user = hmac.compare_digest(given_user.encode(), user.encode())
    ok_password = hmac.compare_digest(given_password.encode(), password.encode())
    if scheme.lower() != "basic" or not (ok_user and ok_password):
        raise WebhookRefused(401, "bad credentials")


def postmark(
    body: bytes,
    authorization: str | None,
    user: str,
    password: str,
    now: datetime,
    tolerance: float,
) -> Incoming | None:
    """One Postmark webhook (Bounce, SpamComplaint or SubscriptionChange record)."""
    check_basic_auth(authorization, user, password)
    data = _json(body)
    if not isinstance(data, dict):
        raise WebhookRefused(400, "the body is not a JSON object")
    record = str(data.get("RecordType", ""))
    if record == "SubscriptionChange":
        when = _iso(data.get("ChangedAt"))
        check_time(when, now, tolerance, "ChangedAt")
        if not data.get("SuppressSending"):
            return None  # a reactivation: only the member's own request brings them back
        kind = POSTMARK_SUPPRESSIONS.get(str(data.get("SuppressionReason", "")))
        recipient = _text(data.get("Recipient"), 320)
        identity = "\n".join(
            str(data.get(k, "")) for k in ("MessageID", "Recipient", "ChangedAt", "Origin")
        )
        key = "postmark:change:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
        detail = f"Postmark subscription change ({data.get('SuppressionReason')})"
        diagnostic = _text(data.get("Origin"))
    elif record in ("Bounce", "SpamComplaint"):
        when = _iso(data.get("BouncedAt"))
        check_time(when, now, tolerance, "BouncedAt")
        kind = POSTMARK_BOUNCES.get(str(data.get("Type", "")))
        recipient = _text(data.get("Email"), 320)
        if data.get("ID") in (None, ""):
            raise WebhookRefused(400, "the record has no ID")
        key = f"postmark:{record}:{data.get('ID')}"
        detail = f"Postmark {data.get('Type')}"
        diagnostic = _text(" ".join(str(data.get(k) or "") for k in ("Description", "Details")))
    else:
        when = _iso(data.get("DeliveredAt") or data.get("ReceivedAt"))
        check_time(when, now, tolerance, "the event time")
        return None  # deliveries, opens, clicks: nothing to act on
    if kind is None:
        return None
    return Incoming(
        kind=kind,
        source="postmark",
        event_key=key,
        detail=detail,
        occurred_at=when,
        recipient=recipient,
        status=_status(data.get("Details")),
        diagnostic=diagnostic,
        raw_ref=key,
        trusted_recipient=True,
    )


# ------------------------------------------------------------------ SendGrid


def load_sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """The Event Webhook verification key, as PEM or as the base64 DER SendGrid shows."""
    value = text.strip()
    try:
        if "BEGIN PUBLIC KEY" in value:
            key = serialization.load_pem_public_key(value.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"DIGEST_SENDGRID_PUBLIC_KEY is not a public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("DIGEST_SENDGRID_PUBLIC_KEY must be an ECDSA public key")
    return key


def sendgrid(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    now: datetime,
    tolerance: float,
) -> tuple[list[Incoming], int]:
    """SendGrid's signed Event Webhook: a JSON array of events. Returns the events that mean
    something here, and how many others (delivered, opened, ...) there were."""
    if not public_key:
        raise WebhookRefused(403, "DIGEST_SENDGRID_PUBLIC_KEY is not set")
    if not signature or not timestamp:
        raise WebhookRefused(403, "no signature or timestamp header")
    try:
        key = load_sendgrid_key(public_key)
    except ValueError as exc:  # the operator's setting, not the request: the provider retries
        raise WebhookRefused(503, str(exc)) from None
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode("utf-8") + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused(403, "bad signature") from None
    check_time(_epoch(timestamp), now, tolerance, "the signature timestamp")
    events = _json(body)
    if not isinstance(events, list):
        raise WebhookRefused(400, "the body is not a JSON array of events")
    out: list[Incoming] = []
    ignored = 0
    for event in events:
        incoming = _sendgrid_event(event) if isinstance(event, dict) else None
        if incoming is None:
            ignored += 1
        else:
            out.append(incoming)
    return out, ignored


_SENDGRID_DROPPED = {
    "bounced address": HARD_BOUNCE,
    "invalid": HARD_BOUNCE,
    "spam reporting address": COMPLAINT,
    "unsubscribed address": UNSUBSCRIBE,
}


def _sendgrid_event(event: Mapping[str, Any]) -> Incoming | None:
    name = str(event.get("event", "")).lower()
    status = _status(event.get("status"))
    if name == "bounce":
        blocked = str(event.get("type", "")).lower() == "blocked"
        kind = SOFT_BOUNCE if blocked or (status or "").startswith("4") else HARD_BOUNCE
    elif name == "dropped":
        kind = _SENDGRID_DROPPED.get(str(event.get("reason", "")).strip().lower())
    else:
        kind = {
            "spamreport": COMPLAINT,
            "unsubscribe": UNSUBSCRIBE,
            "group_unsubscribe": UNSUBSCRIBE,
            "deferred": DELAYED,
        }.get(name)
    event_id = str(event.get("sg_event_id") or "")
    if kind is None or not event_id:
        return None
    smtp_id = str(event.get("smtp-id") or "").strip()
    return Incoming(
        kind=kind,
        source="sendgrid",
        event_key=f"sendgrid:{event_id}",
        detail=f"SendGrid {name}" + (f" ({event.get('type')})" if event.get("type") else ""),
        occurred_at=_epoch(event.get("timestamp")),
        recipient=_text(event.get("email"), 320),
        status=status,
        diagnostic=_text(event.get("reason") or event.get("response")),
        raw_ref=f"sendgrid:{event_id}",
        message_ids=(smtp_id,) if smtp_id else (),
        trusted_recipient=True,
    )


# ------------------------------------------------------------------ Amazon SES through SNS

#: The only hosts an SNS signing certificate or subscription URL may come from.
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip

Fetch = Callable[[str], bytes]


def sns_url(url: object, what: str) -> str:
    """``url`` if it is an https URL on an SNS host, else refused."""
    parts = urlsplit(str(url or ""))
    hosted = SNS_HOST.match(parts.hostname or "") and parts.port is None and not parts.username
    if parts.scheme != "https" or not hosted:
        raise WebhookRefused(403, f"{what} is not an https URL on sns.<region>.amazonaws.com")
    return str(url)


def https_get(url: str, timeout: float = 10.0, max_bytes: int = 65536) -> bytes:
    """GET an https URL (verified TLS, no redirects, bounded size): the real fetcher."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"not an https URL: {url!r}")
    conn = http.client.HTTPSConnection(
        parts.hostname, timeout=timeout, context=ssl.create_default_context()
    )
    try:
        path = parts.path or "/"
        conn.request("GET", path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        data = response.read(max_bytes + 1)
        if response.status != 200:
            raise OSError(f"{parts.hostname} answered {response.status}")
        if len(data) > max_bytes:
            raise OSError(f"{url} is larger than {max_bytes} bytes")
        return data
    finally:
        conn.close()


class CertificateCache:
    """SNS signing certificates by URL, fetched once and kept for ``ttl`` seconds in memory,
    and in ``folder`` (``<sha256 of the URL>.pem``) across restarts when one is given.

    AWS gives a new certificate a new URL, so a kept file stays right for its URL; its
    validity dates are checked on every use. ``fetch`` is the seam: the real one is
    ``https_get``; tests pass one that serves the certificate they made (or put it in the
    folder), and everything else (URL rule, parsing, validity, signature) is the real code.
    """

    def __init__(
        self,
        fetch: Fetch = https_get,
        ttl: float = 24 * 3600,
        max_entries: int = 32,
        monotonic: Callable[[], float] = time.monotonic,
        folder: str | Path | None = None,
    ) -> None:
        self.fetch, self.ttl, self.max_entries, self.monotonic = fetch, ttl, max_entries, monotonic
        self.folder = Path(folder) if folder else None
        self._certs: OrderedDict[str, tuple[float, x509.Certificate]] = OrderedDict()
        self._lock = threading.Lock()

    def path_for(self, url: str) -> Path | None:
        """Where the certificate of ``url`` is kept (None without a folder)."""
        if self.folder is None:
            return None
        return self.folder / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".pem")

    def _load(self, url: str) -> bytes:
        kept = self.path_for(url)
        if kept is not None and kept.is_file():
            return kept.read_bytes()
        pem = self.fetch(url)
        x509.load_pem_x509_certificate(pem)  # only a certificate is kept
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            tmp = kept.with_suffix(".tmp")
            tmp.write_bytes(pem)
            tmp.replace(kept)
        return pem

    def get(self, url: str) -> x509.Certificate:
        url = sns_url(url, "SigningCertURL")
        now = self.monotonic()
        with self._lock:
            cached = self._certs.get(url)
            if cached is not None and now - cached[0] < self.ttl:
                self._certs.move_to_end(url)
                return cached[1]
        try:
            cert = x509.load_pem_x509_certificate(self._load(url))
        except (OSError, ValueError) as exc:
            raise WebhookRefused(403, f"the signing certificate could not be had: {exc}") from None
        with self._lock:
            self._certs[url] = (now, cert)
            while len(self._certs) > self.max_entries:
                self._certs.popitem(last=False)
        return cert


@dataclass(frozen=True)
class SNSMessage:
    type: str  # Notification | SubscriptionConfirmation | UnsubscribeConfirmation
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str | None


class SNS:
    """Verifies SNS messages for one topic and confirms its subscription."""

    def __init__(self, topic_arn: str, certificates: CertificateCache) -> None:
        self.topic_arn, self.certificates = topic_arn, certificates

    def verify(self, body: bytes, now: datetime, tolerance: float) -> SNSMessage:
        if not self.topic_arn:
            raise WebhookRefused(403, "DIGEST_SES_TOPIC_ARN is not set")
        data = _json(body)
        if not isinstance(data, dict):
            raise WebhookRefused(400, "the body is not a JSON object")
        kind = str(data.get("Type", ""))
        names = _SIGNED_FIELDS.get(kind)
        if names is None:
            raise WebhookRefused(400, f"unknown SNS message type {kind!r}")
        if data.get("TopicArn") != self.topic_arn:
            raise WebhookRefused(403, f"topic {str(data.get('TopicArn'))[:200]!r} is not ours")
        version = str(data.get("SignatureVersion", ""))
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
        if algorithm is None:
            raise WebhookRefused(400, f"unknown SignatureVersion {version!r}")
        cert = self.certificates.get(str(data.get("SigningCertURL", "")))
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise WebhookRefused(403, "the signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRefused(403, "the signing certificate has no RSA key")
        signed = "".join(
            f"{name}\n{data[name]}\n" for name in names if name in data and data[name] is not None
        )
        try:
            signature = base64.b64decode(str(data.get("Signature", "")), validate=True)
            key.verify(signature, signed.encode("utf-8"), padding.PKCS1v15(), algorithm)
        except (InvalidSignature, binascii.Error, ValueError):
            raise WebhookRefused(403, "bad signature") from None
        check_time(_iso(data.get("Timestamp")), now, tolerance, "the SNS Timestamp")
        subscribe = data.get("SubscribeURL")
        return SNSMessage(
            kind,
            str(data.get("MessageId", "")),
            self.topic_arn,
            str(data.get("Message", "")),
            str(subscribe) if subscribe else None,
        )

    def confirm(self, message: SNSMessage) -> None:
        """Confirm the subscription by fetching its SubscribeURL (an SNS host, https)."""
        url = sns_url(message.subscribe_url, "SubscribeURL")
        try:
            self.certificates.fetch(url)
        except (OSError, ValueError) as exc:
            raise WebhookRefused(502, f"the subscription could not be confirmed: {exc}") from None


def ses_events(message: SNSMessage) -> tuple[list[Incoming], str]:
    """The events in one SES notification (identity notifications or a configuration set's
    event publishing), and the notification's type."""
    try:
        data = json.loads(message.message)
    except ValueError:
        raise WebhookRefused(400, "the SNS Message is not an SES notification") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "the SNS Message is not an SES notification")
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    assert isinstance(mail, dict)
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    assert isinstance(common, dict)
    ids = tuple(str(x) for x in [common.get("messageId")] if x)
    out: list[Incoming] = []

    def add(n: int, what: str, recipient: object, when: object, **extra: Any) -> None:
        key = f"ses:{message.message_id}:{n}"
        out.append(
            Incoming(
                source="ses",
                event_key=key,
                detail=f"SES {kind}" + (f" ({what})" if what else ""),
                occurred_at=_iso(when),
                recipient=_text(recipient, 320),
                raw_ref=f"sns:{message.message_id}",
                message_ids=ids,
                trusted_recipient=True,
                **extra,
            )
        )

    if kind == "Bounce":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        assert isinstance(bounce, dict)
        permanent = bounce.get("bounceType") == "Permanent"
        what = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for n, rcpt in enumerate(_items(bounce.get("bouncedRecipients"))):
            add(
                n,
                what,
                rcpt.get("emailAddress"),
                bounce.get("timestamp"),
                kind=HARD_BOUNCE if permanent else SOFT_BOUNCE,
                status=_status(rcpt.get("status")),
                diagnostic=_text(rcpt.get("diagnosticCode")),
            )
    elif kind == "Complaint":
        complaint = data.get("complaint") if isinstance(data.get("complaint"), dict) else {}
        assert isinstance(complaint, dict)
        feedback = str(complaint.get("complaintFeedbackType") or "")
        if feedback != "not-spam":
            for n, rcpt in enumerate(_items(complaint.get("complainedRecipients"))):
                add(
                    n,
                    feedback,
                    rcpt.get("emailAddress"),
                    complaint.get("timestamp"),
                    kind=COMPLAINT,
                    diagnostic=_text(complaint.get("userAgent")),
                )
    elif kind == "DeliveryDelay":
        delay = data.get("deliveryDelay") if isinstance(data.get("deliveryDelay"), dict) else {}
        assert isinstance(delay, dict)
        for n, rcpt in enumerate(_items(delay.get("delayedRecipients"))):
            add(
                n,
                str(delay.get("delayType") or ""),
                rcpt.get("emailAddress"),
                delay.get("timestamp"),
                kind=DELAYED,
                status=_status(rcpt.get("status")),
                diagnostic=_text(rcpt.get("diagnosticCode")),
            )
    elif kind == "Subscription":
        change = data.get("subscription") if isinstance(data.get("subscription"), dict) else {}
        assert isinstance(change, dict)
        preferences = change.get("newTopicPreferences")
        if isinstance(preferences, dict) and preferences.get("unsubscribeAll"):
            for n, address in enumerate(mail.get("destination") or []):
                add(n, "unsubscribe all", address, change.get("timestamp"), kind=UNSUBSCRIBE)
    return out, kind


def _items(value: object) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []
