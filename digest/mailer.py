"""Transports: hand finished message bytes to SMTP or to a folder of ``.eml`` files.

Each transport answers with a ``SendResult`` that says whether the failure is worth retrying, so
the sender never inspects exceptions. The SMTP transport keeps one connection open for many
messages and reconnects once when the server has dropped it.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from digest.content import DotFree
from digest.settings import Settings

log = logging.getLogger(__name__)

#: Permanent replies that mean the address itself is bad: the member is suppressed as bounced.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})


@dataclass(frozen=True)
class SendResult:
    """The server's verdict on one message. ``server_wide``: the failure is the server's or
    the network's (refused, reset or timed out before the server answered, 421, a temporary
    refusal of the greeting, login or sender), not this message's or recipient's: the
    message goes back to the queue without counting an attempt and sending pauses."""

    ok: bool
    code: int | None = None
    reply: str = ""
    permanent: bool = False
    server_wide: bool = False

    @property
    def hard_bounce(self) -> bool:
        return self.permanent and self.code in HARD_BOUNCE_CODES


#: Reads the server's verdict on a message handed over by ``begin``.
Finish = Callable[[], SendResult]

_ACCEPTED = SendResult(ok=True, code=250, reply="accepted")


def _known(result: SendResult) -> Finish:
    return lambda: result


class Transport(Protocol):
    def send(self, sender: str, recipient: str, data: bytes, message_id: str) -> SendResult: ...

    def close(self) -> None: ...


#: Opens a transport: each sending lane, notice or test copy gets its own connection.
TransportFactory = Callable[[], Transport]


def begin_send(
    transport: Transport, sender: str, recipient: str, data: bytes, message_id: str
) -> Finish:
    """Start sending on ``transport``; the returned function gives the result.

    Transports that can leave the server's answer on the wire (``SMTPTransport.begin``) do,
    so the sender renders the next message meanwhile; any other transport sends at once.
    """
    begin = getattr(transport, "begin", None)
    if begin is not None:
        finish: Finish = begin(sender, recipient, data, message_id)
        return finish
    return _known(transport.send(sender, recipient, data, message_id))


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:500]


#: The reply that means the server is closing the session: about the server, never a message.
SERVICE_UNAVAILABLE = 421


def _classify(code: int, reply: bytes | str, server_wide: bool = False) -> SendResult:
    """A refusal: permanent for 5xx; server-wide for 421, or when the command refused was not
    about this message (the greeting, EHLO, STARTTLS, AUTH, MAIL FROM) and is temporary."""
    if code == SERVICE_UNAVAILABLE or (server_wide and not 500 <= code < 600):
        return SendResult(False, code, _reply_text(reply), permanent=False, server_wide=True)
    return SendResult(ok=False, code=code, reply=_reply_text(reply), permanent=500 <= code < 600)


class SMTPTransport:
    """One reused SMTP connection (plain, STARTTLS or implicit TLS), with optional AUTH."""

    def __init__(
        self,
        host: str,
        port: int,
        security: str = "none",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPTransport:
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_timeout,
        )

    def _connect(self) -> smtplib.SMTP:
        # loading the system CA store costs ~20 ms: only when TLS is used, once per transport
        if self.security != "none" and self._context is None:
            self._context = ssl.create_default_context()
        context = self._context
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(
                self.host,
                self.port,
                timeout=self.timeout,
                context=context,
                local_hostname=self.local_hostname,
            )
        else:
            conn = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            )
        if conn.sock is not None:
            # Without it a reused connection stalls ~40 ms per message (Nagle + delayed ACK).
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.ehlo()
        if self.security == "starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if self.username:
            conn.login(self.username, self.password)
        log.debug("connected to %s:%s (%s)", self.host, self.port, self.security)
        return conn

    def send(self, sender: str, recipient: str, data: bytes, message_id: str = "") -> SendResult:
        return self.begin(sender, recipient, data, message_id)()

    def begin(self, sender: str, recipient: str, data: bytes, message_id: str = "") -> Finish:
        """Hand the message over and return what reads the server's verdict on it.

        With PIPELINING the verdict on the message's content (the reply to its final dot) is
        left on the wire: the caller renders the next message while the server takes this
        one, then calls the returned function. Without it, or when the envelope is refused,
        the verdict is already known and the function just returns it.
        """
        return self._attempt(sender, recipient, data, 1)

    def _attempt(self, sender: str, recipient: str, data: bytes, attempt: int) -> Finish:
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            options = ["SMTPUTF8"] if conn.has_extn("smtputf8") else []
            start = _start_pipelined if conn.has_extn("pipelining") else _start_plain
            refused = start(conn, sender, recipient, options)
            if refused is not None:
                return _known(refused)
            _send_content(conn, data)
        except (OSError, smtplib.SMTPException) as exc:
            # nothing the server could accept has gone out yet: a dropped connection is retried
            return self._after_error(exc, sender, recipient, data, attempt)
        return lambda: self._finish(conn, sender, recipient, data)

    def _finish(self, conn: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> SendResult:
        """The reply to the final dot. Without one the server may have taken the message.

        So a connection lost (or timed out) here is not retried at once, unlike one lost
        before the dot: the delivery goes back for a later attempt with the reason said
        (RFC 1047's duplicate-message problem; MTAs defer the same way).
        """
        try:
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            reason = f"no reply to the end of the message ({exc}); the server may have it"
            log.warning("%s -> %s: %s", sender, recipient, reason)
            return SendResult(False, None, reason, False)
        if code != 250:
            return self._after_error(
                smtplib.SMTPDataError(code, reply), sender, recipient, data, 2
            )()
        return _ACCEPTED

    def _after_error(
        self, exc: BaseException, sender: str, recipient: str, data: bytes, attempt: int
    ) -> Finish:
        """The result an SMTP error means; a dropped connection is reopened and tried once more."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = exc.recipients.get(recipient, (550, b"recipient refused"))
            return _known(_classify(code, reply))
        if isinstance(exc, smtplib.SMTPSenderRefused):
            self._reset()  # a temporary refusal of our envelope sender refuses every message
            return _known(_classify(exc.smtp_code, exc.smtp_error, server_wide=True))
        if isinstance(exc, smtplib.SMTPDataError):
            self._reset()
            return _known(_classify(exc.smtp_code, exc.smtp_error))
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            self._drop()  # wrong credentials are the configuration's fault, not a message's
            reply = _reply_text(exc.smtp_error)
            return _known(SendResult(False, exc.smtp_code, reply, False, server_wide=True))
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            self._drop()
            if attempt == 2:
                reason = f"server disconnected: {exc}"
                return _known(SendResult(False, None, reason, False, server_wide=True))
            log.info("SMTP connection dropped; reconnecting")
            return self._attempt(sender, recipient, data, 2)
        if isinstance(exc, smtplib.SMTPNotSupportedError):  # this address needs SMTPUTF8
            return _known(SendResult(False, None, f"{type(exc).__name__}: {exc}", False))
        if isinstance(exc, smtplib.SMTPResponseException):
            # the greeting (SMTPConnectError), EHLO, STARTTLS: the session, not the message
            self._drop()
            reply = _reply_text(exc.smtp_error)
            return _known(SendResult(False, exc.smtp_code, reply, False, server_wide=True))
        self._drop()  # refused, reset, timed out, TLS failed: nothing reached the server
        reason = f"{type(exc).__name__}: {exc}"
        return _known(SendResult(False, None, reason, False, server_wide=True))

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


def _start_pipelined(
    conn: smtplib.SMTP, sender: str, recipient: str, options: list[str]
) -> SendResult | None:
    """MAIL, RCPT and DATA in one write (RFC 2920 PIPELINING); the content is the caller's.

    Two round trips instead of four, and a quarter of the system calls: on a fast link the
    client's per-command overhead is most of what sending costs. Replies are read in order
    and raised or classified exactly as ``sendmail`` does; a failed transaction is reset.
    Returns the refusal, or None when the server waits for the content.
    """
    try:
        envelope = (
            f"MAIL FROM:<{sender}>{''.join(f' {o}' for o in options)}\r\n"
            f"RCPT TO:<{recipient}>\r\nDATA\r\n"
        ).encode("utf-8" if "SMTPUTF8" in options else "ascii")
    except UnicodeEncodeError as exc:
        raise smtplib.SMTPNotSupportedError("non-ASCII address without SMTPUTF8") from exc
    conn.send(envelope)
    mail, rcpt, start = conn.getreply(), conn.getreply(), conn.getreply()
    ok = mail[0] == 250 and rcpt[0] in (250, 251) and start[0] == 354
    if not ok:
        if start[0] == 354:  # a lenient server took DATA anyway: end it, empty
            conn.send(b".\r\n")
            conn.getreply()
        _abort(conn, 421 if 421 in (mail[0], rcpt[0], start[0]) else mail[0])
        if mail[0] != 250:
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        if rcpt[0] not in (250, 251):
            return _classify(rcpt[0], rcpt[1])
        raise smtplib.SMTPDataError(start[0], start[1])
    return None


def _start_plain(
    conn: smtplib.SMTP, sender: str, recipient: str, options: list[str]
) -> SendResult | None:
    """MAIL, RCPT and DATA one at a time (no PIPELINING), handled as ``sendmail`` does."""
    code, reply = conn.mail(sender, options)
    if code != 250:
        _abort(conn, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = conn.rcpt(recipient)
    if code not in (250, 251):
        _abort(conn, code)
        return _classify(code, reply)
    conn.putcmd("data")
    code, reply = conn.getreply()
    if code != 354:
        _abort(conn, code)
        raise smtplib.SMTPDataError(code, reply)
    return None


def _send_content(conn: smtplib.SMTP, data: bytes) -> None:
    """The message and its final dot, dot-stuffed (RFC 5321 4.5.2) as smtplib does.

    Composed messages have no line starting with a dot (DotFree); others are scanned (the
    regex finds none in a third of the time bytes.replace takes to copy).
    """
    if isinstance(data, DotFree):
        body = data
    else:
        body = data.replace(b"\n.", b"\n..") if _DOT_LINE.search(data) else data
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    conn.send(body + b".\r\n")


def _abort(conn: smtplib.SMTP, code: int) -> None:
    """End a refused transaction: RSET, or close when the server said it is closing (421)."""
    if code == 421:
        conn.close()
        return
    try:
        conn.rset()
    except (OSError, smtplib.SMTPException):
        conn.close()


_DOT_LINE = re.compile(rb"\n\.")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


class OutboxTransport:
    """Writes each message as ``<message-id>.eml`` in a folder: for development and audits.

    The file name comes from the Message-ID, so a repeat after a crash overwrites rather than
    duplicates; files appear atomically (written aside, then renamed).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTransport:
        return cls(settings.outbox_dir)

    def send(self, sender: str, recipient: str, data: bytes, message_id: str = "") -> SendResult:
        name = _UNSAFE.sub("_", message_id.strip("<>")) or _UNSAFE.sub("_", recipient)
        target = self.folder / f"{name}.eml"
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            return SendResult(False, None, f"outbox write failed: {exc}", False)
        return SendResult(ok=True, code=250, reply=f"written to {target}")

    def close(self) -> None:
        pass


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport.from_settings(settings)
    return SMTPTransport.from_settings(settings)
