"""Heartbeats: each scheduler and worker says, in its ``process_state`` row, how it is.

A process writes its row every ``heartbeat_seconds`` and at once when its state changes:
its state (sending, idle, paused, waiting for the store or the SMTP server), what it sends
now, its last error and when, and its counters (deliveries sent, failed and retried, SMTP
errors by class, store reconnects, ingest failures by source). While the store is away the
row cannot be written; the process keeps it in memory and writes it once the store is back,
so the outage shows afterwards as the last error. ``digest status`` and ``/metrics`` read the
rows of every process on every host.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from digest import notify
from digest.db import session_scope, store_unreachable
from digest.models import ProcessState
from digest.outages import Outage

log = logging.getLogger(__name__)

#: A process's states, as ``digest status`` shows them.
STARTING, IDLE, SENDING, PAUSED, RUNNING, STANDBY, STOPPED = (
    "starting", "idle", "sending", "paused", "running", "standby", "stopped",
)  # fmt: skip
WAITING_STORE = "waiting for the store"
WAITING_SMTP = "waiting for the SMTP server"
#: Rows not written for this long belong to processes long gone: pruned on the next write;
#: a process that said it stopped (a `digest worker --once` from cron) is forgotten sooner.
FORGET_AFTER = timedelta(days=7)
FORGET_STOPPED_AFTER = timedelta(days=1)


@dataclass
class Beat:
    """What a process says about itself in one heartbeat."""

    state: str
    detail: str | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, datetime] | None = None  # its own last error (outages are added)


def counters(counts: Mapping[str, int], store: Outage | None = None) -> dict[str, Any]:
    """A process's counters as its row keeps them: ``sent``, ``retried`` and ``failed`` under
    ``deliveries``, ``smtp_errors:<class>`` and ``ingest_failures:<source>`` grouped by what
    follows the colon, and the store reconnects."""
    out: dict[str, Any] = {"deliveries": {"sent": 0, "retried": 0, "failed": 0}}
    for key, value in counts.items():
        group, colon, name = key.partition(":")
        if colon:
            out.setdefault(group, {})[name] = value
        else:
            out["deliveries"][key] = value
    out.setdefault("smtp_errors", {})
    out.setdefault("ingest_failures", {})
    out["store_reconnects"] = store.recoveries if store is not None else 0
    return out


def last_error(
    *found: tuple[str | None, datetime | None] | None,
) -> tuple[str, datetime] | None:
    """The newest of the (error, when) pairs given."""
    known = [(e, at) for pair in found if pair for e, at in [pair] if e and at]
    return max(known, key=lambda pair: pair[1]) if known else None


class Heartbeat:
    """Writes one process's row: every ``every`` seconds from a thread, and on ``beat()``."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        clock: Callable[[], datetime],
        every: float,
        describe: Callable[[], Beat],
        *,
        outages: tuple[Outage, ...] = (),
        process_id: str | None = None,
    ) -> None:
        self.engine, self.kind, self.clock, self.every = engine, kind, clock, every
        self.describe, self.outages = describe, outages
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.id = process_id or f"{self.host}:{self.pid}"
        self.started_at = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: tuple[str, str | None, str | None] | None = None
        self._told = ""

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="digest-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def _row(self, final_state: str | None = None) -> dict[str, Any]:
        beat = self.describe()
        if final_state is not None:
            beat.state = final_state
        else:
            for outage in self.outages:
                if outage.active:
                    beat.state = WAITING_STORE if outage.what == "the store" else WAITING_SMTP
        errors = (beat.error, *((o.last_error, o.last_error_at) for o in self.outages))
        error = last_error(*errors)
        return {
            "id": self.id,
            "kind": self.kind,
            "host": self.host,
            "pid": self.pid,
            "state": beat.state,
            "detail": beat.detail,
            "last_error": error[0] if error else None,
            "last_error_at": error[1] if error else None,
            "counters": beat.counters,
            "started_at": self.started_at,
            "updated_at": self.clock(),
        }

    def beat(self, final_state: str | None = None) -> bool:
        """Write the row now; False when the store is away (the next beat tries again)."""
        return self._write(self._row(final_state))

    def _write(self, row: dict[str, Any]) -> bool:
        told = f"{self.kind} {row['state']}" + (f": {row['detail']}" if row["detail"] else "")
        if told != self._told:  # `systemctl status` shows it, even while the store is away
            self._told = told
            notify.status(told)
        with self._lock:
            try:
                write(self.engine, row)
            except Exception as exc:
                if not store_unreachable(exc):
                    log.warning("heartbeat not written: %s", exc)
                return False  # the outage is the sender's and the service's to say
            self._written = (row["state"], row["detail"], row["last_error"])
        return True

    def changed(self) -> bool:
        """Write at once when the state, what it does or its last error is new, not only
        every ``every`` seconds (a worker pausing shows at once in ``digest status``)."""
        row = self._row()
        if (row["state"], row["detail"], row["last_error"]) == self._written:
            return False
        return self._write(row)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.beat(final_state=STOPPED)


def write(engine: Engine, row: dict[str, Any]) -> None:
    """Insert or replace a process's row; forget rows not written for ``FORGET_AFTER``."""
    insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    table: Any = ProcessState.__table__
    stmt = insert(table).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"], set_={k: stmt.excluded[k] for k in row if k != "id"}
    )
    with session_scope(engine) as session:
        session.execute(stmt)
        now = row["updated_at"]
        session.execute(
            delete(ProcessState).where(
                or_(
                    col(ProcessState.updated_at) < now - FORGET_AFTER,
                    and_(
                        col(ProcessState.state) == STOPPED,
                        col(ProcessState.updated_at) < now - FORGET_STOPPED_AFTER,
                    ),
                )
            )
        )


def processes(session: Session) -> list[ProcessState]:
    """Every process's row, newest heartbeat first."""
    return list(
        session.exec(select(ProcessState).order_by(col(ProcessState.updated_at).desc())).all()
    )


def alive(row: ProcessState, now: datetime, every: float) -> bool:
    """Whether a row's process has beaten recently (three beats' time) and not stopped."""
    return row.state != STOPPED and now - row.updated_at <= timedelta(seconds=3 * every)


def as_json(row: ProcessState, now: datetime, every: float) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "host": row.host,
        "pid": row.pid,
        "state": row.state,
        "alive": alive(row, now, every),
        "detail": row.detail,
        "last_error": row.last_error,
        "last_error_at": row.last_error_at.isoformat() if row.last_error_at else None,
        "counters": row.counters,
        "started_at": row.started_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
