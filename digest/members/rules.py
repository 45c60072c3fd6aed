"""Member rules, pure: what a valid address, name, topic list, rhythm, zone and hour are.

Every way in (CSV import, ``digest subscribers add``, the subscribe and preferences forms)
validates here, once, into a ``MemberRecord``; nothing below re-parses one. Errors carry the
record's place, the field and the reason, never a command-line option: the CLI and the web
word them for their own users.

Emails are stored in one form, the validator's normalised address lowercased, so lookups and
the unique constraint agree however the address was typed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from digest.archive.names import clean_name as clean_resource_name
from digest.archive.names import name_key
from digest.models import ACTIVE as ACTIVE
from digest.models import BOUNCED as BOUNCED
from digest.models import FREQUENCIES as FREQUENCIES
from digest.models import MEMBER_STATUSES as MEMBER_STATUSES
from digest.models import PAUSED as PAUSED
from digest.models import PENDING as PENDING
from digest.models import SUPPRESSED_STATUSES as SUPPRESSED_STATUSES
from digest.models import UNSUBSCRIBED as UNSUBSCRIBED
from digest.topics import topic_length_problem, unique_topics

MAX_NAME_LENGTH = 200
#: How many topics one member may follow unless the setting ``max_topics_per_member`` says
#: otherwise. Every topic a member names becomes a row; without a bound one CSV row could
#: create thousands.
DEFAULT_MAX_TOPICS = 50
DEFAULT_FREQUENCY = "daily"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_SEND_HOUR = 7
#: Members who get digests, or may resume them: a new subscribe request changes nothing
#: about them (they get a link to their preferences instead).
SUBSCRIBED_STATUSES = frozenset({ACTIVE, PAUSED})
#: Statuses a new member may be created with: imported lists are consented (active) or await
#: double opt-in (pending); anything else would be a suppression nobody asked for.
NEW_MEMBER_STATUSES = (ACTIVE, PENDING)
#: Statuses ``add`` may set on an existing member; suppression goes through ``remove``.
OPERATOR_STATUSES = (PENDING, ACTIVE, PAUSED)
#: Fields an import or ``add`` may change on an existing member (never the status).
PROFILE_FIELDS = ("name", "topics", "frequency", "timezone", "send_hour", "follows")
#: How many resources (people, organisations) one member may follow.
MAX_FOLLOWS = 100
MAX_FOLLOW_LENGTH = 500


class MemberError(ValueError):
    """One bad field of one record; the message names where, which field and why.

    ``code`` names the rule broken, for the doors to word the error in their own terms (an
    option to pass, a box to tick) without reading the message.
    """

    def __init__(self, where: str, field: str, message: str, code: str = "invalid") -> None:
        self.where = where
        self.field = field
        self.message = message
        self.code = code
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
            f"{email} is {status}; reactivating needs the member's own request to be "
            "subscribed again"
        )


class ImportFileError(ValueError):
    """The file as a whole cannot be read: too big, not UTF-8, no header, broken CSV."""


@dataclass(frozen=True)
class MemberRecord:
    """A validated member as the outside world describes it: a CSV row, ``add`` options, or
    what a visitor asked for on the subscribe or preferences form.

    Built only by the parsers below, so a record's fields are always in their stored form
    (the zone as the tz database spells it, topics as display names) and travel unchanged
    to the row: through a signed confirmation link as ``as_json``/``from_json``, into the
    store by ``store.add_member`` without being parsed again.
    """

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    frequency: str = DEFAULT_FREQUENCY
    timezone: str = DEFAULT_TIMEZONE
    send_hour: int = DEFAULT_SEND_HOUR
    #: resources followed, by name or slug as given (the store finds them)
    follows: tuple[str, ...] = ()

    @property
    def follows_something(self) -> bool:
        """A new member needs a topic or a resource to follow, or they would get nothing."""
        return bool(self.topics or self.follows)

    def as_json(self) -> dict[str, Any]:
        """The profile (everything but the address) in a compact form for a signed link."""
        data: dict[str, Any] = {
            "n": self.name,
            "t": list(self.topics),
            "f": self.frequency,
            "z": self.timezone,
            "h": self.send_hour,
        }
        if self.follows:  # links stay as short as they were for members who follow no one
            data["r"] = list(self.follows)
        return data

    @classmethod
    def from_json(cls, email: str, data: Any) -> MemberRecord:
        """A record from ``as_json`` output that this installation signed (so it was
        validated when it was made); only its shape is checked here."""
        if not isinstance(data, dict):
            raise ValueError("malformed profile")
        name, topics = data.get("n", ""), data.get("t", [])
        frequency, zone, hour = data.get("f"), data.get("z"), data.get("h")
        follows = data.get("r", [])
        if not (
            isinstance(name, str)
            and isinstance(topics, list)
            and all(isinstance(t, str) for t in topics)
            and isinstance(follows, list)
            and all(isinstance(r, str) for r in follows)
            and frequency in FREQUENCIES
            and isinstance(zone, str)
            and isinstance(hour, int)
            and not isinstance(hour, bool)
            and 0 <= hour <= 23
        ):
            raise ValueError("malformed profile")
        return cls(email, name, tuple(topics), frequency, zone, hour, tuple(follows))


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
        reserved = _reserved_test_address(value)
        if reserved is None:
            raise MemberError(where, "email", f"invalid address {value!r}: {exc}") from None
        return reserved
    if result.ascii_email is None:
        raise MemberError(
            where,
            "email",
            f"{value!r} has non-ASCII characters before the '@'; such addresses need "
            "SMTPUTF8 mail, which is not supported",
        )
    return result.ascii_email.lower()


def _reserved_test_address(value: str) -> str | None:
    """The stored form of an address at a reserved name that reaches nobody (``.test``,
    ``.invalid``, ``.localhost``, ``localhost``), or None for any other address.

    email-validator refuses those names outright; they are what tests, demos and staging
    installs send to, and the postal-address rule (``digest.compliance``) exempts exactly
    them, so they must be storable. The address is checked with the last label of its
    domain read as ``test`` (which the validator takes in its test environment), so the
    local part and the other labels get every check a real address gets. Address literals
    (``[127.0.0.1]``) stay refused: messages are not written to them.
    """
    from digest.compliance import is_exempt_domain

    local, at, domain = value.rpartition("@")
    host = domain.rstrip(".").lower()
    if not at or not host or host.startswith("[") or not is_exempt_domain(host):
        return None
    labels = host.split(".")
    stand_in = ".".join([*labels[:-1], "test"]) if len(labels) > 1 else f"{host}.test"
    try:
        result = validate_email(
            f"{local}@{stand_in}", check_deliverability=False, test_environment=True
        )
    except EmailNotValidError:
        return None
    if result.ascii_email is None or not host.isascii():
        return None
    return f"{result.ascii_email.rpartition('@')[0]}@{host}".lower()


def unicode_form(email: str) -> str | None:
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


def topic_count_problem(count: int, max_topics: int) -> str | None:
    """Why ``count`` topics are too many for one member, or None."""
    if count <= max_topics:
        return None
    return f"{count} topics; a member has at most {max_topics} (setting max_topics_per_member)"


def parse_topics(
    value: str | Iterable[str], where: str = "topics", max_topics: int = DEFAULT_MAX_TOPICS
) -> tuple[str, ...]:
    """Topic display names from ``'A; B'`` (or several such strings), deduplicated by slug;
    at most ``max_topics`` of them."""
    parts = [value] if isinstance(value, str) else list(value)
    names = unique_topics(piece for part in parts for piece in (part or "").split(";"))
    problem = topic_count_problem(len(names), max_topics)
    if problem:
        raise MemberError(where, "topics", problem, "too_many_topics")
    for name in names:
        problem = topic_length_problem(name)
        if problem:
            raise MemberError(where, "topics", problem)
    return tuple(names)


def parse_follows(value: str | Iterable[str], where: str = "follows") -> tuple[str, ...]:
    """Resource names or slugs from ``'A; B'`` (or several such strings), cleaned, each once
    (by the resource name rule); at most ``MAX_FOLLOWS``. Whether each names a resource is
    the store's to say."""
    parts = [value] if isinstance(value, str) else list(value)
    seen: dict[str, str] = {}
    for part in parts:
        for piece in (part or "").split(";"):
            name = clean_resource_name(piece)
            if not name:
                continue
            if len(name) > MAX_FOLLOW_LENGTH:
                raise MemberError(
                    where, "follows", f"longer than {MAX_FOLLOW_LENGTH} characters: {name[:40]!r}…"
                )
            seen.setdefault(name_key(name), name)
    if len(seen) > MAX_FOLLOWS:
        raise MemberError(
            where, "follows", f"{len(seen)} resources; a member follows at most {MAX_FOLLOWS}"
        )
    return tuple(seen.values())


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


def parse_member(
    row: Mapping[str, str], where: str, max_topics: int = DEFAULT_MAX_TOPICS
) -> MemberRecord:
    """Validate one record; missing or blank optional fields take the defaults.

    Raises the first ``MemberError`` found, checking fields in column order.
    """
    return MemberRecord(
        email=normalize_email(row.get("email") or "", where),
        name=clean_name(row.get("name") or "", where),
        topics=parse_topics(row.get("topics") or "", where, max_topics),
        frequency=parse_frequency(row.get("frequency") or "", where),
        timezone=parse_timezone(row.get("timezone") or "", where),
        send_hour=parse_send_hour(row.get("send_hour") or "", where),
        follows=parse_follows(row.get("follows") or "", where),
    )


def check_new_status(status: str, where: str = "new member") -> str:
    """A status a new member may be created with (never a suppression nobody asked for)."""
    if status not in NEW_MEMBER_STATUSES:
        raise MemberError(
            where, "status", f"a new member must be {' or '.join(NEW_MEMBER_STATUSES)}"
        )
    return status


def parse_changes(
    email: str,
    where: str,
    *,
    name: str | None = None,
    topics: str | Iterable[str] | None = None,
    frequency: str | None = None,
    timezone: str | None = None,
    send_hour: str | int | None = None,
    max_topics: int = DEFAULT_MAX_TOPICS,
    follows: str | Iterable[str] | None = None,
) -> tuple[MemberRecord, frozenset[str]]:
    """Validate the fields given (``None``: not given) into a record, and which were given.

    For changes to one member (``digest subscribers add``): the store writes only the given
    fields of an existing member; a new one gets the defaults for the rest.
    """
    row: dict[str, str] = {"email": email}
    for field, value in (("name", name), ("frequency", frequency), ("timezone", timezone)):
        if value is not None:
            row[field] = value
    if send_hour is not None:
        row["send_hour"] = str(send_hour)
    record = parse_member(row, where, max_topics)
    if topics is not None:
        record = replace(record, topics=parse_topics(topics, where, max_topics))
    if follows is not None:
        record = replace(record, follows=parse_follows(follows, where))
    given = frozenset(
        f
        for f in PROFILE_FIELDS
        if f in row
        or (f == "topics" and topics is not None)
        or (f == "follows" and follows is not None)
    )
    return record, given


def parse_profile(
    values: Mapping[str, str],
    topics: Iterable[str],
    offered: Mapping[str, str],
    max_topics: int = DEFAULT_MAX_TOPICS,
    follows: Iterable[str] = (),
    offered_resources: Mapping[str, str] | None = None,
) -> tuple[MemberRecord | None, list[MemberError]]:
    """Validate a subscribe or preferences form into a record, or every field's error.

    ``values`` holds the form's fields (``email``, ``name``, ``frequency``, ``timezone``,
    ``send_hour``); ``topics`` are the slugs ticked, ``offered`` the topics the form may offer
    (slug -> display name): anything else ticked is ignored, at most ``max_topics``.
    ``follows`` are the resource slugs ticked, of ``offered_resources`` (slug -> name). At
    least one topic or resource must remain.
    """
    errors: list[MemberError] = []
    parsed: dict[str, Any] = {}
    try:
        parsed["email"] = normalize_email(values.get("email") or "", "form")
    except MemberError as exc:
        errors.append(exc)
    chosen = tuple(dict.fromkeys(offered[s] for s in topics if s in offered))
    resources = offered_resources or {}
    followed = tuple(dict.fromkeys(s for s in follows if s in resources))[:MAX_FOLLOWS]
    if not chosen and not followed:
        errors.append(
            MemberError(
                "form", "topics", "choose at least one topic or person to follow", "no_topics"
            )
        )
    elif len(chosen) > max_topics:
        words = f"choose at most {max_topics} topic{'' if max_topics == 1 else 's'}"
        errors.append(MemberError("form", "topics", words, "too_many_topics"))
    for field, parse in (
        ("name", clean_name),
        ("frequency", parse_frequency),
        ("timezone", parse_timezone),
        ("send_hour", parse_send_hour),
    ):
        try:
            parsed[field] = parse(values.get(field) or "", "form")
        except MemberError as exc:
            errors.append(exc)
    if errors:
        return None, errors
    return MemberRecord(topics=chosen, follows=followed, **parsed), []
