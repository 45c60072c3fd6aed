"""Who is due, and for which edition: pure functions of (member settings, now).

An edition is identified by a key in the member's own calendar: ``daily:2026-11-24`` or
``weekly:2026-W48``. Its due instant is ``send_hour`` local time on that day (weekly: on the
configured weekday of that ISO week). The edition a member is due for at ``now`` is the latest
one whose due instant has passed; it goes stale once the grace period is over, so a member who
was not reached in time gets the next edition rather than yesterday's at midnight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


@dataclass(frozen=True)
class Edition:
    key: str
    frequency: str
    local_date: date  # the local day it is due on
    due_at: datetime  # aware UTC

    @property
    def period(self) -> timedelta:
        return PERIODS[self.frequency]

    @property
    def label(self) -> str:
        return edition_label(self.key)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _due_instant(day: date, send_hour: int, tz: ZoneInfo) -> datetime:
    # A send hour inside a spring-forward gap resolves to the first valid instant after it.
    return datetime.combine(day, time(send_hour), tz).astimezone(UTC)


def edition_for_day(frequency: str, day: date, send_hour: int, tz: ZoneInfo) -> Edition:
    """The edition whose due day is ``day`` (weekly: ``day`` must be the configured weekday)."""
    if frequency == "daily":
        key = f"daily:{day.isoformat()}"
    elif frequency == "weekly":
        year, week, _ = day.isocalendar()
        key = f"weekly:{year}-W{week:02d}"
    else:
        raise ValueError(f"unknown frequency {frequency!r}")
    return Edition(key, frequency, day, _due_instant(day, send_hour, tz))


def latest_due_edition(
    frequency: str, timezone: str, send_hour: int, now: datetime, weekly_weekday: int = 0
) -> Edition:
    """The most recent edition whose due instant is at or before ``now``."""
    tz = zone(timezone)
    day = _period_day(frequency, now.astimezone(tz).date(), weekly_weekday)
    edition = edition_for_day(frequency, day, send_hour, tz)
    if edition.due_at > now:
        edition = edition_for_day(frequency, day - PERIODS[frequency], send_hour, tz)
    return edition


def _period_day(frequency: str, today: date, weekly_weekday: int) -> date:
    """The day this period's edition is due: today, or this week's ``weekly_weekday``."""
    if frequency == "weekly":
        return today - timedelta(days=(today.weekday() - weekly_weekday) % 7)
    return today


def current_edition(
    frequency: str,
    timezone: str,
    send_hour: int,
    now: datetime,
    weekly_weekday: int = 0,
    *,
    force: bool = False,
) -> Edition:
    """The edition a member is due for at ``now``.

    ``force`` takes this period's edition whatever the send hour (``digest run --force``,
    previews): today's for daily members, this week's for weekly ones, due no later than now.
    """
    if not force:
        return latest_due_edition(frequency, timezone, send_hour, now, weekly_weekday)
    tz = zone(timezone)
    day = _period_day(frequency, now.astimezone(tz).date(), weekly_weekday)
    edition = edition_for_day(frequency, day, send_hour, tz)
    return Edition(edition.key, edition.frequency, edition.local_date, min(edition.due_at, now))


def is_stale(edition: Edition, timezone: str, now: datetime, max_lateness: timedelta) -> bool:
    """Too late to send: past ``max_lateness``, or (when that is zero) past its local day."""
    if max_lateness > timedelta(0):
        return now - edition.due_at > max_lateness
    return now.astimezone(zone(timezone)).date() != edition.local_date


def too_soon(edition: Edition, last_due_at: datetime | None) -> bool:
    """Whether an edition follows the member's previous one too closely to be sent.

    After a change of time zone, send hour or rhythm, the next edition in the new calendar can
    fall before, or hours after, the last one sent; requiring half a period between due times
    means a member never gets two editions in one day (or week), and never waits two.
    """
    if last_due_at is None:
        return False
    return edition.due_at - last_due_at < edition.period / 2


@lru_cache(maxsize=256)
def edition_label(key: str) -> str:
    """A human label for the subject and heading: "Tuesday 24 November 2026", "Week 48, 2026"."""
    kind, _, value = key.partition(":")
    if kind == "daily":
        day = date.fromisoformat(value)
        return f"{day:%A} {day.day} {day:%B %Y}"
    if kind == "weekly":
        year, _, week = value.partition("-W")
        return f"Week {int(week)}, {year}"
    return value


def edition_day(key: str, weekly_weekday: int = 0) -> date:
    """The day an edition is for: a daily edition's date, a weekly one's sending day."""
    rhythm, _, period = key.partition(":")
    if rhythm == "weekly":
        year, _, week = period.partition("-W")
        return date.fromisocalendar(int(year), int(week), weekly_weekday + 1)
    return date.fromisoformat(period)


def due_by_hour(
    groups: Iterable[tuple[str, str, int, int]],
    now: datetime,
    weekly_weekday: int = 0,
    hours: int = 24,
) -> dict[tuple[datetime, str], int]:
    """How many members fall due in each UTC hour of the next ``hours``, per rhythm, from
    (frequency, time zone, send hour, count) groups: {(hour start, "daily"): n, ...}."""
    start = now.replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=hours)
    out: dict[tuple[datetime, str], int] = {}
    for frequency, timezone, send_hour, count in groups:
        try:
            tz = zone(timezone)
        except (KeyError, ValueError):
            continue
        local_today = now.astimezone(tz).date()
        for offset in (-1, 0, 1, 2):
            day = local_today + timedelta(days=offset)
            if frequency == "weekly" and day.weekday() != weekly_weekday:
                continue
            due = _due_instant(day, send_hour, tz)
            if now <= due < end:
                slot = (due.replace(minute=0, second=0, microsecond=0), frequency)
                out[slot] = out.get(slot, 0) + count
    return out
