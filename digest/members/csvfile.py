"""The member CSV format: a streaming import (validated row by row, written in chunks) and
the export writer. The format is documented in ``subscribers/README.md``.

Lists can hold 100k+ rows, so imports stream the file and write ``store.CHUNK`` rows at a
time; no step holds every member in memory. An address stored as ``unsubscribed`` or
``bounced`` is a suppression record: an import never reactivates or edits it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlmodel import Session

from digest import csvsafe
from digest.members.rules import (
    ACTIVE,
    DEFAULT_MAX_TOPICS,
    MemberError,
    MemberRecord,
    check_new_status,
    parse_member,
)
from digest.members.store import CHUNK, FollowIds, MemberRow, TopicIds, write_chunk

CSV_COLUMNS = ("email", "name", "topics", "frequency", "timezone", "send_hour", "follows")
EXPORT_COLUMNS = (*CSV_COLUMNS, "status")
#: How many error messages an import keeps; the count is always exact.
MAX_REPORTED_ERRORS = 1000


class ImportFileError(ValueError):
    """The file as a whole cannot be read: too big, not UTF-8, no header, broken CSV."""


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


# ---------------------------------------------------------------- reading


def read_member_csv(
    stream: IO[str], source: str, max_topics: int = DEFAULT_MAX_TOPICS
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
        # an export's neutralised cells ('=...) are read back to the values they stand for
        row = {
            name: csvsafe.restore(cells[i]) if i < len(cells) else "" for name, i in index.items()
        }
        where = f"{source}: line {start}"
        try:
            yield start, parse_member(row, where, max_topics), present
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


# ---------------------------------------------------------------- importing


def import_members(
    session: Session,
    records: Iterable[tuple[int, MemberRecord | MemberError, frozenset[str]]],
    now: datetime,
    status: str = ACTIVE,
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
    topic_ids = TopicIds(session)
    follow_ids = FollowIds(session)
    first_line: dict[str, int] = {}
    chunk: list[tuple[MemberRecord, frozenset[str]]] = []
    for line, item, present in records:
        if isinstance(item, MemberRecord):
            seen = first_line.setdefault(item.email, line)
            if seen != line:
                where = f"{source}: line {line}" if source else f"line {line}"
                item = MemberError(where, "email", f"{item.email} is a duplicate of line {seen}")
            else:
                try:
                    follow_ids.check(item, f"{source}: line {line}" if source else f"line {line}")
                except MemberError as exc:
                    item = exc
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
            write_chunk(session, topic_ids, chunk, status, now, report, follow_ids)
            chunk = []
    if chunk and report.written:
        write_chunk(session, topic_ids, chunk, status, now, report, follow_ids)
    return report


def import_csv_file(
    session: Session,
    path: str | Path,
    now: datetime,
    *,
    max_bytes: int,
    status: str = ACTIVE,
    skip_invalid: bool = False,
    max_topics: int = DEFAULT_MAX_TOPICS,
) -> ImportReport:
    """``import_members`` over a CSV file of at most ``max_bytes`` (BOM tolerated), with at
    most ``max_topics`` topics a member."""
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
            read_member_csv(stream, path.name, max_topics),
            now,
            status=status,
            skip_invalid=skip_invalid,
            source=path.name,
        )


# ---------------------------------------------------------------- exporting


def write_csv(rows: Iterable[MemberRow], stream: IO[str]) -> int:
    """Write members in the import format plus ``status``; returns how many were written.

    Cells a spreadsheet would run as formulas are neutralised (``csvsafe``); the reader
    above restores them, so an export imports back to the same members.
    """
    writer = csvsafe.writer(stream, EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row.as_csv())
        count += 1
    return count
