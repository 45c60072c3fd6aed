"""Engine and sessions.

SQLite runs in WAL mode with every transaction opened as ``BEGIN IMMEDIATE``: a write lock is
taken up front, so two processes claiming work can never both read the same free rows and
upgrade later (the lost-update race SQLite's deferred transactions allow). PostgreSQL uses
row locks (``FOR UPDATE SKIP LOCKED``) instead; see ``ledger.claim``.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, create_engine

from digest import models, resources  # noqa: F401  (models registers the tables)


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for ``url``; an SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        # psycopg 3 is what we ship; psycopg2's URLs name the same server the same way
        parsed = parsed.set(drivername="postgresql+psycopg")
        url = parsed.render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60})
        _make_sqlite_immediate(engine)
        return engine
    # a connection that cannot be made within seconds is an outage to wait out, not a hang
    return create_engine(
        url, echo=echo, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT}
    )


#: Seconds to wait for a PostgreSQL connection before counting the store unreachable.
CONNECT_TIMEOUT = 10


#: How long a connection waits for SQLite's write lock (and for the WAL switch) before failing.
SQLITE_BUSY_SECONDS = 60.0


def _make_sqlite_immediate(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
            _use_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so), waiting its turn.

    Processes opening a fresh file at once all try the switch, which needs the file to
    themselves: SQLite answers "database is locked" at once to all but one (it would be a
    deadlock to wait), whatever the busy timeout. So a refusal for a lock is retried, with a
    short random pause, until the switch takes or the busy time is over; any other answer
    (WAL already, an in-memory store, a file system without shared memory) is final.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        else:
            if mode not in ("wal", "memory"):  # a file system without shared memory: no WAL
                logging.getLogger(__name__).warning(
                    "SQLite stays in %s journal mode (WAL is not available here)", mode
                )
            return
        time.sleep(random.uniform(0.01, 0.05))


class SchemaOutOfDate(RuntimeError):
    """The store was made by an older version; ``digest db upgrade`` brings it up to date."""


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.path("migrations")))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


#: PostgreSQL advisory lock key for schema changes ("digest" and 3).
SCHEMA_LOCK = 0x6469676573740003


def upgrade_schema(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision``; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    config = alembic_config(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # processes starting on a fresh store take turns
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return before, current_revision(engine)


def create_schema(engine: Engine) -> None:
    """A fresh store gets the whole schema; an older one must be upgraded explicitly."""
    if not inspect(engine).has_table("delivery"):
        upgrade_schema(engine)
        return
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise SchemaOutOfDate(
            f"the store's schema is at revision {current or 'none'}, this version needs {head}: "
            "run `digest db upgrade` (back up the database first)"
        )


def drop_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # the search index: not one of the models' tables
            conn.execute(text("DROP TABLE IF EXISTS article_fts"))
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back whole if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT 1")).scalar() == 1


def driver_statement(statement: Any, dialect: Any) -> tuple[str, tuple[str, ...] | None]:
    """``statement`` as the driver takes it: its SQL for ``dialect``, and the order of its
    parameters when the driver's style is positional (None: by name).

    For hot paths that run one statement many times on the DB-API connection itself.
    """
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup) if compiled.positional else None


def driver_params(order: tuple[str, ...] | None, values: dict[str, Any]) -> Any:
    """``values`` in the shape ``driver_statement``'s driver wants."""
    return values if order is None else tuple(values[name] for name in order)


#: Ids per IN list: well under every backend's parameter limit.
CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``: IN lists every backend takes."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def id_filters(column: Any, ids: Iterable[int]) -> list[Any]:
    """Conditions that together cover ``ids``: one range when they are dense, else IN chunks.

    A batch of members is a run of consecutive ids, so one ``BETWEEN`` uses the index as a
    range scan instead of hundreds of point lookups; the range can hold other ids, so callers
    keep only the rows they asked for.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return []
    span = dense_range(wanted)
    if span is not None:
        return [column.between(*span)]
    return [column.in_(chunk) for chunk in chunks(wanted)]


def dense_range(ids: Iterable[int]) -> tuple[int, int] | None:
    """(lowest, highest) when ``ids`` are dense enough to read as one range, else None."""
    wanted = ids if isinstance(ids, list) else sorted(set(ids))
    if not wanted:
        return None
    low, high = wanted[0], wanted[-1]
    return (low, high) if high - low < 2 * len(wanted) else None


# ------------------------------------------------------------------ outages

#: SQLite's words for a store that is there but cannot be used right now.
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")


class StoreUnavailable(RuntimeError):
    """The store stayed unreachable until the process was told to stop waiting for it."""


def store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached (a dropped or refused connection, a
    server restarting, SQLite busy past its timeout) rather than that a statement is wrong.

    The one place that decides: the sender, the scheduler, the web app and the CLI wait out
    what it accepts and report the rest. Errors raised straight by the driver (the sender's
    ledger writer runs on the DB-API connection) count as much as SQLAlchemy's wrapped ones.
    """
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import InterfaceError as SAInterfaceError
    from sqlalchemy.exc import OperationalError as SAOperationalError

    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, SAOperationalError | SAInterfaceError):
            # SQLite says "no such table" with the same class as "database is locked"
            if isinstance(exc.orig, sqlite3.Error):
                return store_unreachable(exc.orig)
            return True
        return False
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg ships with digest
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _SQLITE_TRANSIENT)
    return False


def unreachable_reason(exc: BaseException) -> str:
    """The first line of what the driver said, without SQLAlchemy's wrapping."""
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip()
    return text_.splitlines()[0] if text_ else type(orig).__name__


def _not_a_lost_connections_cleanup(record: logging.LogRecord) -> bool:
    """psycopg warns "error ignored terminating <psycopg.Pipeline [BAD]>: the connection is
    lost" when a connection drops under a batch write (the ledger's executemany); the
    process says the outage once (its ``Outage``), so that line is left out. Any other
    cleanup error psycopg ignores is still logged."""
    if not str(record.msg).startswith("error ignored terminating"):
        return True
    error = record.args[-1] if isinstance(record.args, tuple) and record.args else None
    return not (isinstance(error, BaseException) and store_unreachable(error))


logging.getLogger("psycopg").addFilter(_not_a_lost_connections_cleanup)


def utc_day(column: Any, dialect: str) -> Any:
    """SQL for the UTC calendar day of a stored time, as ``YYYY-MM-DD`` text (to group by)."""
    from sqlalchemy import func

    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)
