"""Heartbeats: each process's row says its state, last error and counters; an outage of the
store is no error for the heartbeat, and shows once the store is back."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from digest.clock import fixed_clock
from digest.heartbeat import (
    IDLE,
    SENDING,
    STOPPED,
    WAITING_SMTP,
    Beat,
    Heartbeat,
    alive,
    counters,
    processes,
)
from digest.outages import Outage
from tests.conftest import free_port

NOW = datetime(2026, 12, 6, 9, tzinfo=UTC)
log = logging.getLogger("test")


def test_a_worker_row_through_an_smtp_outage(engine: Engine) -> None:
    clock = fixed_clock(NOW)
    smtp = Outage("the SMTP server", log, clock)
    store = Outage("the store", log, clock)
    counts: Counter[str] = Counter({"sent": 40, "smtp_errors:connection": 2})
    doing: list[str] = ["50 deliveries of daily:2026-12-06"]

    def describe() -> Beat:
        return Beat(
            SENDING if doing else IDLE, doing[0] if doing else None, counters(counts, store)
        )

    beats = Heartbeat(engine, "worker", clock, 15, describe, outages=(store, smtp), process_id="w1")
    beats.start()
    with Session(engine) as session:
        (row,) = processes(session)
    assert (row.id, row.kind, row.state, row.detail) == (
        "w1", "worker", SENDING, "50 deliveries of daily:2026-12-06",
    )  # fmt: skip
    assert row.last_error is None and alive(row, NOW, 15)
    assert row.counters["deliveries"] == {"sent": 40, "retried": 0, "failed": 0}
    assert row.counters["smtp_errors"] == {"connection": 2}
    assert row.counters["store_reconnects"] == 0

    smtp.failed("ConnectionRefusedError: [Errno 111] Connection refused")
    doing.clear()
    assert beats.changed()  # a new state is written at once
    assert not beats.changed()  # ... once
    with Session(engine) as session:
        (row,) = processes(session)
    assert row.state == WAITING_SMTP
    assert (
        row.last_error == "the SMTP server: ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert row.last_error_at == NOW
    smtp.recovered()
    beats.stop()
    with Session(engine) as session:
        (row,) = processes(session)
    assert row.state == STOPPED and not alive(row, NOW, 15)
    assert "Connection refused" in (row.last_error or "")  # the last error stays


def test_a_heartbeat_the_store_cannot_take_is_kept_for_later(caplog: object) -> None:
    down = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    beats = Heartbeat(down, "worker", fixed_clock(NOW), 15, lambda: Beat(IDLE))
    assert beats.beat() is False  # no exception, no traceback: the next beat tries again


def test_rows_of_processes_long_gone_are_forgotten(engine: Engine) -> None:
    old = Heartbeat(engine, "worker", fixed_clock(NOW - timedelta(days=8)), 15, lambda: Beat(IDLE))
    old.beat()
    two_days_ago = fixed_clock(NOW - timedelta(days=2))
    cron = Heartbeat(engine, "worker", two_days_ago, 15, lambda: Beat(IDLE), process_id="c")
    cron.beat(final_state=STOPPED)  # a `worker --once` from two days ago: forgotten
    silent = Heartbeat(engine, "worker", two_days_ago, 15, lambda: Beat(IDLE), process_id="w")
    silent.beat()  # silent for two days, never said it stopped: kept for a week
    new = Heartbeat(engine, "scheduler", fixed_clock(NOW), 15, lambda: Beat(IDLE), process_id="s1")
    new.beat()
    with Session(engine) as session:
        assert [row.id for row in processes(session)] == ["s1", "w"]


def test_counters_group_by_what_follows_the_colon() -> None:
    counted = counters(Counter({"failed": 1, "ingest_failures:Feed A": 3, "smtp_errors:server": 1}))
    assert counted == {
        "deliveries": {"sent": 0, "retried": 0, "failed": 1},
        "ingest_failures": {"Feed A": 3},
        "smtp_errors": {"server": 1},
        "store_reconnects": 0,
    }


def test_systemd_hears_each_new_state(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        systemd.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        state = [SENDING]
        beats = Heartbeat(engine, "worker", fixed_clock(NOW), 15, lambda: Beat(state[0], "x"))
        beats.beat()
        beats.beat()  # the same state again: told once
        state[0] = IDLE
        beats.changed()
        assert systemd.recv(4096) == b"STATUS=worker sending: x"
        assert systemd.recv(4096) == b"STATUS=worker idle: x"
