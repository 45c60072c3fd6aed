"""The delivery ledger, which is also the queue.

planned -> sending (claimed: worker id + lease) -> sent | retry (temporary, with backoff) |
failed (permanent or attempts exhausted); ``skipped`` records editions deliberately not sent
(empty selection, stale). A crash leaves a lease that expires, and the row is claimed again with
the Message-ID fixed at planning, so a repeat is recognisable as the same message.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    and_,
    bindparam,
    case,
    func,
    or_,
    text,
    type_coerce,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from digest.db import (
    chunks,
    driver_params,
    driver_statement,
    id_filters,
    session_scope,
    store_unreachable,
    utc_day,
)
from digest.feedback.store import (
    EventRow,
    edition_rates,
    event_counts,
    events_by_delivery,
    recent_rates,
)
from digest.models import DELIVERY_STATUSES as DELIVERY_STATUSES
from digest.models import FAILED as FAILED
from digest.models import PLANNED as PLANNED
from digest.models import RETRY as RETRY
from digest.models import SENDING as SENDING
from digest.models import SENT as SENT
from digest.models import SKIPPED as SKIPPED
from digest.models import (
    SUPPRESSED_STATUSES,
    WINDOW_TAKING_STATUSES,
    Article,
    Delivery,
    Subscriber,
    UTCDateTime,
)
from digest.models import UNFINISHED_STATUSES as UNFINISHED_STATUSES


class PlannedRow(NamedTuple):
    """A delivery to write, computed purely by the planner (a tuple: one per member planned)."""

    subscriber_id: int
    edition: str
    status: str  # planned | skipped
    due_at: datetime
    window_start: datetime
    window_end: datetime
    article_ids: tuple[int, ...]
    error: str | None = None


def new_message_id(edition: str, domain: str, clock_ns: Callable[[], int] = time.time_ns) -> str:
    """A unique Message-ID: the edition, then 48 bits of milliseconds and 80 random bits.

    Time first (as in a UUIDv7) so that ids made one after another sort one after another: the
    unique index on ``message_id`` then grows at its end instead of at a random page per row,
    which kept a million-row plan from slowing down as the ledger grows. The random part keeps
    ids from two planners in the same millisecond apart.
    """
    stamp = (clock_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    return f"<{edition.replace(':', '.')}.{stamp:012x}{secrets.token_hex(10)}@{domain}>"


@dataclass(frozen=True)
class History:
    """What a member's past editions say about the next one."""

    last_window_end: datetime | None = None  # end of the last window taken (failed/skipped don't)
    last_due_at: datetime | None = None  # due time of the latest edition, whatever became of it
    earliest_untaken_start: datetime | None = None  # start of the oldest failed/skipped window
    # An edition that failed after the next one was planned from its end leaves a hole no
    # taken window covers: its articles are owed from ``owed_from``, less those ``delivered``
    # (taken) since then.
    owed_from: datetime | None = None
    delivered: frozenset[int] = frozenset()


#: PostgreSQL advisory lock key that planners take turns on ("digest" and 1).
PLANNING_LOCK = 0x6469676573740001


def lock_planning(session: Session) -> None:
    """Planners take turns, one batch transaction at a time, before reading any history.

    Two planners whose clocks straddle a member's due time compute different edition keys,
    which the unique (member, edition) key cannot catch: each would plan a window over the
    same articles. Taking turns, the second reads the first's rows and finds it too soon.
    SQLite's one writer (transactions begin IMMEDIATE) already serialises; PostgreSQL takes
    a transaction-scoped advisory lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLANNING_LOCK})


def member_history(session: Session, member_ids: Sequence[int]) -> dict[int, History]:
    """Each member's edition history: one grouped query per id range (or chunk) of members."""
    taken = col(Delivery.status).in_(WINDOW_TAKING_STATUSES)
    untaken = col(Delivery.status).in_((FAILED, SKIPPED))
    failed = col(Delivery.status) == FAILED
    wanted = set(member_ids)
    out: dict[int, History] = {}
    holes: dict[int, datetime] = {}  # members with a failed window older than a taken end
    for condition in id_filters(col(Delivery.subscriber_id), member_ids):
        rows = session.exec(
            select(
                Delivery.subscriber_id,
                type_coerce(func.max(case((taken, Delivery.window_end))), UTCDateTime()),
                type_coerce(func.max(Delivery.due_at), UTCDateTime()),
                type_coerce(func.min(case((untaken, Delivery.window_start))), UTCDateTime()),
                type_coerce(func.min(case((failed, Delivery.window_start))), UTCDateTime()),
            )
            .where(condition)
            .group_by(col(Delivery.subscriber_id))
        )
        for member_id, end, due, start, failed_start in rows:
            if member_id not in wanted:
                continue
            out[member_id] = History(
                _aware(end) if end else None,
                _aware(due) if due else None,
                _aware(start) if start else None,
            )
            if failed_start is not None and end is not None and failed_start < end:
                holes[member_id] = _aware(failed_start)
    if holes:
        for member_id, owed in _owed(session, holes).items():
            out[member_id] = replace(out[member_id], owed_from=owed[0], delivered=owed[1])
    return out


def _owed(
    session: Session, candidates: dict[int, datetime]
) -> dict[int, tuple[datetime, frozenset[int]]]:
    """For members with a failed window older than their last taken one: the failed windows
    that no taken window covers (the next edition was planned from a window still in retry,
    which failed later), and the articles taken since the oldest of them.

    Rare (a permanent failure after the next edition was planned), so read row by row.
    """
    out: dict[int, tuple[datetime, frozenset[int]]] = {}
    rows = session.exec(
        select(
            Delivery.subscriber_id,
            Delivery.status,
            Delivery.window_start,
            Delivery.window_end,
            Delivery.article_ids,
        ).where(
            col(Delivery.subscriber_id).in_(list(candidates)),
            col(Delivery.status).in_((*WINDOW_TAKING_STATUSES, FAILED)),
        )
    ).all()
    by_member: dict[int, list[Any]] = {}
    for row in rows:
        by_member.setdefault(row[0], []).append(row)
    for member_id, history in by_member.items():
        dated = [r for r in history if r[2] is not None and r[3] is not None]
        windows = [(_aware(r[2]), _aware(r[3]), r[4] or ()) for r in dated if r[1] != FAILED]
        uncovered = [
            _aware(r[2])
            for r in dated
            if r[1] == FAILED and not any(start <= _aware(r[2]) < end for start, end, _ in windows)
        ]
        if not uncovered:
            continue
        owed_from = min(uncovered)
        delivered = frozenset(i for _, end, ids in windows if end > owed_from for i in ids)
        out[member_id] = (owed_from, delivered)
    return out


@dataclass(frozen=True)
class RecordedEdition:
    """What a delivery row says about the message it is: its edition, id and articles."""

    edition: str
    message_id: str
    article_ids: tuple[int, ...]
    id: int = 0  # the delivery row
    subscriber_id: int = 0


_RECORDED_COLUMNS = (
    Delivery.edition,
    Delivery.message_id,
    Delivery.article_ids,
    Delivery.id,
    Delivery.subscriber_id,
)


def _recorded(row: Any) -> RecordedEdition:
    return RecordedEdition(row[0], row[1], tuple(row[2] or ()), row[3] or 0, row[4])


def member_edition(
    session: Session, member_id: int, edition: str | None = None
) -> RecordedEdition | None:
    """The member's recorded ``edition``, or (None) their oldest edition not finished yet."""
    query = select(*_RECORDED_COLUMNS).where(Delivery.subscriber_id == member_id)
    if edition is not None:
        query = query.where(Delivery.edition == edition)
    else:
        query = query.where(col(Delivery.status).in_(UNFINISHED_STATUSES))
    row = session.exec(query.order_by(col(Delivery.id))).first()
    return None if row is None else _recorded(row)


def delivery_edition(session: Session, delivery_id: int) -> RecordedEdition | None:
    """What delivery ``delivery_id`` is (its edition and articles), planned or sent; None for
    a delivery that is not in the ledger, or one that was skipped (it never went out)."""
    row = session.exec(
        select(*_RECORDED_COLUMNS).where(Delivery.id == delivery_id, Delivery.status != SKIPPED)
    ).first()
    return None if row is None else _recorded(row)


def existing_editions(session: Session, pairs: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (member, edition) pairs already have a row."""
    wanted = set(pairs)
    keys = sorted({edition for _, edition in wanted})
    found: set[tuple[int, str]] = set()
    for condition in id_filters(col(Delivery.subscriber_id), [m for m, _ in wanted]):
        for part in chunks(keys):
            rows = session.exec(
                select(Delivery.subscriber_id, Delivery.edition).where(
                    condition, col(Delivery.edition).in_(part)
                )
            )
            found.update(pair for pair in rows if pair in wanted)
    return found


#: The columns planning writes, in the order of the compiled statement's parameters.
_PLANNED_COLUMNS = (
    "subscriber_id",
    "edition",
    "status",
    "message_id",
    "due_at",
    "window_start",
    "window_end",
    "article_ids",
    "attempts",
    "error",
    "next_attempt_at",
    "planned_at",
    "updated_at",
)


@dataclass(frozen=True)
class _BulkInsert:
    sql: str
    positional: bool  # the driver takes tuples (qmark), not dicts (pyformat)
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


@lru_cache(maxsize=8)
def _planned_insert(dialect: Dialect) -> _BulkInsert:
    """INSERT ... ON CONFLICT DO NOTHING compiled once for the dialect, with its converters."""
    insert: Any = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    table: Any = Delivery.__table__
    stmt = (
        insert(table)
        .inline()
        .values({name: bindparam(name) for name in _PLANNED_COLUMNS})
        .on_conflict_do_nothing(index_elements=["subscriber_id", "edition"])
    )
    sql, order = driver_statement(stmt, dialect)
    positional = order is not None
    names = order or _PLANNED_COLUMNS
    if set(names) != set(_PLANNED_COLUMNS):
        raise RuntimeError(f"unexpected parameters in the planned insert: {names}")
    processors = tuple(table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    return _BulkInsert(sql, positional, names, processors)


def insert_rows(session: Session, rows: Sequence[PlannedRow], domain: str, now: datetime) -> int:
    """Insert, skipping any (member, edition) that exists: the unique constraint decides.

    Planning writes a row per member, so the statement is compiled once per dialect and the
    column converters (datetimes, JSON) run once per distinct value, not once per row; the
    rows then go to the driver in one executemany.
    """
    if not rows:
        return 0
    conn = session.connection()
    bulk = _planned_insert(conn.dialect)
    converted: list[dict[Any, Any]] = [{} for _ in bulk.names]
    params: list[Any] = []
    for r in rows:
        values = {
            "subscriber_id": r.subscriber_id,
            "edition": r.edition,
            "status": r.status,
            "message_id": new_message_id(r.edition, domain),
            "due_at": r.due_at,
            "window_start": r.window_start,
            "window_end": r.window_end,
            "article_ids": r.article_ids,
            "attempts": 0,
            "error": r.error,
            "next_attempt_at": now if r.status == PLANNED else None,
            "planned_at": now,
            "updated_at": now,
        }
        out = [
            _convert(values[name], process, memo) if process is not None else values[name]
            for name, process, memo in zip(bulk.names, bulk.processors, converted, strict=True)
        ]
        params.append(tuple(out) if bulk.positional else dict(zip(bulk.names, out, strict=True)))
    result = conn.exec_driver_sql(bulk.sql, params)
    return max(int(result.rowcount), 0)


def _convert(value: Any, process: Callable[[Any], Any], memo: dict[Any, Any]) -> Any:
    """``process(value)`` once per distinct value (article id tuples go in as JSON lists)."""
    if value is None:
        return None
    found = memo.get(value)
    if found is None:
        found = memo[value] = process(list(value) if isinstance(value, tuple) else value)
    return found


# ------------------------------------------------------------------ claiming and recording


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds (status ``sending``): what the sender needs of its row.

    Plain data rather than ORM objects: a claim builds fifty of these at a time.
    """

    id: int
    subscriber_id: int
    edition: str
    message_id: str
    article_ids: tuple[int, ...]
    attempts: int
    worker_id: str
    lease_until: datetime
    status: str = SENDING


def _ready_kinds(now: Any) -> tuple[Any, Any]:
    """What "ready to send at ``now``" means, as the two conditions a claim reads in turn:
    the few (expired leases, due retries, undated planned rows), then the many (planned rows
    whose time has come, in due order)."""
    c = Delivery.__table__.c  # type: ignore[attr-defined]
    few = or_(
        and_(c.status == SENDING, c.lease_until < now),
        and_(c.status == RETRY, or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)),
        and_(c.status == PLANNED, c.next_attempt_at.is_(None)),
    )
    many = and_(c.status == PLANNED, c.next_attempt_at <= now)
    return few, many


@lru_cache(maxsize=8)
def _claim_statements(dialect: str, only: bool = False) -> tuple[tuple[Any, ...], Any]:
    """The claim's SELECTs and UPDATE, built once: the sender claims every few messages.

    Ready rows come in two kinds, each read through the (status, next_attempt_at) index, so no
    claim gathers and sorts every ready row (with one OR query SQLite did, and a
    100,000-member run spent longer claiming than sending). First the few: expired leases (a
    crashed worker's messages), due retries and undated planned rows; then the many, planned
    editions in due-time order, read straight off the index.
    """
    c = Delivery.__table__.c  # type: ignore[attr-defined]
    when = UTCDateTime()
    now = bindparam("c_now", type_=when)
    few, many = _ready_kinds(now)
    kinds = ((few, (c.id,)), (many, (c.next_attempt_at, c.id)))
    columns = (c.id, c.subscriber_id, c.edition, c.message_id, c.article_ids, c.attempts)
    selects = []
    for kind, order in kinds:
        if only:  # `digest run --email`: these members' deliveries, no one else's
            kind = and_(kind, c.subscriber_id.in_(bindparam("c_only", expanding=True)))
        query = sa_select(*columns).where(kind).order_by(*order).limit(bindparam("c_limit"))
        if dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        selects.append(query)
    mark = (
        update(Delivery)
        .where(col(Delivery.id).in_(bindparam("c_ids", expanding=True)))
        .values(
            status=SENDING,
            worker_id=bindparam("c_worker"),
            lease_until=bindparam("c_until", type_=when),
            attempts=col(Delivery.attempts) + 1,
            updated_at=bindparam("c_now", type_=when),
        )
    )
    return tuple(selects), mark


def claim(
    engine: Engine,
    worker_id: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    subscriber_ids: Sequence[int] | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` deliveries that are ready, in one transaction.

    Ready: planned or retry whose next attempt is due, or sending whose lease has expired.
    PostgreSQL skips rows other workers hold locked; SQLite's BEGIN IMMEDIATE serialises claims.
    ``subscriber_ids``: only these members' deliveries.
    """
    selects, mark = _claim_statements(engine.dialect.name, subscriber_ids is not None)
    until = now + lease
    with engine.begin() as conn:  # Core, not the ORM: two SELECTs and one UPDATE per claim
        found: list[Any] = []
        for query in selects:
            params: dict[str, Any] = {"c_now": now, "c_limit": limit - len(found)}
            if subscriber_ids is not None:
                params["c_only"] = list(subscriber_ids)
            found += conn.execute(query, params).mappings().all()
            if len(found) >= limit:
                break
        found.sort(key=lambda row: row["id"])
        if not found:
            return []
        ids = [r["id"] for r in found]
        conn.execute(mark, {"c_ids": ids, "c_worker": worker_id, "c_until": until, "c_now": now})
    return [
        Claimed(
            id=row["id"],
            subscriber_id=row["subscriber_id"],
            edition=row["edition"],
            message_id=row["message_id"],
            article_ids=tuple(row["article_ids"] or ()),
            attempts=row["attempts"] + 1,
            worker_id=worker_id,
            lease_until=until,
        )
        for row in found
    ]


def renew(
    engine: Engine, delivery_ids: Sequence[int], worker_id: str, now: datetime, lease: timedelta
) -> set[int]:
    """Extend this worker's hold on claims not sent yet; return the ids it still holds.

    A lane sends its claims one by one; paced by a rate limit or a slow server that can take
    longer than the lease, after which another worker may claim what is left. The lane renews
    before its lease runs short and sends only what it still holds, so no claim is sent by two
    workers. A row whose lease ran out and that nobody took is held again.
    """
    if not delivery_ids:
        return set()
    c = Delivery.__table__.c  # type: ignore[attr-defined]
    mine = and_(c.id.in_(delivery_ids), c.worker_id == worker_id, c.status == SENDING)
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(mine).values(lease_until=now + lease, updated_at=now))
        return set(conn.execute(sa_select(c.id).where(mine)).scalars())


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    delivery_id: int
    status: str  # sent | retry | failed
    smtp_code: int | None = None
    smtp_reply: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    suppress_member: str | None = None  # a member status to set (e.g. bounced)
    subscriber_id: int | None = None
    size_bytes: int | None = None


def backoff(attempts: int, base: timedelta, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter in the upper half, capped at a day."""
    rng = rng or random
    ceiling = min(base * (2 ** max(attempts - 1, 0)), timedelta(days=1))
    return ceiling / 2 + ceiling / 2 * rng.random()


def _record_statement() -> Any:
    """One UPDATE for every outcome, built once: the sender runs it after every message."""
    when = UTCDateTime()
    return (
        update(Delivery)
        .where(
            col(Delivery.id) == bindparam("b_id"),
            col(Delivery.worker_id) == bindparam("b_worker"),
            col(Delivery.status) == SENDING,
        )
        .values(
            status=bindparam("b_status"),
            smtp_code=bindparam("b_code"),
            smtp_reply=bindparam("b_reply"),
            error=bindparam("b_error"),
            lease_until=None,
            next_attempt_at=bindparam("b_next", type_=when),
            updated_at=bindparam("b_now", type_=when),
            sent_at=func.coalesce(bindparam("b_sent_at", type_=when), col(Delivery.sent_at)),
            size_bytes=func.coalesce(bindparam("b_size"), col(Delivery.size_bytes)),
        )
    )


_RECORD = _record_statement()


class Recorder:
    """A sending lane's ledger writer: ``record`` on one DB-API connection held for the run.

    The sender records every message the moment the server has answered, so this write is on
    the hot path of every send. It runs ``_RECORD`` compiled once for the engine's dialect,
    straight on the driver (a short transaction: SQLite's BEGIN IMMEDIATE, PostgreSQL's
    implicit one), which costs a fraction of a SQLAlchemy execution. Outcomes that also change
    a member (a hard bounce) go through ``record``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sql, self._order = driver_statement(_RECORD, engine.dialect)
        # the values _RECORD binds itself (its literals), given to the driver with the rest
        binds = _RECORD.compile(dialect=engine.dialect).binds
        self._defaults = {name: bind.value for name, bind in binds.items()}
        stamp = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._stamp: Callable[[Any], Any] = stamp or (lambda value: value)
        self._sqlite = engine.dialect.name == "sqlite"
        self._raw: Any = None

    def record(self, outcomes: Sequence[Outcome], worker_id: str, now: datetime) -> int:
        """Write the outcomes; the number of rows this worker still held (and so changed)."""
        if any(o.suppress_member for o in outcomes):
            return record(self.engine, outcomes, worker_id, now)
        rows = [self._params(o, worker_id, now) for o in outcomes]
        if not rows:
            return 0
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        raw = self._raw
        cursor = raw.cursor()
        try:
            if self._sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(self._sql, rows)
            changed: int = cursor.rowcount
            if self._sqlite:
                cursor.execute("COMMIT")
            else:
                raw.commit()
            return changed
        except BaseException as exc:
            self._raw = None
            if store_unreachable(exc):  # the driver's own error: the connection is gone
                raw.invalidate()  # (a rollback on it would only fail again, loudly)
            else:
                try:
                    raw.rollback() if not self._sqlite else cursor.execute("ROLLBACK")
                except Exception:  # the connection is beyond use: the pool gets a fresh one
                    raw.invalidate()
            raw.close()
            raise
        finally:
            cursor.close()

    def _params(self, o: Outcome, worker_id: str, now: datetime) -> Any:
        stamp = self._stamp
        stamped = stamp(now)
        values = dict(self._defaults)
        values.update(
            b_id=o.delivery_id,
            b_worker=worker_id,
            b_status=o.status,
            b_code=o.smtp_code,
            b_reply=o.smtp_reply,
            b_error=o.error,
            b_next=stamp(o.next_attempt_at) if o.next_attempt_at is not None else None,
            b_now=stamped,
            b_sent_at=stamped if o.status == SENT else None,
            b_size=o.size_bytes,
        )
        return driver_params(self._order, values)

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()


def record(
    bind: Engine | Connection, outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> int:
    """Write outcomes in one transaction; only rows this worker still holds are changed.

    Called once per message by the sender, so it is one prebuilt statement on a pooled
    connection in one short transaction (no ORM session): the crash guarantee stays "at most
    the messages in flight are repeated" at a fraction of the cost. A sending lane passes the
    connection it holds for its whole run.
    """
    if not outcomes:
        return 0
    params = [
        {
            "b_id": o.delivery_id,
            "b_worker": worker_id,
            "b_status": o.status,
            "b_code": o.smtp_code,
            "b_reply": o.smtp_reply,
            "b_error": o.error,
            "b_next": o.next_attempt_at,
            "b_now": now,
            "b_sent_at": now if o.status == SENT else None,
            "b_size": o.size_bytes,
        }
        for o in outcomes
    ]
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return _write_outcomes(conn, outcomes, params, now)
    with bind.begin():
        return _write_outcomes(bind, outcomes, params, now)


def _write_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], params: list[dict[str, Any]], now: datetime
) -> int:
    changed: int = conn.execute(_RECORD, params).rowcount
    for o in outcomes:
        if o.suppress_member and o.subscriber_id is not None:
            conn.execute(
                update(Subscriber)
                .where(
                    col(Subscriber.id) == o.subscriber_id,
                    col(Subscriber.status).not_in(SUPPRESSED_STATUSES),
                )
                .values(status=o.suppress_member, status_reason=o.error, updated_at=now)
            )
    return changed


def release(engine: Engine, delivery_ids: Sequence[int], worker_id: str, now: datetime) -> None:
    """Give back claims not attempted (shutdown): they return to planned, attempt not counted."""
    if not delivery_ids:
        return
    with session_scope(engine) as session:
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.id).in_(delivery_ids),
                col(Delivery.worker_id) == worker_id,
                col(Delivery.status) == SENDING,
            )
            .values(
                status=PLANNED,
                lease_until=None,
                worker_id=None,
                attempts=Delivery.attempts - 1,
                updated_at=now,
            )
        )


def release_held(engine: Engine, worker_id: str, now: datetime) -> int:
    """Give back every claim ``worker_id`` holds (a lane whose claim's answer was lost to a
    dropped connection: it holds nothing it knows of). The number given back."""
    with session_scope(engine) as session:
        result = session.execute(
            update(Delivery)
            .where(col(Delivery.worker_id) == worker_id, col(Delivery.status) == SENDING)
            .values(
                status=PLANNED,
                lease_until=None,
                worker_id=None,
                attempts=Delivery.attempts - 1,
                updated_at=now,
            )
        )
        return max(int(result.rowcount), 0)


def is_recorded(engine: Engine, outcome: Outcome, worker_id: str) -> bool:
    """Whether ``outcome`` is already in the ledger: a write whose commit went through while
    the connection dropped before its answer came back."""
    with engine.connect() as conn:
        row = conn.execute(
            sa_select(Delivery.status, Delivery.worker_id).where(
                col(Delivery.id) == outcome.delivery_id
            )
        ).first()
    return row is not None and row[0] == outcome.status and row[1] == worker_id


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RequeueReport:
    requeued: int
    skipped: int


def requeue_failed(
    session: Session,
    now: datetime,
    *,
    edition: str | None = None,
    delivery_id: int | None = None,
) -> RequeueReport:
    """Put failed deliveries back in the queue, with fresh attempts.

    Articles that reached the member in a later edition meanwhile are dropped from the
    re-queued one (an article never reaches a member twice); if none is left it is skipped.
    """
    query = select(Delivery).where(Delivery.status == FAILED)
    if edition is not None:
        query = query.where(Delivery.edition == edition)
    if delivery_id is not None:
        query = query.where(Delivery.id == delivery_id)
    requeued = skipped = 0
    for delivery in session.exec(query.order_by(col(Delivery.id))).all():
        taken: set[int] = set()
        for ids in session.exec(
            select(Delivery.article_ids).where(
                Delivery.subscriber_id == delivery.subscriber_id,
                col(Delivery.status).in_(WINDOW_TAKING_STATUSES),
                col(Delivery.id) != delivery.id,
            )
        ):
            taken.update(ids)
        remaining = [i for i in delivery.article_ids if i not in taken]
        delivery.updated_at = now
        if not remaining:
            delivery.status = SKIPPED
            delivery.error = "re-queue: its articles reached the member in a later edition"
            skipped += 1
        else:
            delivery.status = PLANNED
            delivery.article_ids = remaining
            delivery.attempts = 0
            delivery.next_attempt_at = now
            delivery.lease_until = None
            delivery.worker_id = None
            delivery.error = None
            requeued += 1
        session.add(delivery)
    session.flush()
    return RequeueReport(requeued, skipped)


# ------------------------------------------------------------------ reading the ledger


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as operators list it: who, which edition, what became of it."""

    id: int
    email: str
    edition: str
    status: str
    message_id: str
    articles: tuple[str, ...]  # URLs, in the edition's order
    error: str | None
    smtp_code: int | None
    attempts: int
    planned_at: datetime
    sent_at: datetime | None
    events: tuple[EventRow, ...] = ()  # bounces, complaints, unsubscribes that came back

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "edition": self.edition,
            "status": self.status,
            "message_id": self.message_id,
            "articles": list(self.articles),
            "error": self.error,
            "smtp_code": self.smtp_code,
            "attempts": self.attempts,
            "planned_at": self.planned_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "events": [event.as_json() for event in self.events],
        }


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    edition: str | None = None,
    emails: Sequence[str] | None = None,
    limit: int | None = None,
    delivery_id: int | None = None,
) -> list[DeliveryRow]:
    """Deliveries, newest first, with their events; ``emails`` are the stored forms of one
    member's address."""
    query = select(Delivery, Subscriber.email).join(
        Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id)
    )
    if delivery_id is not None:
        query = query.where(Delivery.id == delivery_id)
    if status:
        query = query.where(Delivery.status == status)
    if edition:
        query = query.where(Delivery.edition == edition)
    if emails is not None:
        query = query.where(col(Subscriber.email).in_(list(emails)))
    query = query.order_by(col(Delivery.id).desc())
    if limit:
        query = query.limit(limit)
    rows = session.exec(query).all()
    ids = sorted({i for d, _ in rows for i in d.article_ids})
    urls: dict[int, str] = {}
    for part in chunks(ids):
        found = session.exec(select(Article.id, Article.url).where(col(Article.id).in_(part)))
        urls.update((article_id, url) for article_id, url in found)
    events = events_by_delivery(session, [d.id for d, _ in rows if d.id is not None])
    return [
        DeliveryRow(
            id=d.id or 0,
            email=email,
            edition=d.edition,
            status=d.status,
            message_id=d.message_id,
            articles=tuple(urls[i] for i in d.article_ids if i in urls),
            error=d.error,
            smtp_code=d.smtp_code,
            attempts=d.attempts,
            planned_at=d.planned_at,
            sent_at=d.sent_at,
            events=tuple(events.get(d.id or 0, ())),
        )
        for d, email in rows
    ]


def counts_by_status(session: Session) -> dict[str, int]:
    """How many deliveries are in each state (every state, zeros included)."""
    found = dict(
        session.exec(select(Delivery.status, func.count()).group_by(col(Delivery.status))).all()
    )
    return {status: int(found.get(status, 0)) for status in DELIVERY_STATUSES}


def queue_depth(counts: dict[str, int]) -> int:
    """Deliveries not finished yet (planned, waiting for a retry, being sent)."""
    return sum(counts.get(status, 0) for status in UNFINISHED_STATUSES)


def ready_count(session: Session, now: datetime) -> int:
    """Deliveries a worker could claim at ``now`` (the claim's own definition of ready)."""
    few, many = _ready_kinds(type_coerce(now, UTCDateTime()))
    return int(session.exec(select(func.count()).where(or_(few, many))).one())


def sent_between(session: Session, start: datetime, end: datetime) -> int:
    """Messages sent in ``(start, end]``."""
    return int(
        session.exec(
            select(func.count()).where(
                Delivery.status == SENT, col(Delivery.sent_at) > start, col(Delivery.sent_at) <= end
            )
        ).one()
    )


def stats(session: Session, now: datetime) -> dict[str, Any]:
    """``digest deliveries stats``: counts by status and edition, the last hour's sends, the
    oldest delivery still waiting, and bounce and complaint rates (per edition and over the
    last 7 days) with the events received by kind."""
    by_status = counts_by_status(session)
    editions: dict[str, dict[str, int]] = {}
    for edition, status, count in session.exec(
        select(Delivery.edition, Delivery.status, func.count())
        .group_by(Delivery.edition, Delivery.status)
        .order_by(Delivery.edition)
    ).all():
        editions.setdefault(edition, {})[status] = count
    sent_last_hour = sent_between(session, now - timedelta(hours=1), now)
    oldest = session.exec(
        select(func.min(Delivery.planned_at)).where(col(Delivery.status).in_((PLANNED, RETRY)))
    ).one()
    if isinstance(oldest, datetime):
        oldest = _aware(oldest)
    return {
        "by_status": by_status,
        "by_edition": editions,
        "sent_last_hour": sent_last_hour,
        "send_rate_per_minute": round(sent_last_hour / 60, 2),
        "oldest_waiting_planned_at": oldest.isoformat() if oldest else None,
        "total": sum(by_status.values()),
        "rates_last_7_days": recent_rates(session, now, 7).as_json(),
        "rates_by_edition": {e: r.as_json() for e, r in edition_rates(session).items()},
        "events": event_counts(session),
    }


def first_sent(session: Session) -> tuple[str, str] | None:
    """(address, edition) of the first delivery sent, if any: what the demo points to."""
    row = session.exec(
        select(Subscriber.email, Delivery.edition)
        .join(Delivery, col(Delivery.subscriber_id) == col(Subscriber.id))
        .where(Delivery.status == SENT)
        .order_by(col(Delivery.id))
    ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class Held:
    """Deliveries one worker holds under a lease that has not run out: how many, until when."""

    worker_id: str
    count: int
    until: datetime


def held_claims(
    session: Session, now: datetime, subscriber_ids: Sequence[int] | None = None
) -> list[Held]:
    """Who holds deliveries at ``now`` (status ``sending``, lease not expired), by worker id.

    Claims whose lease has run out are not held: any worker claims them again. ``until`` is
    the latest lease of the worker's claims. ``subscriber_ids``: only these members'.
    """
    query = (
        select(Delivery.worker_id, func.count(), func.max(Delivery.lease_until))
        .where(Delivery.status == SENDING, col(Delivery.lease_until) >= now)
        .group_by(col(Delivery.worker_id))
        .order_by(col(Delivery.worker_id))
    )
    if subscriber_ids is not None:
        query = query.where(col(Delivery.subscriber_id).in_(list(subscriber_ids)))
    return [
        Held(worker_id or "", int(count), _aware(until))
        for worker_id, count, until in session.exec(query).all()
    ]


# ------------------------------------------------------------------ the newsroom's figures


def outcomes_by_day(session: Session, since: datetime) -> dict[str, dict[str, int]]:
    """Deliveries finished per UTC day since ``since``: sent by when the server took them,
    failed and skipped by when that was recorded (``{"2026-12-06": {"sent": 197, ...}}``)."""
    dialect = session.get_bind().dialect.name
    found: dict[str, dict[str, int]] = {}
    for status, column in ((SENT, Delivery.sent_at), (FAILED, Delivery.updated_at),
                           (SKIPPED, Delivery.updated_at)):  # fmt: skip
        day = utc_day(column, dialect)
        rows = session.exec(
            select(day, func.count())
            .where(col(Delivery.status) == status, col(column) >= since)
            .group_by(day)
        ).all()
        for key, count in rows:
            found.setdefault(str(key), {})[status] = int(count)
    return found


def outcomes_by_edition(session: Session, limit: int = 60) -> dict[str, dict[str, int]]:
    """The ``limit`` editions planned last (a replayed day's too): their deliveries by status."""
    latest = func.max(col(Delivery.planned_at))
    editions = [
        e
        for e, _ in session.exec(
            select(Delivery.edition, latest)
            .group_by(col(Delivery.edition))
            .order_by(latest.desc(), col(Delivery.edition).desc())
            .limit(limit)
        ).all()
    ]
    found: dict[str, dict[str, int]] = {e: {} for e in editions}
    if not editions:
        return found
    for edition, status, count in session.exec(
        select(Delivery.edition, Delivery.status, func.count())
        .where(col(Delivery.edition).in_(editions))
        .group_by(col(Delivery.edition), col(Delivery.status))
    ).all():
        found[edition][status] = int(count)
    return found


def queue_now(session: Session, now: datetime) -> dict[str, int]:
    """The queue at ``now``: ready to claim, being sent, waiting for a retry, planned for
    later (not due yet)."""
    counts = counts_by_status(session)
    ready = ready_count(session, now)
    retry_waiting = int(
        session.exec(
            select(func.count()).where(
                col(Delivery.status) == RETRY,
                col(Delivery.next_attempt_at) > type_coerce(now, UTCDateTime()),
            )
        ).one()
    )
    unfinished = queue_depth(counts)
    return {
        "ready": ready,
        "sending": counts.get(SENDING, 0),
        "retry_waiting": retry_waiting,
        "planned_later": max(0, unfinished - ready - counts.get(SENDING, 0) - retry_waiting),
    }
