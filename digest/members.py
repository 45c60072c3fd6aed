"""Members: validating, importing, adding, listing, exporting and removing subscribers.

Two rules shape everything here:

* An address stored as ``unsubscribed`` or ``bounced`` is a suppression record. An import
  never reactivates or edits it (a stale list must not undo someone's "no"), and ``add``
  only does so when the operator says ``reactivate`` explicitly.
* Lists can hold 100k+ rows, so imports stream the CSV and write in chunks of ``CHUNK`` rows,
  and listings read members by keyset pagination; no step holds every member in memory.

Emails are stored in one form, the validator's normalised address lowercased, so lookups and
the unique constraint agree however the address was typed.
"""

from __future__ import annotations

import csv
import dataclasses
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, insert, update
from sqlmodel import Session, col, select

from digest.models import (
    FREQUENCIES,
    MEMBER_STATUSES,
    SUPPRESSED_STATUSES,
    Delivery,
    Subscriber,
    SubscriberTopic,
    Topic,
)
from digest.topics import ensure_topics, topic_length_problem, topic_slug, unique_topics

CHUNK = 500
MAX_NAME_LENGTH = 200
DEFAULT_FREQUENCY = "daily"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_SEND_HOUR = 7
#: Statuses a new member may be created with: imported lists are consented (active) or await
#: double opt-in (pending); anything else would be a suppression nobody asked for.
NEW_MEMBER_STATUSES = ("active", "pending")
#: Statuses ``add`` may set on an existing member; suppression goes through ``remove``.
OPERATOR_STATUSES = ("pending", "active", "paused")
CSV_COLUMNS = ("email", "name", "topics", "frequency", "timezone", "send_hour")
EXPORT_COLUMNS = (*CSV_COLUMNS, "status")
#: Fields an import or ``add`` may change on an existing member (never the status).
PROFILE_FIELDS = ("name", "topics", "frequency", "timezone", "send_hour")
#: How many error messages an import keeps; the count is always exact.
MAX_REPORTED_ERRORS = 1000


class MemberError(ValueError):
    """One bad field of one record; the message names where, which field and why."""

    def __init__(self, where: str, field: str, message: str) -> None:
        self.where = where
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.where}: field '{self.field}': {self.message}"


class MemberNotFound(LookupError):
    """No member has this address."""

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"no such subscriber: {email}")


class SuppressedMember(ValueError):
    """The member unsubscribed or bounced; only an explicit reactivation may change that."""

    def __init__(self, email: str, status: str) -> None:
        self.email = email
        self.status = status
        super().__init__(
            f"{email} is {status}; refusing to reactivate (pass --reactivate if they asked to "
            "be subscribed again)"
        )


class ImportFileError(ValueError):
    """The file as a whole cannot be read: too big, not UTF-8, no header, broken CSV."""


@dataclass(frozen=True)
class MemberRecord:
    """A validated member as the outside world describes it (CSV row or ``add`` options)."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    frequency: str = DEFAULT_FREQUENCY
    timezone: str = DEFAULT_TIMEZONE
    send_hour: int = DEFAULT_SEND_HOUR


@dataclass(frozen=True)
class MemberRow:
    """A stored member with the display names of their topics, for listing and export."""

    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    frequency: str
    timezone: str
    send_hour: int
    created_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "topics": list(self.topics),
            "frequency": self.frequency,
            "timezone": self.timezone,
            "send_hour": self.send_hour,
            "created_at": self.created_at.isoformat(),
        }

    def as_csv(self) -> dict[str, str]:
        return {
            "email": self.email,
            "name": self.name,
            "topics": "; ".join(self.topics),
            "frequency": self.frequency,
            "timezone": self.timezone,
            "send_hour": str(self.send_hour),
            "status": self.status,
        }


@dataclass
class ImportReport:
    """What an import did (or, dry or rejected, would have done)."""

    new: int = 0
    updated: int = 0
    suppressed: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)
    written: bool = True

    @property
    def total(self) -> int:
        return self.new + self.updated + self.suppressed

    def summary(self) -> str:
        return (
            f"Imported {self.total} members ({self.new} new, {self.updated} updated, "
            f"{self.suppressed} suppressed left unchanged)"
        )

    def _error(self, error: MemberError) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(str(error))


# ---------------------------------------------------------------- validation (pure)


def normalize_email(value: str, where: str = "email") -> str:
    """The stored form of an address: validated, normalised, lowercased (one member per inbox).

    The domain is kept in its ASCII (IDNA) form and a local part must be ASCII: messages are
    composed with ASCII headers and sent without SMTPUTF8, so any other address could be
    stored but never mailed.
    """
    value = (value or "").strip()
    if not value:
        raise MemberError(where, "email", "missing")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise MemberError(where, "email", f"invalid address {value!r}: {exc}") from None
    if result.ascii_email is None:
        raise MemberError(
            where,
            "email",
            f"{value!r} has non-ASCII characters before the '@'; such addresses need "
            "SMTPUTF8 mail, which is not supported",
        )
    return result.ascii_email.lower()


def _unicode_form(email: str) -> str | None:
    """How a stored-form address with an IDNA domain was stored before domains were kept in
    ASCII (``a@bücher.example``), so such rows are matched and their suppression holds."""
    if "xn--" not in email.rpartition("@")[2]:
        return None
    try:
        form = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None
    return form if form != email else None


def lookup_emails(value: str) -> tuple[str, ...]:
    """The stored forms an address may have, the current one first; lenient, so an odd row
    (or one stored with a Unicode domain before domains were kept in ASCII) is still found."""
    value = (value or "").strip()
    forms = [value.lower()]
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return tuple(forms)
    forms.insert(0, result.normalized.lower())
    if result.ascii_email is not None:
        forms.insert(0, result.ascii_email.lower())
    return tuple(dict.fromkeys(forms))


def clean_name(value: str, where: str = "name") -> str:
    """NFC, control and line-break characters turned into spaces, single-spaced, trimmed.

    Names end up in email headers and greetings; a CR/LF there is a header-injection risk.
    """
    value = unicodedata.normalize("NFC", value or "")
    value = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in value)
    value = " ".join(value.split())
    if len(value) > MAX_NAME_LENGTH:
        raise MemberError(where, "name", f"longer than {MAX_NAME_LENGTH} characters")
    return value


def parse_topics(value: str | Iterable[str], where: str = "topics") -> tuple[str, ...]:
    """Topic display names from ``'A; B'`` (or several such strings), deduplicated by slug."""
    parts = [value] if isinstance(value, str) else list(value)
    names = unique_topics(piece for part in parts for piece in (part or "").split(";"))
    for name in names:
        problem = topic_length_problem(name)
        if problem:
            raise MemberError(where, "topics", problem)
    return tuple(names)


def parse_frequency(value: str, where: str = "frequency") -> str:
    text = (value or "").strip().lower()
    if not text:
        return DEFAULT_FREQUENCY
    if text not in FREQUENCIES:
        raise MemberError(
            where, "frequency", f"{value.strip()!r} is not one of {', '.join(FREQUENCIES)}"
        )
    return text


@cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def parse_timezone(value: str, where: str = "timezone") -> str:
    """An IANA zone name as the tz database spells it ("europe/london" -> "Europe/London")."""
    text = (value or "").strip()
    if not text:
        return DEFAULT_TIMEZONE
    canonical = _zones_by_folded_name().get(text.casefold())
    if canonical is None:
        raise MemberError(where, "timezone", f"unknown time zone {text!r}")
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise MemberError(where, "timezone", f"unknown time zone {text!r}") from None
    return canonical


def parse_send_hour(value: str | int, where: str = "send_hour") -> int:
    if isinstance(value, int):
        hour = value
    else:
        text = (value or "").strip()
        if not text:
            return DEFAULT_SEND_HOUR
        if not text.isascii() or not text.isdigit():
            raise MemberError(where, "send_hour", f"{text!r} is not a whole hour from 0 to 23")
        hour = int(text)
    if not 0 <= hour <= 23:
        raise MemberError(where, "send_hour", f"{hour} is not a whole hour from 0 to 23")
    return hour


def parse_member(row: Mapping[str, str], where: str) -> MemberRecord:
    """Validate one record; missing or blank optional fields take the defaults.

    Raises the first ``MemberError`` found, checking fields in column order.
    """
    return MemberRecord(
        email=normalize_email(row.get("email") or "", where),
        name=clean_name(row.get("name") or "", where),
        topics=parse_topics(row.get("topics") or "", where),
        frequency=parse_frequency(row.get("frequency") or "", where),
        timezone=parse_timezone(row.get("timezone") or "", where),
        send_hour=parse_send_hour(row.get("send_hour") or "", where),
    )


def check_new_status(status: str) -> str:
    if status not in NEW_MEMBER_STATUSES:
        raise ValueError(f"a new member's status must be one of {', '.join(NEW_MEMBER_STATUSES)}")
    return status


# ---------------------------------------------------------------- reading CSV


def read_member_csv(
    stream: IO[str], source: str
) -> Iterator[tuple[int, MemberRecord | MemberError, frozenset[str]]]:
    """Stream ``(line, record or error, columns present)`` from a member CSV.

    ``line`` is the physical line where the record starts (the header is line 1), so a
    quoted name spanning lines does not shift later numbers. Raises ``ImportFileError`` for
    a missing header, a header without ``email``, broken quoting or text that is not UTF-8.
    """
    # strict: an unmatched quote is an error, not a cell that swallows the rows after it
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"{source}: line 1: {_csv_problem(exc)}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{source}: near line 1: not UTF-8 text") from None
    if header is None:
        raise ImportFileError(f"{source}: empty file; a header row is required")
    names = [h.strip().lstrip("\ufeff").strip().lower() for h in header]
    if "email" not in names:
        raise ImportFileError(
            f"{source}: line 1: header has no 'email' column (expected {', '.join(CSV_COLUMNS)})"
        )
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in CSV_COLUMNS:
            index.setdefault(name, i)
    present = frozenset(index)
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(f"{source}: line {start}: {_csv_problem(exc)}") from None
        except UnicodeDecodeError:
            raise ImportFileError(f"{source}: near line {start}: not UTF-8 text") from None
        last_line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        row = {name: cells[i] if i < len(cells) else "" for name, i in index.items()}
        where = f"{source}: line {start}"
        try:
            yield start, parse_member(row, where), present
        except MemberError as exc:
            yield start, exc, present


def _csv_problem(exc: csv.Error) -> str:
    """The csv module's complaint, in words an operator can act on."""
    if "unexpected end of data" in str(exc):
        return "a quoted field opened on this line is never closed (unmatched '\"')"
    return f"not valid CSV: {exc}"


def check_utf8(data: bytes, source: str) -> None:
    """Raise ``ImportFileError`` naming the line and column of the first byte not UTF-8.

    Checked on the whole (size-bounded) file up front: a text stream decodes kilobytes ahead
    of the CSV reader, so its error would name a line thousands of rows too early.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise ImportFileError(
            f"{source}: line {line}: not UTF-8 text (byte {bad} at byte column {column})"
        ) from None


# ---------------------------------------------------------------- writing


class _TopicIds:
    """Topic ids by slug, created on first use; topics are few, so they are kept per import."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, int] = {}

    def ids_for(self, names: Iterable[str]) -> list[int]:
        names = list(names)
        missing = [n for n in names if topic_slug(n) not in self.ids]
        if missing:
            for topic in ensure_topics(self.session, missing):
                assert topic.id is not None
                self.ids[topic.slug] = topic.id
        return [self.ids[topic_slug(n)] for n in names]


def _replace_topics(
    session: Session, topic_ids: _TopicIds, wanted: Mapping[int, Sequence[str]]
) -> None:
    """Set each member's topics to exactly ``wanted[member_id]``, with two bulk statements."""
    if not wanted:
        return
    ids = list(wanted)
    session.execute(delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id).in_(ids)))
    rows = [
        {"subscriber_id": member_id, "topic_id": topic_id}
        for member_id, names in wanted.items()
        for topic_id in dict.fromkeys(topic_ids.ids_for(names))
    ]
    if rows:
        session.execute(insert(SubscriberTopic), rows)


def _apply_profile(member: Subscriber, record: MemberRecord, fields: Iterable[str]) -> bool:
    """Copy the given profile fields (not topics) onto ``member``; True if anything changed."""
    changed = False
    for name in fields:
        if name == "topics":
            continue
        value = getattr(record, name)
        if getattr(member, name) != value:
            setattr(member, name, value)
            changed = True
    return changed


def _new_member(record: MemberRecord, status: str, now: datetime) -> Subscriber:
    return Subscriber(**_new_member_values(record, status, now))


def _new_member_values(record: MemberRecord, status: str, now: datetime) -> dict[str, Any]:
    return {
        "email": record.email,
        "name": record.name,
        "status": status,
        "frequency": record.frequency,
        "timezone": record.timezone,
        "send_hour": record.send_hour,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": now if status == "active" else None,
    }


_EXISTING_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.name,
    Subscriber.frequency,
    Subscriber.timezone,
    Subscriber.send_hour,
)


def _write_chunk(
    session: Session,
    topic_ids: _TopicIds,
    chunk: list[tuple[MemberRecord, frozenset[str]]],
    status: str,
    now: datetime,
    report: ImportReport,
) -> None:
    """Write one chunk with bulk statements: one lookup, one INSERT, one UPDATE, topics.

    Core-level bulk statements rather than ORM objects: building a SQLModel instance per row
    costs more than the database work, and a 100k-row list would take minutes.
    """
    emails = [record.email for record, _ in chunk]
    legacy = {form: email for email in emails if (form := _unicode_form(email)) is not None}
    existing: dict[str, Any] = {}
    found = session.execute(
        select(*_EXISTING_COLUMNS).where(col(Subscriber.email).in_([*emails, *legacy]))
    ).all()
    for row in sorted(found, key=lambda r: r.email in legacy):  # the ASCII row wins
        existing.setdefault(legacy.get(row.email, row.email), row)
    current_topics = member_topic_slugs(session, [row.id for row in existing.values()])
    topics: dict[int, Sequence[str]] = {}
    fresh: list[MemberRecord] = []
    updates: list[dict[str, Any]] = []
    for record, present in chunk:
        row = existing.get(record.email)
        if row is None:
            fresh.append(record)
            report.new += 1
            continue
        if row.status in SUPPRESSED_STATUSES:
            report.suppressed += 1
            continue
        report.updated += 1
        changes = {
            name: getattr(record, name)
            for name in PROFILE_FIELDS
            if name != "topics" and name in present and getattr(row, name) != getattr(record, name)
        }
        if row.email != record.email:  # stored with a Unicode domain: now mailable
            changes["email"] = record.email
        if "topics" in present:
            wanted = {topic_slug(t) for t in record.topics}
            if wanted != current_topics.get(row.id, set()):
                topics[row.id] = record.topics
                changes["updated_at"] = now
        if changes:
            updates.append({"id": row.id, **changes, "updated_at": now})
    if fresh:
        created = session.execute(
            insert(Subscriber).returning(col(Subscriber.id), col(Subscriber.email)),
            [_new_member_values(record, status, now) for record in fresh],
        )
        ids = {email: member_id for member_id, email in created}
        for record in fresh:
            if record.topics:
                topics[ids[record.email]] = record.topics
    if updates:
        # Grouped by the set of changed columns: one executemany per shape.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for values in updates:
            shapes[tuple(sorted(values))].append(values)
        for group in shapes.values():
            session.execute(update(Subscriber), group)
    _replace_topics(session, topic_ids, topics)
    session.expunge_all()  # nothing from this chunk stays in the identity map


def import_members(
    session: Session,
    records: Iterable[tuple[int, MemberRecord | MemberError, frozenset[str]]],
    now: datetime,
    status: str = "active",
    skip_invalid: bool = False,
    source: str = "",
) -> ImportReport:
    """Create or update members from validated records, in chunks, inside ``session``.

    New members get ``status``; existing ones keep theirs, and suppressed ones (unsubscribed,
    bounced) are not touched at all. Only the columns the file has are updated. A second row
    for the same address is an error ("duplicate of line N"). Without ``skip_invalid`` the
    first error stops all writing (the rest is still checked, so every error is reported) and
    the caller must roll back; ``report.written`` tells which happened.
    """
    check_new_status(status)
    report = ImportReport()
    topic_ids = _TopicIds(session)
    first_line: dict[str, int] = {}
    chunk: list[tuple[MemberRecord, frozenset[str]]] = []
    for line, item, present in records:
        if isinstance(item, MemberRecord):
            seen = first_line.setdefault(item.email, line)
            if seen != line:
                where = f"{source}: line {line}" if source else f"line {line}"
                item = MemberError(where, "email", f"{item.email} is a duplicate of line {seen}")
        if isinstance(item, MemberError):
            report._error(item)
            if not skip_invalid:
                report.written = False
                chunk.clear()
            continue
        if not report.written:
            continue
        chunk.append((item, present))
        if len(chunk) >= CHUNK:
            _write_chunk(session, topic_ids, chunk, status, now, report)
            chunk = []
    if chunk and report.written:
        _write_chunk(session, topic_ids, chunk, status, now, report)
    return report


def import_csv_file(
    session: Session,
    path: str | Path,
    now: datetime,
    *,
    max_bytes: int,
    status: str = "active",
    skip_invalid: bool = False,
) -> ImportReport:
    """``import_members`` over a CSV file of at most ``max_bytes`` (BOM tolerated)."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ImportFileError(
            f"{path.name}: {size} bytes is over the import limit of {max_bytes} bytes "
            "(setting max_import_bytes)"
        )
    with path.open("rb") as raw:
        data = raw.read(max_bytes + 1)  # bounded even if the file grew since stat()
    if len(data) > max_bytes:
        raise ImportFileError(
            f"{path.name}: over the import limit of {max_bytes} bytes (setting max_import_bytes)"
        )
    check_utf8(data, path.name)
    del data
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return import_members(
            session,
            read_member_csv(stream, path.name),
            now,
            status=status,
            skip_invalid=skip_invalid,
            source=path.name,
        )


# ---------------------------------------------------------------- single members


def get_member(session: Session, email: str) -> Subscriber | None:
    """The member with this address (however it is cased or its domain spelled), or None."""
    forms = lookup_emails(email)
    found = {
        m.email: m for m in session.exec(select(Subscriber).where(col(Subscriber.email).in_(forms)))
    }
    return next((found[f] for f in forms if f in found), None)


def _require(session: Session, email: str) -> Subscriber:
    member = get_member(session, email)
    if member is None:
        raise MemberNotFound(email.strip())
    return member


def set_status(
    session: Session, email: str, status: str, reason: str | None, now: datetime
) -> Subscriber:
    """Change a member's status, recording why and when (``unsubscribed_at``, ``confirmed_at``)."""
    if status not in MEMBER_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MEMBER_STATUSES)}, not {status!r}")
    member = _require(session, email)
    member.status = status
    member.status_reason = reason
    member.updated_at = now
    if status == "unsubscribed":
        member.unsubscribed_at = member.unsubscribed_at or now
    elif status not in SUPPRESSED_STATUSES:
        member.unsubscribed_at = None
    if status == "active" and member.confirmed_at is None:
        member.confirmed_at = now
    session.add(member)
    session.flush()
    return member


@dataclass(frozen=True)
class AddResult:
    member: MemberRow
    created: bool
    changed: bool


def add_member(
    session: Session,
    email: str,
    now: datetime,
    *,
    name: str | None = None,
    topics: Sequence[str] | None = None,
    frequency: str | None = None,
    timezone: str | None = None,
    send_hour: int | str | None = None,
    status: str | None = None,
    reactivate: bool = False,
) -> AddResult:
    """Create a member, or update the given fields of an existing one.

    ``None`` means "not given": an existing member keeps that field, a new one gets the
    default. A new member needs at least one topic (otherwise they would get nothing).
    Raises ``MemberError``, or ``SuppressedMember`` for an unsubscribed/bounced address
    unless ``reactivate``.
    """
    where = "add"
    row: dict[str, str] = {"email": email}
    if name is not None:
        row["name"] = name
    if frequency is not None:
        row["frequency"] = frequency
    if timezone is not None:
        row["timezone"] = timezone
    if send_hour is not None:
        row["send_hour"] = str(send_hour)
    record = parse_member(row, where)
    if topics is not None:
        record = dataclasses.replace(record, topics=parse_topics(topics, where))
    given = [f for f in PROFILE_FIELDS if f in row or (f == "topics" and topics is not None)]
    if status is not None and status not in OPERATOR_STATUSES:
        raise MemberError(where, "status", f"must be one of {', '.join(OPERATOR_STATUSES)}")
    topic_ids = _TopicIds(session)
    member = get_member(session, record.email)
    if member is None:
        if not record.topics:
            raise MemberError(where, "topics", "a new member needs at least one --topic")
        new_status = status or "active"
        if new_status not in NEW_MEMBER_STATUSES:
            raise MemberError(
                where, "status", f"a new member must be {' or '.join(NEW_MEMBER_STATUSES)}"
            )
        member = _new_member(record, new_status, now)
        session.add(member)
        session.flush()
        assert member.id is not None
        _replace_topics(session, topic_ids, {member.id: record.topics})
        return AddResult(_row(session, member), created=True, changed=True)
    if member.status in SUPPRESSED_STATUSES and not reactivate:
        raise SuppressedMember(member.email, member.status)
    changed = _apply_profile(member, record, given)
    if member.email != record.email:  # stored with a Unicode domain: now mailable
        member.email = record.email
        changed = True
    if member.status in SUPPRESSED_STATUSES:
        set_status(session, member.email, status or "active", "reactivated by operator", now)
        changed = True
    elif status is not None and status != member.status:
        set_status(session, member.email, status, "changed by operator", now)
        changed = True
    assert member.id is not None
    if topics is not None:
        old = member_topic_slugs(session, [member.id]).get(member.id, set())
        if old != {topic_slug(t) for t in record.topics}:
            _replace_topics(session, topic_ids, {member.id: record.topics})
            changed = True
    if changed:
        member.updated_at = now
    session.add(member)
    session.flush()
    return AddResult(_row(session, member), created=False, changed=changed)


def remove_member(session: Session, email: str, now: datetime, forget: bool = False) -> str:
    """Unsubscribe a member (keeping the suppression record), or with ``forget`` erase them.

    Erasure deletes their deliveries and topics too, so nothing about them is left behind;
    an import could then bring the address back, which is what erasure means.
    Returns the stored address.
    """
    member = _require(session, email)
    stored = member.email
    if not forget:
        set_status(session, stored, "unsubscribed", "removed by operator", now)
        return stored
    member_id = member.id
    session.expunge(member)
    session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == member_id))
    session.execute(delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id) == member_id))
    session.execute(delete(Subscriber).where(col(Subscriber.id) == member_id))
    session.flush()
    return stored


# ---------------------------------------------------------------- reading


def member_topic_slugs(session: Session, member_ids: Iterable[int]) -> dict[int, set[str]]:
    """Topic slugs per member id (members without topics are absent), read in chunks."""
    ids = list(dict.fromkeys(member_ids))
    out: dict[int, set[str]] = defaultdict(set)
    for i in range(0, len(ids), CHUNK):
        rows = session.exec(
            select(SubscriberTopic.subscriber_id, Topic.slug)
            .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
            .where(col(SubscriberTopic.subscriber_id).in_(ids[i : i + CHUNK]))
        )
        for member_id, slug in rows:
            out[member_id].add(slug)
    return dict(out)


def _topic_names(session: Session, member_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    if not member_ids:
        return out
    rows = session.exec(
        select(SubscriberTopic.subscriber_id, Topic.name)
        .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
        .where(col(SubscriberTopic.subscriber_id).in_(member_ids))
    )
    for member_id, name in rows:
        out[member_id].append(name)
    for names in out.values():
        names.sort(key=str.casefold)  # the same order on every backend's collation
    return out


def _rows(session: Session, members: Sequence[Subscriber]) -> list[MemberRow]:
    ids = [m.id for m in members if m.id is not None]
    names = _topic_names(session, ids)
    return [
        MemberRow(
            id=m.id,
            email=m.email,
            name=m.name,
            status=m.status,
            topics=tuple(names.get(m.id, ())),
            frequency=m.frequency,
            timezone=m.timezone,
            send_hour=m.send_hour,
            created_at=m.created_at,
        )
        for m in members
        if m.id is not None
    ]


def _row(session: Session, member: Subscriber) -> MemberRow:
    return _rows(session, [member])[0]


def iter_members(
    session: Session,
    status: str | None = None,
    topic: str | None = None,
    batch_size: int = CHUNK,
) -> Iterator[MemberRow]:
    """Members in id order, read a batch at a time by keyset pagination (``id > last``)."""
    if status is not None and status not in MEMBER_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MEMBER_STATUSES)}, not {status!r}")
    query = select(Subscriber)
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic is not None:
        slug = topic_slug(topic)
        query = query.where(
            col(Subscriber.id).in_(
                select(SubscriberTopic.subscriber_id)
                .join(Topic, col(Topic.id) == col(SubscriberTopic.topic_id))
                .where(Topic.slug == slug)
            )
        )
    last = 0
    while True:
        batch = session.exec(
            query.where(col(Subscriber.id) > last).order_by(col(Subscriber.id)).limit(batch_size)
        ).all()
        if not batch:
            return
        yield from _rows(session, batch)
        last = batch[-1].id or last
        session.expunge_all()
        if len(batch) < batch_size:
            return


def write_csv(rows: Iterable[MemberRow], stream: IO[str]) -> int:
    """Write members in the import format plus ``status``; returns how many were written."""
    writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row.as_csv())
        count += 1
    return count
