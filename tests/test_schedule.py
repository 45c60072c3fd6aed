"""Edition keys and due times, in members' own time zones, with a passed-in clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.schedule import edition_label, is_stale, latest_due_edition


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
