"""Outages as operators read them: one WARNING saying what the process does about it, one
INFO with the length when it ends."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from digest.outages import STOPPING, Outage, duration

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_one_warning_when_it_begins_and_one_info_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = iter([100.0, 142.0])
    outage = Outage("the store", logging.getLogger("t"), lambda: NOW, lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger="t"):
        assert outage.failed("refused") is True
        assert outage.failed("refused again") is False
        assert outage.recovered() == 42.0
        assert outage.recovered() is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "the store is not reachable (refused); waiting for it"),
        ("INFO", "the store is reachable again after 42s"),
    ]
    assert outage.last_error == "the store: refused again" and outage.count == 1


def test_a_failure_just_after_an_outage_ended_is_its_tail_not_a_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another lane's connection, broken while the store was away, fails on its first use
    after the store is back: that is not a second outage to announce."""
    ticks = iter([100.0, 130.0, 131.0, 150.0, 170.0])
    outage = Outage("the store", logging.getLogger("t"), lambda: NOW, lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger="t"):
        assert outage.failed("closed") is True  # 100: begins
        assert outage.recovered() == 30.0  # 130: ends
        assert outage.failed("stale connection") is False  # 131: its tail, no WARNING
        assert outage.recovered() is None  # the lane reconnects: nothing to say
        assert outage.failed("closed") is True  # 150: a new outage, 20 s later
        assert outage.recovered() == 20.0  # 170
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert outage.count == 2 and outage.last_error == "the store: closed"


def test_a_one_shot_command_says_it_stops_instead_of_promising_to_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("the SMTP server", logging.getLogger("t"), lambda: NOW, then=STOPPING)
    with caplog.at_level(logging.WARNING, logger="t"):
        outage.failed("ConnectionRefusedError")
    (record,) = caplog.records
    assert record.getMessage().endswith(
        "; stopping (what is not sent stays planned for the next run)"
    )
    assert "waiting" not in record.getMessage()


def test_durations_for_people() -> None:
    assert [duration(s) for s in (3.25, 42, 185, 7260)] == ["3.2s", "42s", "3m 05s", "2h 01m"]
