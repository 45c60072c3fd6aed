"""The newsroom's dashboard: the store's figures as named tables, each drawn as a chart
where a chart helps. Reads only, through the store modules; the web page shows each table
beside its chart and offers it as CSV (``/editor/dashboard/<name>.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from digest import brake, catalog, clicks, ledger
from digest.charts import bar_chart, data_uri
from digest.feedback.store import edition_rates
from digest.members.store import membership_by_day, schedule_groups
from digest.schedule import due_by_hour, edition_day
from digest.settings import Settings

#: How far back the dashboard looks: days for the daily figures, editions for the report.
DAYS = 30
EDITIONS = 60
TOP = 10


def _parses(edition: str, weekday: int) -> bool:
    return _recent(edition, date.min, weekday)


def _recent(edition: str, first_day: date, weekday: int) -> bool:
    try:
        return edition_day(edition, weekday) >= first_day
    except ValueError:
        return False


@dataclass(frozen=True)
class Table:
    name: str  # also the CSV file's name
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    chart: str = ""  # the chart as a data: URL, when there is one
    summary: str = ""  # what the chart shows, for its alt text and caption
    note: str = ""


@dataclass(frozen=True)
class Today:
    sent: int = 0
    failed: int = 0
    clicks: int = 0


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    days: int
    tables: dict[str, Table]
    today: Today
    queue_total: int
    brake: brake.BrakeState = field(default_factory=brake.BrakeState)


def _days(now: datetime, days: int) -> list[date]:
    today = now.date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def _chart(title: str, labels: list[str], series: list[tuple[str, list[int]]]) -> str:
    return data_uri(bar_chart(title, labels, series))


def _by_day_table(
    name: str,
    title: str,
    days: list[date],
    data: dict[str, dict[str, int]],
    columns: tuple[tuple[str, str], ...],
    summary: str,
    note: str = "",
) -> Table:
    rows = tuple(
        (d.isoformat(), *(int(data.get(d.isoformat(), {}).get(key, 0)) for key, _ in columns))
        for d in days
    )
    labels = [d.strftime("%m-%d") for d in days]
    series = [(label, [r[i + 1] for r in rows]) for i, (_, label) in enumerate(columns)]
    return Table(
        name,
        title,
        ("Day", *(label for _, label in columns)),
        rows,
        _chart(title, labels, series),
        summary,
        note,
    )


def build(engine: Engine, settings: Settings, now: datetime, days: int = DAYS) -> Dashboard:
    """Every table of the dashboard at ``now``."""
    day_list = _days(now, days)
    since = datetime.combine(day_list[0], datetime.min.time(), now.tzinfo)
    weekday = settings.weekly_weekday
    with Session(engine) as session:
        outcomes = ledger.outcomes_by_day(session, since)
        joined = membership_by_day(session, since)
        by_edition = ledger.outcomes_by_edition(session, EDITIONS)
        days_shown = [edition_day(e, weekday) for e in by_edition if _parses(e, weekday)]
        oldest = min(days_shown, default=day_list[0]) - timedelta(days=8)
        rates = edition_rates(session, datetime.combine(oldest, datetime.min.time(), UTC))
        edition_clicks = clicks.clicks_by_edition(session)
        shown = sorted(
            set(by_edition) | {e for e in edition_clicks if _recent(e, day_list[0], weekday)}
        )
        top_articles = clicks.top_articles(session, shown, TOP)
        top_topics = clicks.top_topics(session, shown, TOP)
        groups = schedule_groups(session)
        waiting = catalog.waiting_by_topic(session, now)
        queue = ledger.queue_now(session, now)
        brake_state = brake.state(session)

    tables: dict[str, Table] = {}
    tables["deliveries-by-day"] = _by_day_table(
        "deliveries-by-day",
        "Deliveries per day",
        day_list,
        outcomes,
        ((ledger.SENT, "Sent"), (ledger.FAILED, "Failed"), (ledger.SKIPPED, "Skipped")),
        "Bar chart of deliveries sent, failed and skipped per day; the table beside it has "
        "the figures.",
        "Sent: by when the server took them; failed and skipped: by when that was recorded.",
    )
    tables["members-by-day"] = _by_day_table(
        "members-by-day",
        "Members joining, leaving and bouncing per day",
        day_list,
        joined,
        (("joined", "Joined"), ("left", "Left"), ("bounced", "Bounced")),
        "Bar chart of members who joined, left and were marked bounced per day; the table "
        "beside it has the figures.",
    )
    per_day: dict[str, dict[str, int]] = {}
    for edition, (count, discounted) in edition_clicks.items():
        if not _recent(edition, day_list[0], weekday):
            continue
        key = edition_day(edition, weekday).isoformat()
        slot = per_day.setdefault(key, {"clicks": 0, "discounted": 0})
        slot["clicks"] += count
        slot["discounted"] += discounted
    tables["clicks-by-day"] = _by_day_table(
        "clicks-by-day",
        "Clicks per edition day",
        day_list,
        per_day,
        (("clicks", "Clicks"), ("discounted", "Discounted (link scanners)")),
        "Bar chart of article clicks per edition day, and the clicks discounted as link "
        "scanners'; the table beside it has the figures.",
        "Clicks on the editions of each day (a weekly edition on its sending day).",
    )

    edition_rows = []
    for edition in sorted(set(by_edition), reverse=True):
        counts = by_edition[edition]
        r = rates.get(edition)
        rhythm, _, _ = edition.partition(":")
        planned = sum(n for s, n in counts.items() if s != ledger.SKIPPED)
        waiting_now = sum(counts.get(s, 0) for s in ledger.UNFINISHED_STATUSES)
        edition_rows.append(
            (
                edition,
                rhythm,
                edition_day(edition, weekday).isoformat(),
                planned,
                counts.get(ledger.SENT, 0),
                counts.get(ledger.FAILED, 0),
                waiting_now,
                counts.get(ledger.SKIPPED, 0),
                (r.hard_bounces + r.soft_bounces) if r else 0,
                r.complaints if r else 0,
                r.unsubscribes if r else 0,
                edition_clicks.get(edition, (0, 0))[0],
            )
        )
    tables["editions"] = Table(
        "editions",
        f"Per edition day and rhythm (the last {EDITIONS} planned)",
        (
            "Edition",
            "Rhythm",
            "Day",
            "Planned",
            "Sent",
            "Failed",
            "Waiting",
            "Skipped",
            "Bounced",
            "Complaints",
            "Unsubscribes",
            "Clicks",
        ),  # fmt: skip
        tuple(edition_rows),
        note="Bounces, complaints and unsubscribes are those that came back naming a delivery "
        "of the edition; unsubscribes by the link in a message are not tied to an edition.",
    )
    tables["top-articles"] = Table(
        "top-articles",
        "Top articles by clicks, in the editions above and the last 30 days'",
        ("Article", "Clicks", "Discounted"),
        tuple((a.title, a.clicks, a.discounted) for a in top_articles),
    )
    tables["top-topics"] = Table(
        "top-topics",
        "Top topics by clicks, in the editions above and the last 30 days'",
        ("Topic", "Clicks"),
        tuple((t.name, t.clicks) for t in top_topics),
    )

    due = due_by_hour(groups, now, weekday)
    hours = [now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=h) for h in range(24)]
    due_rows = tuple(
        (h.strftime("%Y-%m-%d %H:00"), due.get((h, "daily"), 0), due.get((h, "weekly"), 0))
        for h in hours
    )
    tables["due-next-24-hours"] = Table(
        "due-next-24-hours",
        "Members due per hour, next 24 hours",
        ("Hour (UTC)", "Daily", "Weekly"),
        due_rows,
        _chart(
            "Members due per hour",
            [h.strftime("%H:00") for h in hours],
            [("Daily", [r[1] for r in due_rows]), ("Weekly", [r[2] for r in due_rows])],
        ),
        "Bar chart of active members whose edition falls due in each of the next 24 hours, "
        "daily and weekly; the table beside it has the figures.",
    )
    tables["articles-waiting"] = Table(
        "articles-waiting",
        "Articles waiting per topic",
        ("Topic", "Articles"),
        tuple(waiting),
        note="Articles first offered in the last 24 hours or released from a hold within the "
        "next 24 (not retracted): what the next daily editions will take.",
    )
    queue_rows = (
        ("Ready to send", queue["ready"]),
        ("Being sent", queue["sending"]),
        ("Waiting for a retry", queue["retry_waiting"]),
        ("Planned for later", queue["planned_later"]),
    )
    tables["queue"] = Table("queue", "The queue", ("State", "Deliveries"), queue_rows)

    today_key = day_list[-1].isoformat()
    today = Today(
        sent=outcomes.get(today_key, {}).get(ledger.SENT, 0),
        failed=outcomes.get(today_key, {}).get(ledger.FAILED, 0),
        clicks=per_day.get(today_key, {}).get("clicks", 0),
    )
    total = sum(n for _, n in queue_rows)
    return Dashboard(now, days, tables, today, total, brake_state)
