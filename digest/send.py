"""Sending: claim ready deliveries, render each, hand it to SMTP, record the outcome.

The ``Sender`` is a worker's engine: lanes (SMTP connections) that each render the next
message while the server takes the last, opened as the server's latency needs them, sharing
one rate limit and circuit breaker. What an SMTP reply means for a delivery (sent, retried
later, failed, the member bounced) is decided here, in ``Sender._outcome``.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from digest import catalog, ledger
from digest.brake import Brake
from digest.compliance import postal_address_problem
from digest.compose import UnmailableAddress
from digest.content import ArticleView, MemberView
from digest.db import StoreUnavailable, store_unreachable, unreachable_reason
from digest.editions import Editions
from digest.feedback.verp import verp_from_settings
from digest.logs import about
from digest.mailer import SendResult, Transport, TransportFactory, begin_send
from digest.members.rules import ACTIVE, BOUNCED
from digest.outages import STOPPING, Backoff, Outage, wait_out
from digest.settings import Settings
from digest.throttle import CircuitBreaker, RateLimiter

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
T = TypeVar("T")


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    bounced: int = 0
    released: int = 0
    lanes: int = 0  # SMTP connections (lanes) the run opened
    paused_reason: str | None = None
    smtp_outage: bool = False  # paused because the SMTP server is unavailable
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """What the run did, by the deliveries' new states, for the scheduler's record."""
        return {ledger.SENT: self.sent, ledger.RETRY: self.retry, ledger.FAILED: self.failed}

    def log_level(self) -> int:
        """How loud the run's summary line is: INFO when it claimed work, but DEBUG for an
        idle poll, and for a retry during an SMTP outage that only gave its claims back (a
        worker waiting an hour out would otherwise log the same nothing every pause; the
        outage has its own WARNING and INFO)."""
        if not self.claimed:
            return logging.DEBUG
        if self.smtp_outage and not (self.sent or self.retry or self.failed):
            return logging.DEBUG
        return logging.INFO

    def add(self, other: SendReport) -> None:
        """Count ``other``'s run into this one (a worker's totals over its runs; the error
        texts stay with each run, so a worker that runs for months holds none of them)."""
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Sender:
    """A worker's sending engine: ``pool_size`` lanes, each with its own SMTP connection.

    Each lane claims a few deliveries at a time and records every outcome as soon as the
    server has answered, so a crash repeats at most one message per lane (the one in flight).
    The lanes share the rate limit and the circuit breaker.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        editions: Editions,
        transports: TransportFactory,
        clock: Callable[[], datetime],
        *,
        worker_id: str | None = None,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        subscriber_ids: Sequence[int] | None = None,
        brake: Brake | None = None,
        smtp_outage: Outage | None = None,
        store_outage: Outage | None = None,
        counts: Counter[str] | None = None,
    ) -> None:
        self.engine, self.settings, self.editions = engine, settings, editions
        self.transports, self.clock = transports, clock
        self.worker_id = worker_id or worker_name()
        self.subscriber_ids = subscriber_ids  # None: everyone's ready deliveries
        self.limiter = limiter or RateLimiter(settings.rate_per_second, settings.rate_per_hour)
        self.breaker = breaker or CircuitBreaker(settings.max_consecutive_errors)
        self.sender = settings.envelope_sender
        # each delivery's own return path when a bounce domain is set (VERP), so a bounce
        # names its delivery; From (and DKIM/DMARC alignment) stays as it is
        self.verp = verp_from_settings(settings.bounce_address, settings.secret_key)
        self.brake = brake or Brake(engine, settings, clock)
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.base = timedelta(seconds=settings.retry_base_seconds)
        self._lock = threading.Lock()
        # SQLite has one writer at a time: lanes of this process take turns here, woken the
        # moment the other is done, instead of in SQLite's busy handler, which sleeps 1 ms
        # and more. (Other processes still meet the busy handler; PostgreSQL locks rows.)
        self._writing: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )
        self._articles: dict[int, ArticleView] = {}
        # members' topic tuples, shared across claims; a renamed topic shows within seconds
        self._topics = catalog.TopicSets(max_age=5.0)
        # without a postal address only reserved test domains may be mailed: checked per
        # message (a member may subscribe after the run began); why sending stopped, if it did
        self._check_postal = not settings.postal_address.strip()
        self.refused: str | None = None
        # the SMTP server's outages, for the worker's heartbeat; the run's reason to pause
        self.smtp = smtp_outage or Outage("the SMTP server", log, clock)
        self._unavailable: str | None = None
        # the store's outages: every read and write of a lane waits them out (see ``_store``)
        self.store = store_outage or Outage("the store", log, clock)
        self._should_stop: Callable[[], bool] = lambda: False
        # what the heartbeat reports: totals since the process started (deliveries by
        # outcome, SMTP errors by class) and what the lanes send now
        self.counts: Counter[str] = Counter() if counts is None else counts
        self.activity: str | None = None
        # a long send under systemd (no terminal, no progress bar) says how far it got
        self._progress_every = 0.0 if _on_terminal() else settings.progress_log_seconds
        self._progress_next = 0.0
        self._progress_mark = (0.0, 0)  # (when, sent) at the last progress line

    def run(
        self,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> SendReport:
        """Send until nothing is ready, ``should_stop`` says so, or the breaker opens.

        One lane starts; another opens (up to ``smtp_pool_size``) each time a lane finds it
        spends more of its time waiting for the server than rendering (see ``_Pace``).
        """
        report = SendReport()
        self._unavailable = None
        self._should_stop = should_stop
        started = time.monotonic()
        self._progress_mark, self._progress_next = (started, 0), started + self._progress_every
        most = max(1, self.settings.smtp_pool_size)

        def stop() -> bool:
            return (
                should_stop()
                or self.breaker.open
                or self.refused is not None
                or self._unavailable is not None
            )

        errors: list[BaseException] = []
        threads: list[threading.Thread] = []

        def lane(number: int) -> None:
            # each lane claims under its own name: a lane's hold is its own, not its siblings'
            name = f"{self.worker_id[:190]}/{number}"
            try:
                self._lane(name, report, progress, stop, open_lane)
            except BaseException as exc:  # surfaced after join
                errors.append(exc)

        def open_lane(reason: str) -> None:
            with self._lock:
                if len(threads) >= most:
                    return
                number = len(threads)
                thread = threading.Thread(
                    target=lane, args=(number,), name=f"digest-lane-{number}", daemon=True
                )
                threads.append(thread)
            if reason:
                log.info("lane %d of at most %d opened: %s", len(threads), most, reason)
            thread.start()

        open_lane("")
        joined = 0
        while True:  # lanes open lanes, but only while running: all are in the list by the end
            with self._lock:
                if joined == len(threads):
                    break
                thread = threads[joined]
            thread.join()
            joined += 1
        report.lanes = len(threads)
        if errors:
            raise errors[0]
        if self.refused is not None:
            report.paused_reason = self.refused
            log.error("sending stopped: %s", report.paused_reason)
        elif self._unavailable is not None:  # the outage was logged when it began
            report.paused_reason = f"the SMTP server is unavailable: {self._unavailable}"
            report.smtp_outage = True
        elif self.breaker.open and not report.paused_reason:
            report.paused_reason = (
                f"{self.breaker.consecutive} consecutive send errors, "
                f"last: {self.breaker.last_error}"
            )
            log.error("sending paused: %s", report.paused_reason)
        self.activity = None
        log.log(
            report.log_level(),
            "sent %d, retry %d, failed %d (%d bounced), released %d, over %d SMTP connection(s)",
            report.sent,
            report.retry,
            report.failed,
            report.bounced,
            report.released,
            report.lanes,
        )
        return report

    def _lane(
        self,
        worker_id: str,
        report: SendReport,
        progress: Progress | None,
        stop: Callable[[], bool],
        open_lane: Callable[[str], None] = lambda reason: None,
    ) -> None:
        transport = self.transports()
        pace = _Pace()
        # one database connection for the lane's whole run: recording each outcome the moment
        # the server has answered is one short transaction on it, no pool checkout
        recorder = ledger.Recorder(self.engine)
        # the message handed to the server whose verdict is not read yet: at most one per lane
        pending: tuple[ledger.Claimed, Callable[[], ledger.Outcome]] | None = None

        def settle() -> None:
            """Read the server's verdict on the message in flight and record it."""
            nonlocal pending
            if pending is None:
                return
            delivery, finish = pending
            pending = None
            with pace.waiting():
                outcome = finish()
            self._record(recorder, outcome, delivery, worker_id, report, progress)

        try:
            while not stop():
                # the brake: no claim while sending is paused
                paused = self._store(self.brake.reason, stoppable=True)
                if paused:
                    with self._lock:
                        report.paused_reason = paused
                    return
                claimed = self._store(
                    lambda: ledger.claim(
                        self.engine,
                        worker_id,
                        self.clock(),
                        self.settings.claim_size,
                        self.lease,
                        self.subscriber_ids,
                    ),
                    stoppable=True,
                    after_outage=lambda: self._release_unseen(worker_id),
                )
                if not claimed:
                    return
                with self._lock:
                    report.claimed += len(claimed)
                    self.activity = f"{len(claimed)} deliveries of {claimed[0].edition}"
                members = self._store(
                    functools.partial(self._load, claimed), stoppable=True, writing=False
                )
                held = {d.id for d in claimed}
                held_until = claimed[0].lease_until
                for i, delivery in enumerate(claimed):
                    assert delivery.id is not None
                    if stop() or not self.limiter.acquire(stop):
                        settle()
                        self._release(claimed[i:], worker_id, report)
                        return
                    # render this one while the server takes the previous one...
                    prepared = self._prepare(delivery, members)
                    if prepared is None:  # refused (see ``refused``): it stays queued
                        settle()
                        self._release(claimed[i:], worker_id, report)
                        return
                    settle()  # ...whose verdict has had that long to arrive
                    if stop():  # that verdict may have opened the breaker
                        self._release(claimed[i:], worker_id, report)
                        return
                    now = self.clock()
                    if now + self.lease / 2 >= held_until:  # the rate limit may pace for long
                        held, held_until = self._renew(claimed[i:], worker_id, now)
                    if delivery.id not in held:
                        log.warning(
                            "delivery %s not sent by %s: its lease ran out and another worker "
                            "claimed it (lease_seconds %s is short for this pace)",
                            delivery.id,
                            worker_id,
                            self.settings.lease_seconds,
                            extra=_about(delivery),
                        )
                        continue
                    if isinstance(prepared, ledger.Outcome):
                        self._record(recorder, prepared, delivery, worker_id, report, progress)
                    else:
                        with pace.waiting():
                            pending = (delivery, self._hand_over(delivery, *prepared, transport))
                settle()
                busy = pace.lap()
                if busy is not None:
                    open_lane(busy)
        finally:
            try:
                settle()  # a message already handed over is recorded whatever stopped the lane
            finally:
                recorder.close()
                transport.close()

    def _store(
        self,
        call: Callable[[], T],
        *,
        stoppable: bool = False,
        writing: bool = True,
        after_outage: Callable[[], object] | None = None,
    ) -> T:
        """``call()`` on the store, waiting out an outage with backoff until it succeeds.

        ``stoppable``: a stop request (SIGTERM) ends the wait by raising the store's error
        (nothing is lost: what is not recorded is claimed again when its lease runs out).
        Otherwise (an outcome to record) it waits while the claim is still ours: up to a
        lease. ``after_outage`` runs once the store is back (before ``call`` is retried).
        """
        lock = self._writing if writing else nullcontext()
        try:  # the usual case: one call, no closures (this is on every message's path)
            with lock:
                result = call()
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            self.store.failed(unreachable_reason(exc))
        else:
            if self.store.active:  # an outage another lane or the worker noticed is over
                self.store.recovered()
            return result
        waited = 0.0

        def attempt() -> T:
            with lock:
                if after_outage is not None:
                    after_outage()
                return call()

        def pause(seconds: float) -> bool:
            nonlocal waited
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                if stoppable and self._should_stop():
                    return True
                time.sleep(min(left, 0.2))
            waited += seconds
            return not stoppable and waited > self.settings.lease_seconds

        backoff = Backoff()
        if pause(backoff.next()):
            raise StoreUnavailable(self.store.last_error or "the store is not reachable")
        return wait_out(
            attempt, self.store, store_unreachable, unreachable_reason, pause, backoff=backoff
        )

    def _release_unseen(self, worker_id: str) -> None:
        """After a claim lost to an outage: a claim the store committed before the connection
        went (its answer never came back) is given back, not left to its lease."""
        ledger.release_held(self.engine, worker_id, self.clock())

    def _renew(
        self, rest: Sequence[ledger.Claimed], worker_id: str, now: datetime
    ) -> tuple[set[int], datetime]:
        ids = [d.id for d in rest]
        held = self._store(lambda: ledger.renew(self.engine, ids, worker_id, now, self.lease))
        return held, now + self.lease

    def _release(self, rest: Sequence[ledger.Claimed], worker_id: str, report: SendReport) -> None:
        ids = [d.id for d in rest if d.id is not None]
        self._store(
            lambda: ledger.release(self.engine, ids, worker_id, self.clock()), stoppable=True
        )
        with self._lock:
            report.released += len(ids)

    def _record(
        self,
        recorder: ledger.Recorder,
        outcome: ledger.Outcome,
        delivery: ledger.Claimed,
        worker_id: str,
        report: SendReport,
        progress: Progress | None,
    ) -> None:
        if outcome.status == ledger.PLANNED:  # the server was away: back to the queue, uncounted
            self._release([delivery], worker_id, report)
            return
        retried = False

        def write() -> int:
            nonlocal retried
            if retried:  # the first try may have committed before the connection went
                if ledger.is_recorded(self.engine, outcome, worker_id):
                    return 1
            retried = True
            return recorder.record([outcome], worker_id, self.clock())

        # an outcome not recorded yet is kept (here, in this lane) until the store is back:
        # a message that went out is recorded as sent, never sent again
        changed = self._store(write)
        if not changed:
            log.error(
                "delivery %s (%s): the outcome could not be recorded, its claim was lost "
                "while the message was in flight; raise lease_seconds",
                delivery.id,
                outcome.status,
            )
        with self._lock:
            _tally(report, outcome, delivery)
            self.counts[OUTCOME_COUNTS[outcome.status]] += 1
            if self._progress_every and time.monotonic() >= self._progress_next:
                self._log_progress(report)
        if progress:
            progress(1)

    def _log_progress(self, report: SendReport) -> None:
        """One line every ``progress_log_seconds`` of sending (called under the lock)."""
        now = time.monotonic()
        then, sent_then = self._progress_mark
        self._progress_mark = (now, report.sent)
        self._progress_next = now + self._progress_every
        rate = max(report.sent - sent_then, 0) / max(now - then, 1e-9)
        log.info(
            "sending: %d sent, %d to retry, %d failed so far (%.1f messages/s)",
            report.sent,
            report.retry,
            report.failed,
            rate,
        )

    def _load(self, claimed: Sequence[ledger.Claimed]) -> dict[int, MemberView]:
        with self.engine.connect() as conn:
            members = catalog.members_by_id(conn, {d.subscriber_id for d in claimed}, self._topics)
        with self._lock:
            missing = {i for d in claimed for i in d.article_ids} - self._articles.keys()
        if missing:
            with Session(self.engine) as session:
                found = catalog.articles_by_id(session, missing, retracted=False)
            with self._lock:
                self._articles.update(found)
        return members

    def _prepare(
        self, delivery: ledger.Claimed, members: dict[int, MemberView]
    ) -> tuple[MemberView, bytes, datetime] | ledger.Outcome | None:
        """The message's bytes, the failure that stops it before sending, or None when the
        settings may not send it at all (``refused`` says why; the delivery is kept)."""
        assert delivery.id is not None
        member = members.get(delivery.subscriber_id)
        if member is None or member.status != ACTIVE:
            status = member.status if member else "deleted"
            return ledger.Outcome(delivery.id, ledger.FAILED, error=f"member is {status}; not sent")
        if self._check_postal:
            problem = postal_address_problem(self.settings, [member.email])
            if problem:
                self.refused = problem
                return None
        chosen = [self._articles[i] for i in delivery.article_ids if i in self._articles]
        if not chosen:
            return ledger.Outcome(
                delivery.id, ledger.FAILED, error="its articles were retracted or no longer exist"
            )
        now = self.clock()
        try:
            _, data = self.editions.message_for(
                member, delivery.edition, chosen, delivery.message_id, now, delivery.id
            )
        except UnmailableAddress as exc:  # an old row's address: this delivery fails, clearly
            log.warning("delivery %s not composed: %s", delivery.id, exc, extra=_about(delivery))
            return ledger.Outcome(delivery.id, ledger.FAILED, error=f"address not mailable: {exc}")
        except Exception as exc:  # a template bug fails this delivery, not the whole run
            log.exception("render failed for delivery %s", delivery.id, extra=_about(delivery))
            return ledger.Outcome(delivery.id, ledger.FAILED, error=f"render failed: {exc}")
        return member, data, now

    def _hand_over(
        self,
        delivery: ledger.Claimed,
        member: MemberView,
        data: bytes,
        now: datetime,
        transport: Transport,
    ) -> Callable[[], ledger.Outcome]:
        """Send the message; the returned function reads the server's verdict as an outcome."""
        sender = self.verp.address(delivery.id, delivery.message_id) if self.verp else self.sender
        finish = begin_send(transport, sender, member.email, data, delivery.message_id)
        return lambda: self._outcome(delivery, member, finish(), now, len(data))

    def _outcome(
        self,
        delivery: ledger.Claimed,
        member: MemberView,
        result: SendResult,
        now: datetime,
        size: int,
    ) -> ledger.Outcome:
        assert delivery.id is not None
        if result.ok:
            self.breaker.success()
            self.smtp.recovered()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "delivery %s to %s sent: %s",
                    delivery.id,
                    member.email,
                    result.reply,
                    extra=_about(delivery),
                )
            return ledger.Outcome(
                delivery.id, ledger.SENT, result.code, result.reply, size_bytes=size
            )
        reason = f"{result.code or ''} {result.reply}".strip()
        with self._lock:
            self.counts[f"smtp_errors:{smtp_error_class(result)}"] += 1
        if result.code in (421, 451):
            self.limiter.pushback()
        if result.server_wide:
            # not this message's fault: it goes back to the queue without counting an
            # attempt, and the worker pauses until the server is back (any outage's length)
            self.smtp.failed(reason)
            self._unavailable = reason
            log.debug("delivery %s back to the queue: %s", delivery.id, reason)
            return ledger.Outcome(delivery.id, ledger.PLANNED, result.code, result.reply)
        if not (result.permanent and result.code is not None):
            self.breaker.failure(reason)  # server or network trouble, not one bad address
        else:
            self.breaker.success()
        if result.permanent or delivery.attempts >= self.settings.max_attempts:
            log.warning(
                "delivery %s to %s failed: %s",
                delivery.id,
                member.email,
                reason,
                extra=_about(delivery),
            )
            return ledger.Outcome(
                delivery.id,
                ledger.FAILED,
                result.code,
                result.reply,
                error=reason if result.permanent else f"attempts exhausted: {reason}",
                suppress_member=BOUNCED if result.hard_bounce else None,
                subscriber_id=delivery.subscriber_id,
            )
        retry_at = now + ledger.backoff(delivery.attempts, self.base)
        log.info(
            "delivery %s to %s will retry at %s: %s",
            delivery.id,
            member.email,
            retry_at.isoformat(),
            reason,
            extra=_about(delivery),
        )
        return ledger.Outcome(
            delivery.id,
            ledger.RETRY,
            result.code,
            result.reply,
            error=reason,
            next_attempt_at=retry_at,
        )


def send_due(
    engine: Engine,
    settings: Settings,
    transports: TransportFactory,
    editions: Editions,
    clock: Callable[[], datetime],
    *,
    worker_id: str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    subscriber_ids: Sequence[int] | None = None,
) -> SendReport:
    """Send every ready delivery once (the in-process engine of ``digest run``); with
    ``subscriber_ids``, only those members' deliveries."""
    sender = Sender(
        engine,
        settings,
        editions,
        transports,
        clock,
        worker_id=worker_id,
        subscriber_ids=subscriber_ids,
        smtp_outage=Outage("the SMTP server", log, clock, then=STOPPING),
    )
    return sender.run(progress=progress, should_stop=should_stop)


class _Pace:
    """How much of a lane's time goes to waiting for the SMTP server.

    A lane renders the next message while the server takes the last, so on a near server
    (a relay on the same host or network) one lane keeps the CPU busy and more lanes would
    only take turns at the interpreter's lock. A far server's round trips are longer than a
    render: then the lane mostly waits, and another lane (connection) adds throughput.
    """

    #: Above this share of time waiting for the server, another lane is worth opening.
    THRESHOLD = 0.5
    #: Judged over at least this many seconds of sending, so one slow reply decides nothing.
    WINDOW = 1.0

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock()
        self._waited = 0.0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        t = self._clock()
        try:
            yield
        finally:
            self._waited += self._clock() - t

    def lap(self) -> str | None:
        """Why to open another lane, if the window since the last lap was mostly waiting."""
        now = self._clock()
        elapsed = now - self._started
        if elapsed < self.WINDOW:
            return None
        share = self._waited / elapsed
        self._started, self._waited = now, 0.0
        if share <= self.THRESHOLD:
            return None
        return f"the server's replies took {share:.0%} of a lane's last {elapsed:.1f}s"


#: The counter each recorded outcome adds to.
OUTCOME_COUNTS = {ledger.SENT: "sent", ledger.RETRY: "retried", ledger.FAILED: "failed"}


def smtp_error_class(result: SendResult) -> str:
    """An SMTP failure's class, as counted: ``connection`` (refused, reset, timed out, no
    reply), ``server`` (a server-wide refusal: 421, the greeting, login, sender),
    ``temporary`` (4xx about the message) or ``permanent`` (5xx)."""
    if result.code is None:
        return "connection"
    if result.server_wide:
        return "server"
    return "permanent" if result.permanent else "temporary"


def _about(delivery: ledger.Claimed) -> dict[str, object]:
    """What a log line about ``delivery`` is tagged with (fields of a JSON log line)."""
    return about(delivery.id, delivery.edition, delivery.subscriber_id)


def _tally(report: SendReport, outcome: ledger.Outcome, delivery: ledger.Claimed) -> None:
    if outcome.status == ledger.SENT:
        report.sent += 1
    elif outcome.status == ledger.RETRY:
        report.retry += 1
    else:
        report.failed += 1
        report.errors.append(f"{delivery.edition} #{delivery.id}: {outcome.error}")
    if outcome.suppress_member == BOUNCED:
        report.bounced += 1
