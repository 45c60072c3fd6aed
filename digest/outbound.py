"""The one door for mail that is not a ledger delivery: notices and test copies.

Confirmation and "already subscribed" mails, and editors' test copies, are rendered here,
composed by ``Editions.compose`` (the headers and DKIM signer of every digest), handed to the
configured transport, and answered with what the server said. Nothing here writes the
ledger: such a message is never a delivery, and sending one never changes what members get.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest import ledger
from digest.compliance import postal_address_problem
from digest.compose import UnmailableAddress
from digest.content import MemberView, Rendered
from digest.editions import Editions
from digest.mailer import TransportFactory
from digest.preview import Preview
from digest.settings import Settings

log = logging.getLogger(__name__)


#: What a test copy's subject starts with, so nobody takes it for the real edition.
TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Sent:
    """What became of one message: accepted or not, and the server's words."""

    ok: bool
    subject: str
    message_id: str
    code: int | None = None
    reply: str = ""

    @property
    def server_said(self) -> str:
        return f"{self.code or ''} {self.reply}".strip()


class Outbound:
    """Renders, composes (signed like digests) and sends one message at a time."""

    def __init__(self, editions: Editions, transports: TransportFactory) -> None:
        self.editions = editions
        self.transports = transports

    @property
    def settings(self) -> Settings:
        return self.editions.settings

    def notice(
        self, name: str, member: MemberView, context: Mapping[str, Any], now: datetime
    ) -> Sent:
        """Send notice ``name`` (templates ``email/<name>.*``) to ``member``."""
        rendered = self.editions.renderer.render_notice(
            name, {"site_name": self.settings.site_name, "member": member, **context}
        )
        return self.send(rendered, member, name, now)

    def test_copy(self, preview: Preview, to: str, now: datetime) -> Sent:
        """The previewed edition, sent to ``to`` with a subject saying it is a test.

        The copy's personal links are made for ``to``, not for the member, so a forwarded
        test cannot change the member's subscription (the tokens do not match the address).
        """
        member = dataclasses.replace(preview.member, email=to)
        message_id = ledger.new_message_id(f"test.{preview.edition}", self.settings.from_domain)
        try:
            rendered, data = self.editions.message_for(
                member,
                preview.edition,
                preview.articles,
                message_id,
                now,
                delivery_id=preview.delivery_id,
                subject_prefix=TEST_PREFIX,
            )
        except UnmailableAddress as exc:
            return self._unmailable("test", member, TEST_PREFIX, message_id, exc)
        sent = self._refused("test", member, rendered.subject, message_id) or self._transmit(
            data, member, "test", message_id, rendered.subject
        )
        log.info("test copy of %s to %s: %s", preview.edition, to, sent.server_said)
        return sent

    def send(self, rendered: Rendered, member: MemberView, kind: str, now: datetime) -> Sent:
        """Compose ``rendered`` for ``member`` and send it; ``kind`` names it in logs and ids."""
        message_id = ledger.new_message_id(kind, self.settings.from_domain)
        try:
            data = self.editions.compose(rendered, member, message_id, now, campaign=kind)
        except UnmailableAddress as exc:
            return self._unmailable(kind, member, rendered.subject, message_id, exc)
        return self._refused(kind, member, rendered.subject, message_id) or self._transmit(
            data, member, kind, message_id, rendered.subject
        )

    def _refused(self, kind: str, member: MemberView, subject: str, message_id: str) -> Sent | None:
        """Compliance by construction: without a postal address, no mail to a real domain."""
        problem = postal_address_problem(self.settings, [member.email])
        if problem is None:
            return None
        log.error("%s mail to member %s not sent: %s", kind, member.id, problem)
        return Sent(False, subject, message_id, None, problem)

    @staticmethod
    def _unmailable(
        kind: str, member: MemberView, subject: str, message_id: str, exc: Exception
    ) -> Sent:
        """A row stored before addresses were checked for this: no message can be written."""
        log.warning("%s mail to member %s not composed: %s", kind, member.id, exc)
        return Sent(False, subject, message_id, None, f"address not mailable: {exc}")

    def _transmit(
        self, data: bytes, member: MemberView, kind: str, message_id: str, subject: str
    ) -> Sent:
        transport = self.transports()
        try:
            result = transport.send(self.settings.envelope_sender, member.email, data, message_id)
        finally:
            transport.close()
        if not result.ok:
            log.warning(
                "%s mail to member %s not sent: %s %s", kind, member.id, result.code, result.reply
            )
        return Sent(result.ok, subject, message_id, result.code, result.reply)
