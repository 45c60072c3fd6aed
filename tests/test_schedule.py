"""Edition keys and due times, in members' own time zones, with a passed-in clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.schedule import edition_label, is_stale, latest_due_edition, too_soon


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_not_due_before_send_hour_local() -> None:
    # 06:59 in London (GMT in November) -> yesterday's edition is the latest due one.
    edition = latest_due_edition("daily", "Europe/London", 7, utc(2026, 11, 24, 6, 59))
    assert edition.key == "daily:2026-11-23"
    edition = latest_due_edition("daily", "Europe/London", 7, utc(2026, 11, 24, 7, 0))
    assert edition.key == "daily:2026-11-24"
    assert edition.due_at == utc(2026, 11, 24, 7, 0)


@pytest.mark.parametrize(
    ("tz", "due_utc"),
    [
        ("America/New_York", utc(2026, 11, 24, 12, 0)),  # EST, UTC-5
        ("Asia/Kolkata", utc(2026, 11, 24, 1, 30)),  # UTC+5:30
        ("Pacific/Chatham", utc(2026, 11, 23, 17, 15)),  # UTC+13:45 in summer
        ("Pacific/Auckland", utc(2026, 11, 23, 18, 0)),  # UTC+13 in summer
    ],
)
def test_daily_due_in_member_time_zone(tz: str, due_utc: datetime) -> None:
    edition = latest_due_edition("daily", tz, 7, due_utc + timedelta(minutes=1))
    assert edition.key == "daily:2026-11-24"
    assert edition.due_at == due_utc
    before = latest_due_edition("daily", tz, 7, due_utc - timedelta(minutes=1))
    assert before.key == "daily:2026-11-23"


def test_daily_across_dst_change_keeps_local_hour() -> None:
    # London moves to BST on 2026-03-29: 07:00 local is 07:00 UTC before, 06:00 UTC after.
    before = latest_due_edition("daily", "Europe/London", 7, utc(2026, 3, 28, 12))
    after = latest_due_edition("daily", "Europe/London", 7, utc(2026, 3, 29, 12))
    assert before.due_at == utc(2026, 3, 28, 7)
    assert after.due_at == utc(2026, 3, 29, 6)


def test_weekly_due_on_configured_weekday() -> None:
    # 2026-11-23 is a Monday (ISO week 48).
    monday_8 = utc(2026, 11, 23, 8)
    edition = latest_due_edition("weekly", "UTC", 7, monday_8, weekly_weekday=0)
    assert edition.key == "weekly:2026-W48"
    assert edition.due_at == utc(2026, 11, 23, 7)
    sunday = utc(2026, 11, 29, 23)
    assert latest_due_edition("weekly", "UTC", 7, sunday, 0).key == "weekly:2026-W48"
    monday_6 = utc(2026, 11, 23, 6)
    assert latest_due_edition("weekly", "UTC", 7, monday_6, 0).key == "weekly:2026-W47"
    friday = latest_due_edition("weekly", "UTC", 9, utc(2026, 11, 27, 10), weekly_weekday=4)
    assert friday.key == "weekly:2026-W48" and friday.due_at == utc(2026, 11, 27, 9)


def test_stale_after_local_day_or_max_lateness() -> None:
    edition = latest_due_edition("daily", "Europe/London", 7, utc(2026, 11, 24, 8))
    assert not is_stale(edition, "Europe/London", utc(2026, 11, 24, 23, 59), timedelta(0))
    assert is_stale(edition, "Europe/London", utc(2026, 11, 25, 0, 1), timedelta(0))
    assert is_stale(edition, "Europe/London", utc(2026, 11, 24, 13, 1), timedelta(hours=6))
    assert not is_stale(edition, "Europe/London", utc(2026, 11, 24, 12, 59), timedelta(hours=6))


def test_edition_labels() -> None:
    assert edition_label("daily:2026-11-24") == "Tuesday 24 November 2026"
    assert edition_label("weekly:2026-W48") == "Week 48, 2026"


ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "Pacific/Chatham"]


TICK = timedelta(minutes=15)


def simulate(
    zone_at: callable, hour_at: callable, frequency: str, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """Tick through time as the scheduler would; return (edition, due, planned at) per send."""
    sent: list[tuple[str, datetime, datetime]] = []
    keys: set[str] = set()
    now = start
    while now < end:
        tz, hour = zone_at(now), hour_at(now)
        edition = latest_due_edition(frequency, tz, hour, now, 0)
        last_due = sent[-1][1] if sent else None
        if (
            edition.key not in keys
            and not is_stale(edition, tz, now, timedelta(0))
            and not too_soon(edition, last_due)
        ):
            keys.add(edition.key)
            sent.append((edition.key, edition.due_at, now))
        now += TICK
    return sent


@pytest.mark.parametrize("zone", ZONES)
def test_one_daily_edition_per_local_day_across_a_year_of_dst(zone: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2027, 1, 1, tzinfo=UTC)
    sent = simulate(lambda _: zone, lambda _: 7, "daily", start, end)
    tz = ZoneInfo(zone)
    per_day: dict[date, int] = defaultdict(int)
    first = start.astimezone(tz).date() + timedelta(days=1)
    for _key, _due, at in sent:
        local = at.astimezone(tz)
        if local.date() < first:
            continue  # the service started mid-day: that day's edition went out at once
        per_day[local.date()] += 1
        assert (local.hour, local.minute) >= (7, 0), f"sent before 07:00 local: {local}"
        assert at - _due < TICK, "sent within one tick of the due time"
    last = (end - timedelta(days=1)).astimezone(tz).date()
    days = [first + timedelta(days=i) for i in range((last - first).days)]
    assert all(per_day[d] == 1 for d in days), [d for d in days if per_day[d] != 1][:5]
    assert max(per_day.values()) == 1


@pytest.mark.parametrize("zone", ZONES)
def test_one_weekly_edition_per_iso_week(zone: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sent = simulate(lambda _: zone, lambda _: 7, "weekly", start, datetime(2027, 1, 1, tzinfo=UTC))
    weeks = [key for key, _, _ in sent]
    assert len(weeks) == len(set(weeks)) >= 51
    tz = ZoneInfo(zone)
    for _key, _due, at in sent:
        local = at.astimezone(tz)
        assert local.weekday() == 0 and local.hour >= 7


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Pacific/Auckland", "America/New_York"),
        ("America/New_York", "Pacific/Auckland"),
        ("Europe/London", "Asia/Kolkata"),
        ("Pacific/Chatham", "Europe/London"),
    ],
)
def test_changing_time_zone_or_hour_gives_no_gap_and_no_double(before: str, after: str) -> None:
    switch = datetime(2026, 6, 10, 15, tzinfo=UTC)
    hour_switch = datetime(2026, 6, 20, 15, tzinfo=UTC)
    sent = simulate(
        lambda now: before if now < switch else after,
        lambda now: 7 if now < hour_switch else 21,
        "daily",
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
    )
    times = [at for _, _, at in sent][1:]  # the first went out late, when the service started
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= timedelta(hours=12), "never two editions in one day"
    assert max(gaps) < timedelta(days=2), "never a gap of two days"
