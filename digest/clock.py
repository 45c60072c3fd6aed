"""The clock is passed in: every command takes ``--now`` so a day can be replayed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

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


def running_clock(start: datetime, tick: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads ``start`` now and runs at real speed from there.

    ``digest run --now T`` replays T, but its sending still lasts real minutes: the leases
    on its claims must be renewed as they run out, and retries come due, as for a worker.
    """
    origin = tick()
    return lambda: start + timedelta(seconds=tick() - origin)
