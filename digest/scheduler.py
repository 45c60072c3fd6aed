"""The scheduler service: one active process runs the jobs, any other waits as a standby.

Jobs (APScheduler 3, kept in the database job store so a restart keeps their schedule):
``ingest`` reads the configured sources, ``plan`` plans the editions that are due, ``send``
sends what is planned. Missed runs coalesce: a service that was down for an hour runs a missed
job once, not sixty times. Leadership is a lease row in ``scheduler_state``: the holder renews it;
a standby takes over once it has expired. This works across processes on SQLite and across
hosts on PostgreSQL, and the ledger's unique constraint keeps planning safe even if two ran.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from digest import brake, catalog, heartbeat, ledger
from digest.clock import Clock, system_clock
from digest.db import session_scope, store_unreachable, unreachable_reason
from digest.editions import Editions
from digest.feedback import store
from digest.heartbeat import RUNNING, STANDBY, Beat, Heartbeat, counters
from digest.ingest import load_paths, upsert_articles
from digest.mailer import make_transport
from digest.models import SchedulerState
from digest.outages import Outage
from digest.plan import plan
from digest.send import Sender
from digest.settings import Settings

log = logging.getLogger(__name__)

LEADER = "main"
JOB_TABLE = "apscheduler_jobs"
#: The optional job that reads the bounce mailbox (``bounce_poll_minutes``).
BOUNCES = "bounces"


# ------------------------------------------------------------------ leadership (a lease row)


def acquire_leadership(
    engine: Engine, holder: str, now: datetime, lease: timedelta, name: str = LEADER
) -> bool:
    """Take or renew the lease; True if ``holder`` is the active scheduler afterwards."""
    insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    host, _, pid = holder.rpartition(":")
    with session_scope(engine) as session:
        session.execute(insert(SchedulerState).values(name=name).on_conflict_do_nothing())
        result = session.execute(
            update(SchedulerState)
            .where(
                col(SchedulerState.name) == name,
                (col(SchedulerState.holder) == holder)
                | col(SchedulerState.holder).is_(None)
                | (col(SchedulerState.lease_until) < now),
            )
            .values(
                holder=holder,
                host=host,
                pid=int(pid) if pid.isdigit() else None,
                lease_until=now + lease,
                updated_at=now,
            )
        )
        won = bool(result.rowcount)
        if won:
            session.execute(
                update(SchedulerState)
                .where(col(SchedulerState.name) == name, col(SchedulerState.acquired_at).is_(None))
                .values(acquired_at=now)
            )
    return won


def release_leadership(engine: Engine, holder: str, now: datetime, name: str = LEADER) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(SchedulerState)
            .where(col(SchedulerState.name) == name, col(SchedulerState.holder) == holder)
            .values(holder=None, lease_until=None, acquired_at=None, updated_at=now)
        )


def _on_takeover(engine: Engine, holder: str, now: datetime, name: str = LEADER) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(SchedulerState)
            .where(col(SchedulerState.name) == name, col(SchedulerState.holder) == holder)
            .values(acquired_at=now)
        )


def record_run(
    engine: Engine, job: str, summary: Mapping[str, Any], now: datetime, error: str | None = None
) -> None:
    """Remember each job's last run (and the last error) for ``digest status`` and metrics.

    Jobs finish concurrently and each rewrites the shared report: the row is locked while it
    is read and written (PostgreSQL; SQLite's immediate transactions already serialise), so
    no job's count is lost to another's write.
    """
    with session_scope(engine) as session:
        state = session.get(SchedulerState, LEADER, with_for_update=True) or SchedulerState(
            name=LEADER
        )
        runs = json.loads(state.last_tick_report or "{}")
        entry = runs.get(job, {"runs": 0})
        entry.update(at=now.isoformat(), runs=entry.get("runs", 0) + 1, summary=dict(summary))
        runs[job] = entry
        state.last_tick_report = json.dumps(runs, default=str)
        if job == "plan":
            state.last_tick_at = now
        if error:
            state.last_error = f"{job}: {error}"
            state.last_error_at = now
        state.updated_at = now
        session.add(state)


# ------------------------------------------------------------------ the jobs


@dataclass(frozen=True)
class Source:
    """An entry of ``[[sources]]``: a feed URL or a file/folder path."""

    location: str
    name: str = ""


def sources_from_config(raw: list[dict[str, Any]], base: Path) -> list[Source]:
    out = []
    for i, entry in enumerate(raw, start=1):
        where = entry.get("url") or entry.get("path")
        if not isinstance(where, str) or not where:
            raise ValueError(f'[[sources]] entry {i}: needs url = "..." or path = "..."')
        if "path" in entry and not Path(where).is_absolute():
            where = str(base / where)
        out.append(Source(where, str(entry.get("name", ""))))
    return out


class SendingPaused(RuntimeError):
    """The send job stopped early (the brake, the breaker, an SMTP outage): recorded as the
    job's last error; the next tick tries again."""


class Jobs:
    """What each scheduled job does; callable directly, so tests drive it with a fixed clock."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        sources: list[Source],
        clock: Clock = system_clock,
        stop: threading.Event | None = None,
        transports: Callable[[Settings], Any] = make_transport,
    ) -> None:
        self.engine, self.settings, self.sources = engine, settings, sources
        self.clock = clock
        self.stop = stop or threading.Event()
        self.transports = transports
        self.editions = Editions(settings)
        # what this process depends on, shared by its jobs and its heartbeat
        self.store = Outage("the store", log, clock)
        self.smtp = Outage("the SMTP server", log, clock)
        # for the heartbeat: counters since the process started, the jobs running now, the
        # send job's sender while it runs, and the last job that failed or paused, and why
        self.counts: Counter[str] = Counter()
        self.running: set[str] = set()
        self.sender: Sender | None = None
        self.problem: tuple[str, datetime] | None = None

    def reconfigure(self, settings: Settings, sources: list[Source]) -> None:
        self.settings, self.sources = settings, sources
        self.editions = Editions(settings)

    def run(self, name: str) -> dict[str, Any]:
        """Run job ``name`` and record it. An outage (the store's or the SMTP server's) is
        said once by its ``Outage`` and waited out by the next run, never a traceback; any
        other failure is logged with its traceback and recorded as the last error."""
        now = self.clock()
        self.running.add(name)
        try:
            summary = getattr(self, f"job_{name}")()
        except SendingPaused as exc:
            self.problem = (f"{name}: {exc}", self.clock())
            self._record(name, {}, now, error=str(exc))
            return {}
        except Exception as exc:
            if store_unreachable(exc):
                self.store.failed(unreachable_reason(exc))
                return {}
            log.exception("job %s failed", name, extra={"job": name})
            self.problem = (f"{name}: {type(exc).__name__}: {exc}", self.clock())
            self._record(name, {}, now, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.running.discard(name)
        self._record(name, summary, now)
        return summary

    def describe(self, leading: bool) -> Beat:
        """What this scheduler's heartbeat says: leading or standing by, what runs now."""
        sender = self.sender
        doing = sender.activity if sender is not None else None
        jobs = ", ".join(sorted(self.running))
        detail = "; ".join(
            part for part in (f"running {jobs}" if jobs else "", doing or "") if part
        )
        return Beat(
            RUNNING if leading else STANDBY,
            detail or None,
            counters(self.counts, self.store),
            self.problem,
        )

    def _record(
        self, name: str, summary: Mapping[str, Any], now: datetime, error: str | None = None
    ) -> None:
        try:
            record_run(self.engine, name, summary, now, error=error)
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            self.store.failed(unreachable_reason(exc))  # the heartbeat keeps the error
        else:
            self.store.recovered()

    def job_ingest(self) -> dict[str, Any]:
        from digest.ingest.feeds import stored_sources

        with Session(self.engine) as session:  # the feeds editors added in the newsroom
            added = [s.url for s in stored_sources(session)]
        locations = list(dict.fromkeys([*(s.location for s in self.sources), *added]))
        if not locations:
            return {"sources": 0}
        batch = load_paths(
            locations,
            now=self.clock(),
            max_bytes=self.settings.max_import_bytes,
            allow_private_feed_hosts=self.settings.allow_private_feed_hosts,
        )
        for warning in batch.warnings:
            log.warning("ingest: %s", warning)
        for error in batch.errors:
            source = self._source_of(error)
            self.counts[f"ingest_failures:{source}"] += 1
            log.warning("ingest: skipped %s", error, extra={"source": source})
        with session_scope(self.engine) as session:
            # first seen when written, not when the fetch began: a plan may run meanwhile
            catalog.lock_articles(session)
            counts = upsert_articles(session, batch.records, self.clock())
        log.info("ingest: %s from %d sources", counts, len(locations))
        return {"sources": len(locations), "counts": str(counts), "errors": len(batch.errors)}

    def _source_of(self, error: Any) -> str:
        """The configured source (its name, else its location) an ingest error is from."""
        where = str(getattr(error, "file", "") or "")
        for source in self.sources:
            if where == source.location or where.startswith(source.location.rstrip("/") + "/"):
                return source.name or source.location
        return where or "unknown"

    def job_plan(self) -> dict[str, Any]:
        return dict(plan(self.engine, self.settings, self.clock()).summary())

    def job_bounces(self) -> dict[str, Any]:
        """Read the bounce mailbox once (``digest bounces poll``)."""
        from digest.feedback.imap import Poller
        from digest.feedback.intake import Intake

        report = Poller(Intake(self.engine, self.settings, self.clock), self.settings).poll()
        if report.failed:
            raise RuntimeError(f"bounce mailbox: {report.failed} messages not recorded")
        return {"fetched": report.fetched, "moved": report.moved, "kept": report.kept}

    def job_send(self) -> dict[str, Any]:
        settings = self.settings
        sender = Sender(
            self.engine,
            settings,
            self.editions,
            lambda: self.transports(settings),
            self.clock,
            smtp_outage=self.smtp,
            store_outage=self.store,
            counts=self.counts,
        )
        self.sender = sender
        try:
            report = sender.run(should_stop=self.stop.is_set)
        finally:
            self.sender = None
        if report.paused_reason:
            if not report.smtp_outage:  # an outage said so when it began
                log.error("sending paused: %s", report.paused_reason)
            raise SendingPaused(f"sending paused: {report.paused_reason}")
        return dict(report.summary())


#: The jobs of the service running in this process; APScheduler stores a reference to
#: ``run_job`` (an importable function) and the job's name, never the objects themselves.
_ACTIVE: Jobs | None = None


def run_job(name: str) -> None:
    if _ACTIVE is None:
        log.warning("job %s fired with no active service", name)
        return
    _ACTIVE.run(name)


# ------------------------------------------------------------------ the service


class _JobStore(SQLAlchemyJobStore):
    """APScheduler's job store, riding out store outages.

    APScheduler's loop writes each job's next run time and reads the next wake-up with no
    guard: one dropped connection there ends the loop's thread, and no job runs again. Here
    a write lost to an outage is left (the job stays due, and runs once, coalesced, when the
    store is back) and the wake-up is "soon"; the service's ``Outage`` says so once.
    """

    def __init__(self, outage: Outage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outage = outage

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            self.outage.failed(unreachable_reason(exc))

    def get_next_run_time(self) -> datetime | None:
        try:
            return super().get_next_run_time()  # type: ignore[no-any-return]
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            self.outage.failed(unreachable_reason(exc))
            return datetime.now(UTC) + timedelta(seconds=OUTAGE_RETRY_SECONDS)


#: How soon APScheduler's loop looks at the job store again during a store outage.
OUTAGE_RETRY_SECONDS = 5.0


def _not_the_job_stores_outage(record: logging.LogRecord) -> bool:
    """APScheduler says "Error getting due jobs" every ten seconds of a store outage; the
    service says it once (its ``Outage``), so those lines are left out."""
    return not str(record.msg).startswith("Error getting due jobs from job store")


logging.getLogger("apscheduler.scheduler").addFilter(_not_the_job_stores_outage)


class Service:
    """A scheduler process: standby until it holds the lease, then the APScheduler jobs."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        sources: list[Source],
        *,
        tick_seconds: float | None = None,
        reload: Callable[[], tuple[Settings, list[Source]]] | None = None,
        clock: Clock = system_clock,
        holder: str | None = None,
    ) -> None:
        self.engine = engine
        self.tick_override = tick_seconds  # --tick wins over the (reloadable) setting
        self.reload_settings = reload
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self._reload_requested = threading.Event()
        self.jobs = Jobs(engine, settings, sources, clock, self.stopping)
        self.scheduler: BackgroundScheduler | None = None
        self.leading = False

    @property
    def settings(self) -> Settings:
        return self.jobs.settings

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler_lease_seconds)

    def stop(self) -> None:
        self.stopping.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    def intervals(self) -> dict[str, float]:
        out = {
            "ingest": self.settings.ingest_interval_minutes * 60.0,
            "plan": self.tick_override or self.settings.tick_seconds,
            "send": self.tick_override or self.settings.tick_seconds,
        }
        if self.settings.imap_host and self.settings.bounce_poll_minutes > 0:
            out[BOUNCES] = self.settings.bounce_poll_minutes * 60.0
        return out

    def _start_jobs(self) -> None:
        global _ACTIVE
        _ACTIVE = self.jobs
        scheduler = BackgroundScheduler(
            jobstores={
                "default": _JobStore(self.jobs.store, engine=self.engine, tablename=JOB_TABLE)
            },
            executors={"default": ThreadPoolExecutor(3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        scheduler.start(paused=True)
        self.scheduler = scheduler
        self._sync_jobs()
        scheduler.resume()  # missed runs fire now, once each (coalesced)
        log.info("scheduler %s is active: jobs %s", self.holder, self.intervals())

    def _sync_jobs(self) -> None:
        """Add missing jobs; keep existing ones (their next run time is the catch-up)."""
        assert self.scheduler is not None
        wanted = self.intervals()
        if BOUNCES not in wanted and self.scheduler.get_job(BOUNCES) is not None:
            self.scheduler.remove_job(BOUNCES)  # the mailbox is no longer configured
        for name, seconds in wanted.items():
            job = self.scheduler.get_job(name)
            if job is None:
                self.scheduler.add_job(
                    "digest.scheduler:run_job",
                    "interval",
                    args=[name],
                    id=name,
                    name=name,
                    seconds=seconds,
                    next_run_time=self.clock(),
                )
            elif job.trigger.interval.total_seconds() != seconds:
                self.scheduler.reschedule_job(name, trigger="interval", seconds=seconds)

    def _stop_jobs(self, wait: bool) -> None:
        global _ACTIVE
        if self.scheduler is not None:
            self.scheduler.pause()  # no job is submitted while the pool shuts down...
            with self.scheduler._jobstores_lock:  # ...nor by a pass over due jobs under way
                pass
            self.scheduler.shutdown(wait=wait)
            self.scheduler = None
        _ACTIVE = None

    def run(self) -> int:
        """Block until stopped; return the exit code (0 after a clean stop)."""
        log.info("scheduler %s started; waiting to become active", self.holder)
        beats = Heartbeat(
            self.engine,
            "scheduler",
            self.clock,
            self.settings.heartbeat_seconds,
            lambda: self.jobs.describe(self.leading),
            outages=(self.jobs.store, self.jobs.smtp),
            process_id=self.holder,
        )
        beats.start()
        try:
            while not self.stopping.is_set():
                if self._reload_requested.is_set():
                    self._do_reload()
                try:
                    won = acquire_leadership(self.engine, self.holder, self.clock(), self.lease)
                except Exception as exc:
                    if not store_unreachable(exc):
                        raise
                    # an outage: said once, waited out; the jobs keep running meanwhile (a
                    # standby can only take over once the store is back and the lease old)
                    self.jobs.store.failed(unreachable_reason(exc))
                    won = self.leading
                else:
                    self.jobs.store.recovered()
                if won and not self.leading:
                    try:
                        _on_takeover(self.engine, self.holder, self.clock())
                        self._start_jobs()
                    except Exception as exc:  # the store went while the jobs started
                        if not store_unreachable(exc):
                            raise
                        self.jobs.store.failed(unreachable_reason(exc))
                        self._stop_jobs(wait=False)
                    else:
                        self.leading = True
                elif not won and self.leading:
                    log.error("scheduler %s lost the lease; standing by", self.holder)
                    self.leading = False
                    self._stop_jobs(wait=False)
                beats.changed()
                self.stopping.wait(max(self.lease.total_seconds() / 3, 0.2))
        finally:
            log.info("scheduler %s stopping: finishing jobs in flight", self.holder)
            self._stop_jobs(wait=True)
            if self.leading:
                try:
                    release_leadership(self.engine, self.holder, self.clock())
                except Exception as exc:
                    if not store_unreachable(exc):
                        raise
                    log.warning(  # the lease will run out
                        "scheduler %s: lease not released (%s)",
                        self.holder,
                        unreachable_reason(exc),
                    )
            self.leading = False
            beats.stop()
        log.info("scheduler %s stopped", self.holder)
        return 0

    def _do_reload(self) -> None:
        self._reload_requested.clear()
        if self.reload_settings is None:
            return
        try:
            settings, sources = self.reload_settings()
        except Exception as exc:  # a broken config keeps the old one running
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        self.jobs.reconfigure(settings, sources)
        if self.scheduler is not None:
            self._sync_jobs()
        log.info("configuration reloaded")


# ------------------------------------------------------------------ status


def stored_last_tick(session: Session) -> datetime | None:
    """The last planning tick any scheduler recorded (None before the first, or on a store
    older than the scheduler's table)."""
    try:
        stored = session.exec(select(func.max(col(SchedulerState.last_tick_at)))).one()
    except Exception:  # an older store without the table: report what exists
        session.rollback()
        return None
    if isinstance(stored, datetime) and stored.tzinfo is None:
        stored = stored.replace(tzinfo=UTC)
    return stored if isinstance(stored, datetime) else None


def status(
    engine: Engine, now: datetime, complaint_window: int = 1000, heartbeat_seconds: float = 15.0
) -> dict[str, Any]:
    """What ``digest status`` prints: active scheduler, jobs' next runs, queue, last tick/error,
    whether sending is paused (the brake) and why, and bounce and complaint rates (over the
    brake's window, the last 7 days, and per edition of the last 7 days)."""
    with Session(engine) as session:
        state = session.get(SchedulerState, LEADER)
        counts = ledger.counts_by_status(session)
        sending = brake.state(session)
        window = store.window_rates(session, complaint_window, sending.resumed_at)
        week = store.recent_rates(session, now, 7)
        editions = store.edition_rates(session, since=now - timedelta(days=7))
        rows = heartbeat.processes(session)
    procs = [heartbeat.as_json(row, now, heartbeat_seconds) for row in rows]
    errors = [(p["last_error"], p["last_error_at"]) for p in procs if p["last_error"]]
    if state and state.last_error and state.last_error_at:
        errors.append((state.last_error, state.last_error_at.isoformat()))
    newest = max(errors, key=lambda pair: pair[1]) if errors else (None, None)
    jobs: dict[str, str | None] = {}
    from sqlalchemy import inspect

    if inspect(engine).has_table(JOB_TABLE):
        job_store = SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)
        for job in job_store.get_all_jobs():
            jobs[job.id] = job.next_run_time.isoformat() if job.next_run_time else None
    active = bool(state and state.holder and state.lease_until and state.lease_until >= now)
    return {
        "active": active,
        "holder": state.holder if state else None,
        "host": state.host if state else None,
        "pid": state.pid if state else None,
        "lease_until": state.lease_until.isoformat() if state and state.lease_until else None,
        "jobs": jobs,
        "queue": {s: counts[s] for s in ledger.UNFINISHED_STATUSES},
        "last_tick_at": state.last_tick_at.isoformat() if state and state.last_tick_at else None,
        "runs": json.loads(state.last_tick_report) if state and state.last_tick_report else {},
        "last_error": newest[0],  # the newest of any process's
        "last_error_at": newest[1],
        "processes": procs,
        "sending": sending.as_json(),
        "rates": {
            "window": {"deliveries": complaint_window, **window.as_json()},
            "last_7_days": week.as_json(),
            "by_edition": {edition: rates.as_json() for edition, rates in editions.items()},
        },
    }
