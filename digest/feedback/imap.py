"""``digest bounces poll``: read the bounce mailbox over IMAP (IMAPS or STARTTLS).

For operators whose bounces land in a mailbox rather than at ``digest inbound``. Each message
in ``imap_folder`` is fetched without marking it read, kept and recorded by ``Intake``, then:

* moved to ``imap_processed_folder`` (created when missing) once it is recorded, whatever it
  was (a bounce, a complaint, an unsubscribe, or one whose token did not verify);
* left where it is, flagged ``$DigestUnclassified``, when nothing could be made of it: a
  person should read it, and the next poll passes over it (it was counted once);
* left untouched when recording failed (the store is away): the next poll tries again.

Nothing is ever deleted unread: a message leaves the folder only by a MOVE (or COPY, then
delete) after it was recorded.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from digest.feedback.intake import Intake
from digest.models import UNCLASSIFIED
from digest.settings import Settings

log = logging.getLogger(__name__)

#: The keyword a message nothing could be made of is flagged with, so it is counted once.
UNCLASSIFIED_FLAG = "$DigestUnclassified"
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be read: a connection, TLS, login or protocol failure."""


@dataclass
class PollReport:
    fetched: int = 0
    moved: int = 0
    kept: int = 0  # unclassified (or too large), flagged and left in the folder
    failed: int = 0  # not recorded (left untouched, tried again next time)
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items())) or "nothing"
        return (
            f"fetched {self.fetched} ({kinds}); moved {self.moved}, kept {self.kept} "
            f"(flagged {UNCLASSIFIED_FLAG}), failed {self.failed}"
        )


def connect(settings: Settings) -> imaplib.IMAP4:
    """A logged-in connection, over implicit TLS (``tls``) or STARTTLS; never in the clear."""
    if not settings.imap_host:
        raise MailboxError("no IMAP mailbox configured: set DIGEST_IMAP_HOST")
    context = ssl.create_default_context(cafile=settings.imap_ca_file or None)
    where = f"{settings.imap_host}:{settings.imap_port}"
    try:
        conn: imaplib.IMAP4
        if settings.imap_security == "tls":
            conn = imaplib.IMAP4_SSL(
                settings.imap_host,
                settings.imap_port,
                ssl_context=context,
                timeout=settings.smtp_timeout,
            )
        else:
            conn = imaplib.IMAP4(settings.imap_host, settings.imap_port, settings.smtp_timeout)
            conn.starttls(context)
        conn.login(settings.imap_username, settings.imap_password)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise MailboxError(f"{where}: {type(exc).__name__}: {exc}") from None
    return conn


def _ok(result: tuple[str, list[object]], what: str) -> list[object]:
    kind, data = result
    if kind != "OK":
        raise MailboxError(f"{what}: {kind} {data!r}")
    return data


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Poller:
    """One pass over the mailbox folder."""

    def __init__(
        self,
        intake: Intake,
        settings: Settings,
        connector: Callable[[Settings], imaplib.IMAP4] = connect,
    ) -> None:
        self.intake, self.settings, self.connector = intake, settings, connector

    def poll(self, limit: int | None = None) -> PollReport:
        report = PollReport()
        conn = self.connector(self.settings)
        try:
            self._poll(conn, report, limit)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxError(f"{type(exc).__name__}: {exc}") from None
        finally:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
        log.log(
            logging.INFO if report.fetched else logging.DEBUG,
            "bounce mailbox %s: %s",
            self.settings.imap_folder,
            report.summary(),
        )
        return report

    def _poll(self, conn: imaplib.IMAP4, report: PollReport, limit: int | None) -> None:
        folder = self.settings.imap_folder
        _ok(conn.select(_quote(folder)), f"select {folder}")
        self._ensure_folder(conn, self.settings.imap_processed_folder)
        # what the server offers once logged in (MOVE, UIDPLUS), not what it said at greeting
        listed = _ok(conn.capability(), "capability")
        capabilities = {c.upper() for c in b" ".join(listed).decode().split()}  # type: ignore[arg-type]
        found = _ok(conn.uid("SEARCH", None, "UNDELETED", "UNKEYWORD", UNCLASSIFIED_FLAG), "search")
        uids = (found[0] or b"").split() if found else []
        for uid in uids[:limit] if limit else uids:
            self._one(conn, uid.decode(), capabilities, report)

    def _ensure_folder(self, conn: imaplib.IMAP4, name: str) -> None:
        kind, data = conn.list('""', _quote(name))
        if kind == "OK" and any(item for item in data if item):
            return
        _ok(conn.create(_quote(name)), f"create {name}")

    def _one(self, conn: imaplib.IMAP4, uid: str, caps: set[str], report: PollReport) -> None:
        size_data = _ok(conn.uid("FETCH", uid, "(RFC822.SIZE)"), f"size of {uid}")
        size = _SIZE.search(b" ".join(x if isinstance(x, bytes) else b"" for x in size_data))
        if size and int(size.group(1)) > self.settings.inbound_max_bytes:
            log.warning("bounce mailbox: message %s is %s bytes; kept unread", uid, size.group(1))
            self._flag(conn, uid)
            report.fetched += 1
            report.kept += 1
            report.by_kind["too large"] = report.by_kind.get("too large", 0) + 1
            return
        data = _ok(conn.uid("FETCH", uid, "(BODY.PEEK[])"), f"fetch {uid}")
        raw = next((part[1] for part in data if isinstance(part, tuple)), None)
        if not isinstance(raw, bytes):
            report.failed += 1
            report.errors.append(f"message {uid}: the server sent no body")
            return
        report.fetched += 1
        try:
            recorded = self.intake.receive_mail(raw, "imap")
        except Exception as exc:  # the store is away: leave it for the next poll
            log.exception("bounce mailbox: message %s not recorded", uid)
            report.failed += 1
            report.errors.append(f"message {uid}: {type(exc).__name__}: {exc}")
            return
        report.by_kind[recorded.kind] = report.by_kind.get(recorded.kind, 0) + 1
        if recorded.kind == UNCLASSIFIED:
            self._flag(conn, uid)
            report.kept += 1
            return
        self._move(conn, uid, caps)
        report.moved += 1

    def _flag(self, conn: imaplib.IMAP4, uid: str) -> None:
        _ok(conn.uid("STORE", uid, "+FLAGS", f"({UNCLASSIFIED_FLAG})"), f"flag {uid}")

    def _move(self, conn: imaplib.IMAP4, uid: str, caps: set[str]) -> None:
        target = _quote(self.settings.imap_processed_folder)
        if "MOVE" in caps:
            _ok(conn.uid("MOVE", uid, target), f"move {uid}")
            return
        _ok(conn.uid("COPY", uid, target), f"copy {uid}")
        _ok(conn.uid("STORE", uid, "+FLAGS", r"(\Deleted)"), f"delete {uid}")
        if "UIDPLUS" in caps:
            _ok(conn.uid("EXPUNGE", uid), f"expunge {uid}")
        else:
            _ok(conn.expunge(), "expunge")
