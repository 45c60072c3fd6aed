"""``digest inbound``: the SMTP (or LMTP) receiver of the bounce domain, behind the MX.

It takes mail for our addresses only: the bounce address and its VERP return paths
(``bounces+<token>@``), the complaint address, and the unsubscribe address that
``List-Unsubscribe`` advertises. Any other recipient is refused in the session (550), so it is
never an open relay. Messages over ``inbound_max_bytes`` are refused (552), a client address
may send at most ``inbound_rate_limit`` messages a minute (450 after that), a message at most
``MAX_RECIPIENTS`` recipients, and an idle session is closed after
``inbound_timeout_seconds``.

A message is answered 250 only once it is kept on disk and recorded (``Intake.receive_mail``),
so the effect (a member bounced or unsubscribed) has happened when the sending MTA hears
"accepted"; if the store cannot be reached the answer is 451 and the MTA tries again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.feedback.intake import Intake
from digest.feedback.verp import Verp
from digest.settings import Settings
from digest.web.security import RateLimiter

log = logging.getLogger(__name__)

#: Recipients one message may have: a bounce has one, a report one or two.
MAX_RECIPIENTS = 20


@dataclass(frozen=True)
class Mailboxes:
    """The addresses this receiver takes mail for."""

    verp: Verp | None
    exact: frozenset[str]  # complaint and unsubscribe addresses, lower-cased

    @classmethod
    def from_settings(cls, settings: Settings, verp: Verp | None) -> Mailboxes:
        exact = {settings.effective_unsubscribe_mailto.lower()}
        if settings.effective_complaint_address:
            exact.add(settings.effective_complaint_address.lower())
        if verp is not None:
            exact.add(verp.base.lower())
        return cls(verp, frozenset(a for a in exact if "@" in a))

    def accepts(self, address: str) -> bool:
        address = address.strip().strip("<>")
        if address.lower() in self.exact:
            return True
        return self.verp is not None and self.verp.parse(address) is not None

    def describe(self) -> str:
        names = sorted(self.exact)
        if self.verp is not None:
            names.append(f"{self.verp.local}+<token>@{self.verp.domain}")
        return ", ".join(names)


class InboundHandler:
    """aiosmtpd handler: refuses what is not ours, records what is."""

    def __init__(
        self,
        intake: Intake,
        mailboxes: Mailboxes,
        rate_limit: int,
        source: str = "smtp",
        limiter: RateLimiter | None = None,
    ) -> None:
        self.intake, self.mailboxes, self.source = intake, mailboxes, source
        self.limiter = limiter or RateLimiter(rate_limit, 60.0, max_keys=10_000)

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        client = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        wait = self.limiter.hit(client)
        if wait is not None:
            log.warning("inbound: %s sends too fast; refused for %.0f s", client, wait)
            return f"450 4.7.1 Too many messages from {client}; try again in {int(wait)} s"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if not self.mailboxes.accepts(address):
            log.info("inbound: refused recipient %r from %s", address[:200], session.peer)
            return "550 5.1.1 No such mailbox here; this server takes bounces and reports only"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = bytes(envelope.original_content or envelope.content or b"")
        recipients = list(envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        try:
            recorded = await loop.run_in_executor(
                None, self.intake.receive_mail, raw, self.source, recipients
            )
        except Exception as exc:  # the store or the disk: the sender keeps it and retries
            log.exception("inbound: could not record a message from %s", session.peer)
            return f"451 4.3.0 Could not record the message ({type(exc).__name__}); try later"
        return f"250 2.0.0 Recorded ({recorded.kind})"


class _Controller(Controller):
    """aiosmtpd's controller serving SMTP, or LMTP for an MTA's lmtp transport."""

    def __init__(self, handler: InboundHandler, lmtp: bool, **kwargs: Any) -> None:
        self.lmtp = lmtp
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        kind = LMTP if self.lmtp else SMTP
        return kind(self.handler, **self.SMTP_kwargs)


def make_server(
    intake: Intake,
    settings: Settings,
    host: str,
    port: int,
    *,
    lmtp: bool = False,
) -> Controller:
    """The receiver, not started yet (``start()``/``stop()``; it serves in its own thread)."""
    mailboxes = Mailboxes.from_settings(settings, intake.verp)
    handler = InboundHandler(
        intake, mailboxes, settings.inbound_rate_limit, "lmtp" if lmtp else "smtp"
    )
    return _Controller(
        handler,
        lmtp,
        hostname=host,
        port=port,
        server_hostname=settings.bounce_address.rpartition("@")[2] or None,
        data_size_limit=settings.inbound_max_bytes,
        timeout=settings.inbound_timeout_seconds,
        decode_data=False,
        ready_timeout=30.0,
    )


def serve(
    intake: Intake,
    settings: Settings,
    host: str,
    port: int,
    wait: Callable[[], None],
    *,
    lmtp: bool = False,
) -> None:
    """Serve until ``wait`` returns (the CLI's signal handler)."""
    server = make_server(intake, settings, host, port, lmtp=lmtp)
    server.start()
    log.info(
        "inbound: %s on %s:%s for %s",
        "LMTP" if lmtp else "SMTP",
        host,
        port,
        Mailboxes.from_settings(settings, intake.verp).describe(),
    )
    try:
        wait()
    finally:
        server.stop()
        log.info("inbound: stopped")
