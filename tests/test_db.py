"""The store's engine: SQLite in WAL with immediate transactions, batched id reads."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, text

from digest.db import chunks, dense_range, id_filters, make_engine


def test_a_fresh_sqlite_store_is_in_wal_and_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # the folder is made
    with engine.begin() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        conn.execute(text("CREATE TABLE t (id INTEGER)"))
    other = sqlite3.connect(tmp_path / "sub" / "x.db", timeout=0.1)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))  # a read begins IMMEDIATE: the write lock is held
        try:
            other.execute("BEGIN IMMEDIATE")
            raise AssertionError("a second writer got the lock")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
    other.close()
    engine.dispose()


def test_an_in_memory_store_needs_no_wal() -> None:
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "memory"
    engine.dispose()


def test_ids_are_read_as_a_range_when_dense_and_in_chunks_when_not() -> None:
    assert dense_range([3, 4, 5, 9]) == (3, 9)
    assert dense_range([1, 1000]) is None
    assert [list(c) for c in chunks(list(range(5)), 2)] == [[0, 1], [2, 3], [4]]
    column = Table("t", MetaData(), Column("id", Integer)).c.id
    assert len(id_filters(column, range(1, 600))) == 1
    scattered = id_filters(column, range(0, 1_000_000, 1000))
    assert len(scattered) == 2  # 1,000 ids in IN lists of 500
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1), (2), (7), (500000)"))
        found = {
            row[0]
            for f in id_filters(column, [2, 7, 500000])
            for row in conn.execute(select(column).where(f))
        }
    assert found >= {2, 7, 500000}
    engine.dispose()


def test_psycopgs_warning_about_a_lost_connection_is_left_to_the_outage_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The outage is said once by the process; psycopg's own cleanup warning for the same
    lost connection is not a second, cryptic line. Other ignored errors still show."""
    psycopg_log = logging.getLogger("psycopg")
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        lost = psycopg.OperationalError("the connection is lost")
        psycopg_log.warning("error ignored terminating %r: %s", object(), lost)
        psycopg_log.warning("error ignored terminating %r: %s", object(), ValueError("bug"))
        psycopg_log.warning("something else: %s", lost)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("error ignored terminating") and messages[0].endswith(": bug")
    assert messages[1] == "something else: the connection is lost"
