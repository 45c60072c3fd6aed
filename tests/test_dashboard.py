"""The dashboard's tables from a real run: 200 digests, 3 refused, over real SMTP."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from digest.dashboard import build
from digest.settings import Settings
from tests.conftest import CLI, SMTPServer
from tests.newsroom_run import run_200_with_3_failures
from tests.test_web import NOW


def test_today_shows_197_sent_and_3_failed(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    run_200_with_3_failures(cli, engine, smtp_server)
    board = build(engine, settings, NOW + timedelta(minutes=5))
    days = board.tables["deliveries-by-day"]
    assert days.rows[-1] == ("2025-03-25", 197, 3, 0)
    assert len(days.rows) == 30 and days.chart.startswith("data:image/svg+xml;base64,")
    assert board.today.sent == 197 and board.today.failed == 3
    editions = {row[0]: row for row in board.tables["editions"].rows}
    row = editions["daily:2025-03-25"]
    assert row[1:8] == ("daily", "2025-03-25", 200, 197, 3, 0, 0)
    joined = board.tables["members-by-day"].rows
    assert sum(r[1] for r in joined) == 200
    queue = dict(board.tables["queue"].rows)
    assert queue == {
        "Ready to send": 0,
        "Being sent": 0,
        "Waiting for a retry": 0,
        "Planned for later": 0,
    }
    due = board.tables["due-next-24-hours"].rows
    assert sum(r[1] for r in due) == 197  # tomorrow 07:00 UTC: the active members
    assert not board.brake.paused


def test_an_empty_store_has_every_table(engine: Engine, settings: Settings) -> None:
    board = build(engine, settings, NOW)
    assert set(board.tables) == {
        "deliveries-by-day", "members-by-day", "clicks-by-day", "editions", "top-articles",
        "top-topics", "due-next-24-hours", "articles-waiting", "queue",
    }  # fmt: skip
    assert all(r[1:] == (0, 0, 0) for r in board.tables["deliveries-by-day"].rows)


def test_the_edition_report_keeps_the_last_editions_however_old(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    run_200_with_3_failures(cli, engine, smtp_server)
    board = build(engine, settings, NOW + timedelta(days=90))  # a replayed day, long ago
    editions = {row[0]: row for row in board.tables["editions"].rows}
    assert editions["daily:2025-03-25"][4:6] == (197, 3)
    assert all(r[1:] == (0, 0, 0) for r in board.tables["deliveries-by-day"].rows)
