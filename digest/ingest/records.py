"""Validated article records: the one shape every input format is turned into.

Parsers hand raw mappings to :func:`build_record`, which checks every field and reports all
problems of a record at once as :class:`RecordError` values naming file, record and field, so
an operator can fix a file in one pass. Nothing here touches the store.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from digest.archive.names import kind_words, parse_kind
from digest.clock import parse_instant
from digest.topics import topic_length_problem, unique_topics

MAX_TITLE = 500
MAX_KEY_POINT = 5000
MAX_KEY_POINTS = 50
MAX_TOPICS = 100
MAX_MENTIONS = 100
MAX_URL = 2048
MAX_NAME = 500
MAX_DESCRIPTION = 5000
MAX_SOURCE = 500
MAX_SUMMARY = 10000
#: How far ahead of the import clock a publication date may be. Time zones and clock skew put
#: honest dates hours ahead; a date days ahead is a mistake (9999-12-31 would lead every
#: digest for ever).
FUTURE_SLACK = timedelta(days=1)

#: (name, description, url, kind): kind is None when the input did not say.
Mention = tuple[str, str, str | None, str | None]


class RecordError(Exception):
    """One problem with one input: where it is (file, record, field) and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        record: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.record = record
        self.field = field
        self.message = message

    def located(self, file: str, record: str | None = None) -> RecordError:
        """A copy placed in ``file``/``record`` (parsers learn the location after the fact)."""
        return RecordError(self.message, file=file, record=record or self.record, field=self.field)

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.record) if p]
        if self.field:
            parts.append(f"field {self.field!r}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True)
class ArticleRecord:
    """An article as imported; ``published_at`` is aware UTC, topics are cleaned names."""

    url: str
    title: str
    published_at: datetime
    key_points: tuple[str, ...]
    topics: tuple[str, ...] = ()
    mentions: tuple[Mention, ...] = ()
    guid: str | None = None
    summary: str | None = None
    source: str | None = None
    image_url: str | None = None

    def canonical(self) -> dict[str, Any]:
        """A JSON-able form with a stable key order, the input of :meth:`content_hash`."""
        return {
            "url": self.url,
            "guid": self.guid,
            "title": self.title,
            "published_at": self.published_at.astimezone(UTC).isoformat(),
            "key_points": list(self.key_points),
            "topics": list(self.topics),
            # a mention without a kind hashes as before kinds existed: re-importing an
            # unchanged file changes nothing
            "mentions": [list(m) if m[3] else list(m[:3]) for m in self.mentions],
            "summary": self.summary,
            "source": self.source,
            "image_url": self.image_url,
        }

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: equal hashes mean an update would change nothing."""
        blob = json.dumps(
            self.canonical(), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- text cleaning

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def storable(ch: str) -> bool:
    """False for what no stored text may hold: a lone surrogate (not encodable as UTF-8) and
    Unicode's noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF: no XML character, so one of
    them in a title would make the Atom feeds unwritable)."""
    point = ord(ch)
    return not (0xD800 <= point <= 0xDFFF or 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE)


def _storable(text: str) -> str:
    return "".join(ch for ch in text if storable(ch))


def one_line(text: str) -> str:
    """Text for one-line places (titles, names, mail headers): no CR/LF or control characters."""
    text = unicodedata.normalize("NFC", _storable(text))
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    return " ".join(text.split())


def multi_line(text: str) -> str:
    """Text that may keep line breaks (key points): control characters other than LF dropped."""
    text = unicodedata.normalize("NFC", _storable(text).replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(
        ch
        for ch in text
        if ch == "\n" or ch == "\t" or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


def is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace."""
    if not value or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def parse_date(value: Any) -> datetime:
    """An aware UTC datetime from an ISO 8601 string or a YAML date/datetime (naive = UTC)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            return parse_instant(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date: {value!r}") from None
    else:
        raise TypeError(f"must be an ISO 8601 date string, not {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# ---------------------------------------------------------------- validation


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


class _Checker:
    """Collects the errors of one record so they are all reported together."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.errors: list[RecordError] = []

    def fail(self, field: str, message: str) -> None:
        self.errors.append(RecordError(message, field=field))

    def text(self, field: str, *, required: bool, max_len: int) -> str | None:
        value = self.raw.get(field)
        if value is None or (isinstance(value, str) and not value.strip() and not required):
            if required:
                self.fail(field, "required")
            return None
        if not isinstance(value, str):
            self.fail(field, f"must be a string, not {_type_name(value)}")
            return None
        return self._bounded(field, one_line(value), required, max_len)

    def _bounded(self, field: str, value: str, required: bool, max_len: int) -> str | None:
        if not value:
            if required:
                self.fail(field, "must not be empty")
            return None
        if len(value) > max_len:
            self.fail(field, f"longer than {max_len} characters")
            return None
        return value

    def url(self, field: str, *, required: bool) -> str | None:
        value = self.text(field, required=required, max_len=MAX_URL)
        if value is not None and not is_web_url(value):
            self.fail(field, f"not an absolute http(s) URL: {value!r}")
            return None
        return value

    def guid(self) -> str | None:
        value = self.raw.get("guid")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("guid", f"must be a string, not {_type_name(value)}")
            return None
        return self._bounded("guid", one_line(value), False, MAX_URL)

    def published_at(self) -> datetime | None:
        value = self.raw.get("published_at")
        if value is None or value == "":
            self.fail("published_at", "required")
            return None
        try:
            return parse_date(value)
        except (TypeError, ValueError, OverflowError) as exc:
            self.fail("published_at", str(exc))
            return None

    def str_list(self, field: str) -> list[str] | None:
        value = self.raw.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, f"must be a list of strings, not {_type_name(value)}")
            return None
        for i, item in enumerate(value, 1):
            if not isinstance(item, str):
                self.fail(field, f"item {i} must be a string, not {_type_name(item)}")
                return None
        return value

    def key_points(self) -> tuple[str, ...]:
        items = self.str_list("key_points")
        if items is None:
            return ()
        points = [multi_line(p) for p in items]
        for i, point in enumerate(points, 1):
            if not point:
                self.fail("key_points", f"item {i} is empty")
                return ()
            if len(point) > MAX_KEY_POINT:
                self.fail("key_points", f"item {i} is longer than {MAX_KEY_POINT} characters")
                return ()
        if not points:
            self.fail("key_points", "at least one key point is required")
        elif len(points) > MAX_KEY_POINTS:
            self.fail("key_points", f"more than {MAX_KEY_POINTS} key points")
            return ()
        return tuple(points)

    def topics(self) -> tuple[str, ...]:
        items = self.str_list("topics")
        if items is None:
            return ()
        names = unique_topics(items)
        if len(names) > MAX_TOPICS:
            self.fail("topics", f"more than {MAX_TOPICS} topics")
            return ()
        for name in names:
            problem = topic_length_problem(name)
            if problem:
                self.fail("topics", problem)
                return ()
        return tuple(names)

    def kind(self) -> str | None:
        """A mention's ``kind`` (person, organisation, other), or None when not given."""
        value = self.text("kind", required=False, max_len=40)
        if value is None:
            return None
        kind = parse_kind(value)
        if kind is None:
            self.fail("kind", f"{value!r} is not one of {kind_words()}")
        return kind

    def mentions(self) -> tuple[Mention, ...]:
        value = self.raw.get("mentions")
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("mentions", f"must be a list of objects, not {_type_name(value)}")
            return ()
        if len(value) > MAX_MENTIONS:
            self.fail("mentions", f"more than {MAX_MENTIONS} mentions")
            return ()
        out: list[Mention] = []
        for i, item in enumerate(value, 1):
            field = f"mentions[{i}]"
            if not isinstance(item, Mapping):
                self.fail(field, f"must be an object with a name, not {_type_name(item)}")
                continue
            sub = _Checker(item)
            name = sub.text("name", required=True, max_len=MAX_NAME)
            desc = sub.text("description", required=False, max_len=MAX_DESCRIPTION) or ""
            url = sub.url("url", required=False)
            kind = sub.kind()
            for err in sub.errors:
                self.fail(f"{field}.{err.field}", err.message)
            if name is not None and not sub.errors:
                out.append((name, desc, url, kind))
        return tuple(out)


def build_record(raw: Any) -> tuple[ArticleRecord | None, list[RecordError]]:
    """Validate one raw mapping; returns the record, or None and every problem found.

    The errors carry field and message only; the caller places them (file, record).
    Unknown keys are ignored so richer exports can be imported as they are.
    """
    if not isinstance(raw, Mapping):
        return None, [RecordError(f"expected an object, got {_type_name(raw)}")]
    check = _Checker(raw)
    url = check.url("url", required=True)
    title = check.text("title", required=True, max_len=MAX_TITLE)
    published_at = check.published_at()
    key_points = check.key_points()
    topics = check.topics()
    mentions = check.mentions()
    guid = check.guid()
    summary_raw = raw.get("summary")
    summary: str | None = None
    if summary_raw is not None:
        if not isinstance(summary_raw, str):
            check.fail("summary", f"must be a string, not {_type_name(summary_raw)}")
        else:
            summary = check._bounded("summary", multi_line(summary_raw), False, MAX_SUMMARY)
    source = check.text("source", required=False, max_len=MAX_SOURCE)
    image_url = check.url("image_url", required=False)
    if check.errors or url is None or title is None or published_at is None:
        return None, check.errors
    return (
        ArticleRecord(
            url=url,
            title=title,
            published_at=published_at,
            key_points=key_points,
            topics=topics,
            mentions=mentions,
            guid=guid,
            summary=summary,
            source=source,
            image_url=image_url,
        ),
        [],
    )


@dataclass
class ParseResult:
    """What one input yielded: good records, located errors and non-fatal warnings."""

    records: list[ArticleRecord]
    errors: list[RecordError]
    warnings: list[str]
    # (file, record) of each of ``records``, so a later check can name where a record was.
    origins: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> ParseResult:
        return cls([], [], [])

    @classmethod
    def failed(cls, file: str, message: str, record: str | None = None) -> ParseResult:
        return cls([], [RecordError(message, file=file, record=record)], [])

    def add(
        self,
        raw: Any,
        file: str,
        record: str,
        now: datetime | None = None,
        *,
        feed: bool = False,
    ) -> None:
        """Validate ``raw`` and keep the record or its errors, placed at ``file``/``record``.

        With the import clock ``now``, a publication date more than ``FUTURE_SLACK`` ahead is
        a field error; in a feed (``feed``), which nobody here can correct, the entry is
        dated ``now`` instead, with a warning.
        """
        built, errors = build_record(raw)
        if built is not None and now is not None and built.published_at > now + FUTURE_SLACK:
            when = built.published_at.isoformat()
            if feed:
                self.warnings.append(
                    f"{file}: {record}: published_at {when} is in the future; "
                    f"dated at the import time ({now.isoformat()})"
                )
                built = replace(built, published_at=now)
            else:
                message = f"{when} is more than a day after the import time ({now.isoformat()})"
                built, errors = None, [RecordError(message, field="published_at")]
        if built is not None:
            self.records.append(built)
            self.origins.append((file, record))
        self.errors.extend(e.located(file, record) for e in errors)
