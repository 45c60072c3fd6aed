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


#: The instants a command may act at (``--now``): wide enough for any replay, narrow enough
#: that the date arithmetic around one (periods, look-backs of ``max_age_days``, leases,
#: link lifetimes) stays within the calendar's years 1 to 9999.
EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(9000, 1, 1, tzinfo=UTC)


def parse_now(value: str) -> datetime:
    """``--now``: an ISO 8601 instant from ``EARLIEST_NOW`` up to ``LATEST_NOW``.

    Raises ValueError with the reason (not ISO 8601, or out of that range).
    """
    try:
        instant = parse_instant(value)
    except (ValueError, OverflowError):
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if not EARLIEST_NOW <= instant < LATEST_NOW:
        raise ValueError(
            f"{value!r} is out of range: use a time from {EARLIEST_NOW:%Y-%m-%d} to "
            f"{LATEST_NOW:%Y-%m-%d}"
        )
    return instant


def fixed_clock(instant: datetime) -> Clock:
    return lambda: instant


def running_clock(start: datetime, tick: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads ``start`` now and runs at real speed from there.

    ``digest run --now T`` replays T, but its sending still lasts real minutes: the leases
    on its claims must be renewed as they run out, and retries come due, as for a worker.
    """
    origin = tick()
    return lambda: start + timedelta(seconds=tick() - origin)
