"""What each provider webhook does once its request has arrived: verify, record, answer.

The web routes (``digest.web.webhooks``) are HTTP handlers over these; each call returns the
status and a short text to answer, or raises ``WebhookRefused`` (forged, stale, replayed,
malformed, or the provider not configured) having recorded nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from digest.db import session_scope
from digest.feedback import providers, store
from digest.feedback.intake import Incoming, Intake, IntakeCounts
from digest.feedback.providers import SNS, CertificateCache, WebhookRefused
from digest.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    text: str


class Webhooks:
    """The four providers' webhooks over one store."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        intake: Intake,
        clock: Callable[[], datetime],
        certificates: CertificateCache | None = None,
    ) -> None:
        self.engine, self.settings, self.intake, self.clock = engine, settings, intake, clock
        self.sns = SNS(settings.ses_topic_arn, certificates or CertificateCache())

    @property
    def tolerance(self) -> float:
        return float(self.settings.webhook_tolerance_seconds)

    def _record_all(self, events: list[Incoming], ignored: int = 0) -> Answer:
        counts = IntakeCounts()
        for incoming in events:
            counts.add(self.intake.record(incoming))
        extra = f"; {ignored} other events ignored" if ignored else ""
        return Answer(200, counts.summary() + extra)

    def ses(self, body: bytes) -> Answer:
        message = self.sns.verify(body, self.clock(), self.tolerance)
        if message.type == "SubscriptionConfirmation":
            self.sns.confirm(message)
            log.info("SNS subscription to %s confirmed", message.topic_arn)
            return Answer(200, "subscription confirmed")
        if message.type == "UnsubscribeConfirmation":
            log.warning("SNS: the subscription to %s was cancelled", message.topic_arn)
            return Answer(200, "unsubscribe confirmation noted")
        events, kind = providers.ses_events(message)
        if not events:
            return Answer(200, f"SES {kind or 'notification'}: nothing to act on")
        return self._record_all(events)

    def mailgun(self, body: bytes) -> Answer:
        now = self.clock()
        event = providers.mailgun(body, self.settings.mailgun_signing_key, now, self.tolerance)
        with session_scope(self.engine) as session:
            spent_on = store.use_nonce(session, event.nonce, event.event_key, now)
        if spent_on is not None and spent_on != event.event_key:
            raise WebhookRefused(409, "this signature was used before for another event")
        if event.incoming is None:
            return Answer(200, "nothing to act on")
        return self._record_all([event.incoming])

    def postmark(self, body: bytes, authorization: str | None) -> Answer:
        incoming = providers.postmark(
            body,
            authorization,
            self.settings.postmark_webhook_user,
            self.settings.postmark_webhook_password,
            self.clock(),
            self.tolerance,
        )
        if incoming is None:
            return Answer(200, "nothing to act on")
        return self._record_all([incoming])

    def sendgrid(self, body: bytes, signature: str | None, timestamp: str | None) -> Answer:
        events, ignored = providers.sendgrid(
            body,
            signature,
            timestamp,
            self.settings.sendgrid_public_key,
            self.clock(),
            self.tolerance,
        )
        return self._record_all(events, ignored)
