"""The clock is passed in: every command takes ``--now`` so a day can be replayed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def parse_instant(value: str) -> datetime:
    """An ISO 8601 instant; a value without an offset is taken as UTC."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def fixed_clock(instant: datetime) -> Clock:
    return lambda: instant
