"""Provider webhooks over HTTP, on SQLite and PostgreSQL: Amazon SES through SNS, Mailgun,
Postmark and SendGrid. Payloads are signed with keys and a certificate the test makes; the
verification is the real code (only the SNS certificate comes from the test, through the
certificate fetcher the app takes). A valid event has its effect once however often it comes;
a bad signature, a stale timestamp or a replay gets 4xx and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from digest.feedback import store
from digest.feedback.providers import SNS, CertificateCache, WebhookRefused
from digest.members import get_member
from digest.settings import Settings
from digest.web import create_app
from tests.conftest import SMTPServer
from tests.returned_mail import Original, feedback_settings, send_digests

MAILGUN_KEY = "key-mailgun-signing-0123456789"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


@dataclass
class Keys:
    """The keys and certificate standing in for the providers' own."""

    sendgrid: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    sns: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    fetched: list[str] = field(default_factory=list)

    @property
    def sendgrid_public(self) -> str:
        der = self.sendgrid.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sns_certificate(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.sns.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.sns, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def fetch(self, url: str) -> bytes:
        """The certificate fetcher the app is given: serves the test's certificate."""
        self.fetched.append(url)
        if url == CERT_URL:
            return self.sns_certificate()
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"404 for {url}")


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def hook_settings(settings: Settings, keys: Keys) -> Settings:
    return feedback_settings(
        settings,
        mailgun_signing_key=MAILGUN_KEY,
        postmark_webhook_user="postmark",
        postmark_webhook_password="pm-secret-123",
        sendgrid_public_key=keys.sendgrid_public,
        ses_topic_arn=TOPIC,
    )


@pytest.fixture
def client(engine: Engine, hook_settings: Settings, keys: Keys) -> Iterator[TestClient]:
    app = create_app(hook_settings, engine, certificate_fetch=keys.fetch)
    with TestClient(app, base_url="https://news.example.org") as test_client:
        yield test_client


@pytest.fixture
def digest(engine: Engine, hook_settings: Settings, smtp_server: SMTPServer) -> Original:
    """A real digest sent to m000@example.org (one of two members)."""
    sent = send_digests(engine, hook_settings, smtp_server, 2)
    return Original.of(next(r for r in sent if r.rcpt_tos == ["m000@example.org"]))


def status(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return member.status


def events(engine: Engine) -> list[store.EventRow]:
    with Session(engine) as session:
        return store.list_events(session, limit=None)


def now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ signers


def mailgun_body(
    event: dict[str, Any], when: datetime | None = None, key: str = MAILGUN_KEY, token: str = ""
) -> bytes:
    timestamp = str(int((when or now()).timestamp()))
    token = token or hashlib.sha256(json.dumps(event).encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def mailgun_failed(original: Original, event_id: str = "mg-ev-1") -> dict[str, Any]:
    return {
        "id": event_id,
        "event": "failed",
        "severity": "permanent",
        "timestamp": now().timestamp(),
        "recipient": original.recipient,
        "reason": "bounce",
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        "message": {"headers": {"message-id": original.message_id.strip("<>")}},
    }


def sendgrid_post(
    client: TestClient, keys: Keys, events: list[dict[str, Any]], when: datetime | None = None
) -> Any:
    body = json.dumps(events).encode()
    timestamp = str(int((when or now()).timestamp()))
    signature = keys.sendgrid.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/webhooks/sendgrid",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def sns_body(keys: Keys, message: dict[str, Any], **changes: Any) -> bytes:
    envelope = {
        "Type": "Notification",
        "MessageId": changes.pop("MessageId", "b3f4c2d1-0000-4000-8000-000000000001"),
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
        **changes,
    }
    return sign_sns(keys, envelope)


def sign_sns(keys: Keys, envelope: dict[str, Any]) -> bytes:
    if envelope["Type"] == "Notification":
        names = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        names = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{n}\n{envelope[n]}\n" for n in names if n in envelope)
    algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    signature = keys.sns.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return json.dumps({**envelope, "Signature": base64.b64encode(signature).decode()}).encode()


def ses_complaint(original: Original) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": original.recipient}],
            "timestamp": now().isoformat(),
            "feedbackId": "0100017a-feedback",
            "complaintFeedbackType": "abuse",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
        },
        "mail": {
            "messageId": "0100017a-ses-id",
            "destination": [original.recipient],
            "commonHeaders": {"messageId": original.message_id},
        },
    }


def postmark_post(client: TestClient, record: dict[str, Any], password: str = "pm-secret-123"):
    auth = base64.b64encode(f"postmark:{password}".encode()).decode()
    return client.post(
        "/webhooks/postmark", json=record, headers={"Authorization": f"Basic {auth}"}
    )


def postmark_bounce(original: Original, when: datetime | None = None) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": original.recipient,
        "From": "digest@news.example.org",
        "BouncedAt": (when or now()).isoformat().replace("+00:00", "Z"),
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your digest",
    }


# ------------------------------------------------------------------ Mailgun


def test_mailgun_event_once_even_when_delivered_three_times(
    client: TestClient, engine: Engine, digest: Original
) -> None:
    body = mailgun_body(mailgun_failed(digest))
    answers = [client.post("/webhooks/mailgun", content=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert status(engine, digest.recipient) == "bounced"
    (event,) = events(engine)
    assert event.kind == "hard_bounce" and event.source == "mailgun" and event.delivery_id
    assert event.status_code == "5.1.1" and status(engine, "m001@example.org") == "active"


@pytest.mark.parametrize("fault", ["signature", "key", "stale", "future"])
def test_mailgun_forged_or_stale_changes_nothing(
    client: TestClient, engine: Engine, digest: Original, fault: str
) -> None:
    event = mailgun_failed(digest)
    if fault == "signature":
        body = mailgun_body(event).replace(b'"signature": "', b'"signature": "0', 1)
    elif fault == "key":
        body = mailgun_body(event, key="key-someone-else")
    else:
        delta = timedelta(hours=-1) if fault == "stale" else timedelta(hours=1)
        body = mailgun_body(event, when=now() + delta)
    answer = client.post("/webhooks/mailgun", content=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert status(engine, digest.recipient) == "active" and events(engine) == []


def test_mailgun_token_cannot_carry_another_event(
    client: TestClient, engine: Engine, digest: Original
) -> None:
    """Mailgun signs timestamp and token, not the body: a spent token is refused with
    other event data."""
    delivered = {"id": "mg-delivered", "event": "delivered", "recipient": digest.recipient}
    token = "a" * 50
    assert client.post("/webhooks/mailgun", content=mailgun_body(delivered, token=token)).is_success
    replay = mailgun_body(mailgun_failed(digest), token=token)
    assert client.post("/webhooks/mailgun", content=replay).status_code == 409
    assert status(engine, digest.recipient) == "active"


# ------------------------------------------------------------------ SendGrid


def test_sendgrid_events_once(
    client: TestClient, engine: Engine, digest: Original, keys: Keys
) -> None:
    batch = [
        {
            "email": digest.recipient,
            "timestamp": int(now().timestamp()),
            "event": "spamreport",
            "sg_event_id": "sg-spam-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "smtp-id": digest.message_id,
        },
        {"email": "m001@example.org", "event": "delivered", "sg_event_id": "sg-d-1"},
    ]
    for _ in range(3):
        answer = sendgrid_post(client, keys, batch)
        assert answer.status_code == 200, answer.text
    assert status(engine, digest.recipient) == "unsubscribed"
    assert status(engine, "m001@example.org") == "active"
    (event,) = events(engine)
    assert event.kind == "complaint" and event.delivery_id


@pytest.mark.parametrize("fault", ["signature", "stale", "other-key"])
def test_sendgrid_forged_or_stale_changes_nothing(
    client: TestClient, engine: Engine, digest: Original, keys: Keys, fault: str
) -> None:
    bounce = [
        {
            "email": digest.recipient,
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 unknown user",
            "sg_event_id": "sg-b-1",
        }
    ]
    if fault == "stale":
        answer = sendgrid_post(client, keys, bounce, when=now() - timedelta(hours=2))
    elif fault == "other-key":
        answer = sendgrid_post(client, Keys(), bounce)
    else:
        body = json.dumps(bounce).encode()
        garbage = base64.b64encode(b"\x30\x06" * 8).decode()
        answer = client.post(
            "/webhooks/sendgrid",
            content=body,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": garbage,
                "X-Twilio-Email-Event-Webhook-Timestamp": str(int(now().timestamp())),
            },
        )
    assert 400 <= answer.status_code < 500, answer.text
    assert status(engine, digest.recipient) == "active" and events(engine) == []


# ------------------------------------------------------------------ Postmark


def test_postmark_bounce_once(client: TestClient, engine: Engine, digest: Original) -> None:
    record = postmark_bounce(digest)
    assert [postmark_post(client, record).status_code for _ in range(3)] == [200, 200, 200]
    assert status(engine, digest.recipient) == "bounced"
    (event,) = events(engine)
    assert event.kind == "hard_bounce" and event.source == "postmark"


@pytest.mark.parametrize("fault", ["password", "missing", "stale"])
def test_postmark_bad_credentials_or_stale(
    client: TestClient, engine: Engine, digest: Original, fault: str
) -> None:
    if fault == "password":
        answer = postmark_post(client, postmark_bounce(digest), password="guess")
    elif fault == "missing":
        answer = client.post("/webhooks/postmark", json=postmark_bounce(digest))
    else:
        answer = postmark_post(client, postmark_bounce(digest, now() - timedelta(hours=3)))
    assert 400 <= answer.status_code < 500
    assert status(engine, digest.recipient) == "active" and events(engine) == []


# ------------------------------------------------------------------ SES through SNS


def test_ses_complaint_once(
    client: TestClient, engine: Engine, digest: Original, keys: Keys
) -> None:
    body = sns_body(keys, ses_complaint(digest))
    answers = [client.post("/webhooks/ses", content=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    assert status(engine, digest.recipient) == "unsubscribed"
    (event,) = events(engine)
    assert event.kind == "complaint" and event.source == "ses" and event.delivery_id
    assert keys.fetched == [CERT_URL]  # fetched once, then cached


def test_ses_bounce_signature_version_1(
    client: TestClient, engine: Engine, digest: Original, keys: Keys
) -> None:
    message = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": digest.recipient, "status": "5.1.1", "diagnosticCode": "550"}
            ],
            "timestamp": now().isoformat(),
        },
        "mail": {"destination": [digest.recipient], "commonHeaders": {}},
    }
    answer = client.post("/webhooks/ses", content=sns_body(keys, message, SignatureVersion="1"))
    assert answer.status_code == 200, answer.text
    assert status(engine, digest.recipient) == "bounced"


@pytest.mark.parametrize("fault", ["signature", "stale", "topic", "cert-url", "other-key"])
def test_ses_forged_or_stale_changes_nothing(
    client: TestClient, engine: Engine, digest: Original, keys: Keys, fault: str
) -> None:
    message = ses_complaint(digest)
    if fault == "signature":
        body = sns_body(keys, message).replace(b'"Signature": "', b'"Signature": "AAAA', 1)
    elif fault == "stale":
        old = (now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = sns_body(keys, message, Timestamp=old)
    elif fault == "topic":
        body = sns_body(keys, message, TopicArn="arn:aws:sns:eu-west-1:999999999999:other")
    elif fault == "cert-url":
        body = sns_body(keys, message, SigningCertURL="https://evil.example/sns.pem")
    else:
        body = sns_body(Keys(), message)  # signed by another key than the certificate's
    answer = client.post("/webhooks/ses", content=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert status(engine, digest.recipient) == "active" and events(engine) == []
    assert all(url == CERT_URL for url in keys.fetched)  # never fetched from elsewhere


def test_sns_subscription_confirmation(client: TestClient, engine: Engine, keys: Keys) -> None:
    subscribe = (
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464d"
    )
    envelope = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425c464d",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": subscribe,
        "Timestamp": now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
    }
    answer = client.post("/webhooks/ses", content=sign_sns(keys, envelope))
    assert answer.status_code == 200 and "confirmed" in answer.text
    assert keys.fetched == [CERT_URL, subscribe]
    # a confirmation that would make us fetch another host is refused
    envelope["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"
    refused = client.post("/webhooks/ses", content=sign_sns(keys, envelope))
    assert refused.status_code == 403 and len(keys.fetched) == 2


def test_kept_certificates_survive_a_restart(
    engine: Engine, hook_settings: Settings, digest: Original, keys: Keys
) -> None:
    """A certificate fetched once is kept in sns_certificate_dir: a new process verifies with
    it without fetching (here the fetcher of the second app fails)."""
    first = create_app(hook_settings, engine, certificate_fetch=keys.fetch)
    body = sns_body(keys, ses_complaint(digest))
    with TestClient(first, base_url="https://news.example.org") as client:
        assert client.post("/webhooks/ses", content=body).status_code == 200
    kept = CertificateCache(folder=hook_settings.sns_certificate_dir).path_for(CERT_URL)
    assert kept is not None and kept.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

    def offline(url: str) -> bytes:
        raise OSError("no network")

    second = create_app(hook_settings, engine, certificate_fetch=offline)
    other = sns_body(keys, ses_complaint(digest), MessageId="another-sns-message")
    with TestClient(second, base_url="https://news.example.org") as client:
        assert client.post("/webhooks/ses", content=other).status_code == 200
    assert len(keys.fetched) == 1


def test_unconfigured_providers_refuse(engine: Engine, settings: Settings) -> None:
    app = create_app(feedback_settings(settings), engine)
    with TestClient(app, base_url="https://news.example.org") as bare:
        for provider in ("ses", "mailgun", "postmark", "sendgrid"):
            answer = bare.post(f"/webhooks/{provider}", content=b"[]")
            assert answer.status_code == 403, (provider, answer.text)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com@evil.example/cert.pem",
    ],
)
def test_certificates_only_from_sns_hosts(url: str) -> None:
    fetched: list[str] = []
    cache = CertificateCache(lambda u: fetched.append(u) or b"")
    with pytest.raises(WebhookRefused):
        cache.get(url)
    assert fetched == []
    assert SNS(TOPIC, cache).topic_arn == TOPIC


def test_webhook_bodies_are_bounded_but_take_a_real_batch(
    client: TestClient, engine: Engine, digest: Original, keys: Keys
) -> None:
    batch = [
        {"email": f"x{i}@example.net", "event": "delivered", "sg_event_id": f"sg-{i}"}
        for i in range(3000)
    ]  # about 200 KB: over the forms' 64 KB, a normal SendGrid batch
    answer = sendgrid_post(client, keys, batch)
    assert answer.status_code == 200 and "3000 other events ignored" in answer.text
    huge = sendgrid_post(client, keys, batch * 8)
    assert huge.status_code == 413
