"""Where the stages meet: plan -> render -> send -> record, each with a report.

Everything here is orchestration. Selection and scheduling decisions are pure functions
(``schedule``, ``selection``); reading and writing rows is ``catalog`` and ``ledger``; turning an
issue into bytes is ``Editions.message_for``, the one call both preview and sending use, so
what an editor previews is what a member gets.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from digest import catalog, ledger
from digest.compose import UnmailableAddress, compose_message
from digest.content import ArticleView, DigestIssue, MemberView, Rendered
from digest.db import session_scope
from digest.dkim import signer_from_settings
from digest.mailer import SendResult, Transport, begin_send
from digest.members import get_member
from digest.models import Delivery
from digest.render import Renderer
from digest.schedule import (
    PERIODS,
    Edition,
    edition_for_day,
    edition_label,
    is_stale,
    latest_due_edition,
    too_soon,
    zone,
)
from digest.selection import (
    CandidateIndex,
    Limits,
    group_by_topic,
    select_articles,
    window_start_for,
)
from digest.settings import Settings
from digest.throttle import CircuitBreaker, RateLimiter
from digest.tokens import TokenSigner, member_links

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------ plan


@dataclass(frozen=True)
class PlanItem:
    email: str
    edition: str
    status: str  # planned | skipped
    reason: str | None
    articles: tuple[ArticleView, ...]


@dataclass
class PlanReport:
    members: int = 0
    planned: int = 0
    skipped_empty: int = 0
    skipped_stale: int = 0
    not_due: int = 0
    too_soon: int = 0
    already_planned: int = 0
    items: list[PlanItem] = field(default_factory=list)


def current_edition(member: MemberView, now: datetime, settings: Settings, force: bool) -> Edition:
    """The edition a member is due for; ``force`` takes this period's edition, hour or not."""
    if not force:
        return latest_due_edition(
            member.frequency, member.timezone, member.send_hour, now, settings.weekly_weekday
        )
    tz = zone(member.timezone)
    today = now.astimezone(tz).date()
    if member.frequency == "weekly":
        today -= timedelta(days=(today.weekday() - settings.weekly_weekday) % 7)
    edition = edition_for_day(member.frequency, today, member.send_hour, tz)
    return Edition(edition.key, edition.frequency, edition.local_date, min(edition.due_at, now))


class _Calendar:
    """Each member's edition and whether it is stale, worked out once per (rhythm, zone, hour).

    Within one planning run ``now`` is fixed, so a million members need only as many zoneinfo
    computations as there are distinct settings among them.
    """

    def __init__(self, now: datetime, settings: Settings, force: bool) -> None:
        self.now, self.settings, self.force = now, settings, force
        self.lateness = timedelta(hours=settings.max_lateness_hours)
        self._memo: dict[tuple[str, str, int], tuple[Edition, bool]] = {}

    def __call__(self, member: MemberView) -> tuple[Edition, bool]:
        """(the edition due, whether it is too late to send it)."""
        key = (member.frequency, member.timezone, member.send_hour)
        found = self._memo.get(key)
        if found is None:
            edition = current_edition(member, self.now, self.settings, self.force)
            stale = is_stale(edition, member.timezone, self.now, self.lateness)
            found = self._memo[key] = (edition, stale)
        return found


def plan_member(
    member: MemberView,
    edition: Edition,
    last_window_end: datetime | None,
    candidates: Sequence[ArticleView] | CandidateIndex,
    now: datetime,
    limits: Limits,
    earliest_untaken: datetime | None = None,
    *,
    owed_from: datetime | None = None,
    delivered: frozenset[int] = frozenset(),
) -> ledger.PlannedRow:
    """The ledger row for one member's edition: planned with its articles, or skipped empty.

    ``candidates`` may be indexed once (``CandidateIndex``) when many members are planned.
    ``owed_from``: a failed edition left a hole before the last taken window (see
    ``ledger.History``); this window reaches back over it, less the articles ``delivered``.
    """
    start = window_start_for(last_window_end, PERIODS[member.frequency], now, earliest_untaken)
    if owed_from is not None and owed_from < start:
        start = owed_from
        pool = candidates.articles if isinstance(candidates, CandidateIndex) else candidates
        remaining = [a for a in pool if a.id not in delivered]
        articles = select_articles(member, remaining, start, now, now, limits)
    elif isinstance(candidates, CandidateIndex):
        articles = candidates.select(member, start, now, now, limits)
    else:
        articles = select_articles(member, candidates, start, now, now, limits)
    return ledger.PlannedRow(
        subscriber_id=member.id,
        edition=edition.key,
        status="planned" if articles else "skipped",
        due_at=edition.due_at,
        window_start=start,
        window_end=max(start, now),
        article_ids=tuple(a.id for a in articles),
        error=None if articles else "empty: no new articles on the member's topics",
    )


def limits_from(settings: Settings) -> Limits:
    return Limits(max_items=settings.max_items, max_age=timedelta(days=settings.max_age_days))


def plan(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    emails: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> PlanReport:
    """Plan every due edition of active members, one batch of members per transaction.

    The candidates are read and indexed once; members are streamed in id order, so memory
    holds one batch, whatever the number of members.
    """
    limits = limits_from(settings)
    report = PlanReport()
    with Session(engine) as session:
        catalog.lock_articles(session)  # no ingest stamped before now is still uncommitted
        candidates = catalog.candidate_articles(session, now, now - limits.max_age)
    index = CandidateIndex(candidates)
    by_id = {a.id: a for a in candidates}
    calendar = _Calendar(now, settings, force)
    for batch in catalog.member_batches(engine, settings.batch_size, emails=emails):
        report.members += len(batch)
        due = [calendar(m) for m in batch]
        with session_scope(engine) as session:
            ledger.lock_planning(session)
            existing = ledger.existing_editions(
                session, [(m.id, edition.key) for m, (edition, _) in zip(batch, due, strict=True)]
            )
            history = ledger.member_history(session, [m.id for m in batch])
            rows: list[ledger.PlannedRow] = []
            for member, (edition, stale) in zip(batch, due, strict=True):
                if (member.id, edition.key) in existing:
                    report.already_planned += 1
                    continue
                past = history.get(member.id, _NO_HISTORY)
                if not force and too_soon(edition, past.last_due_at):
                    report.too_soon += 1
                    continue
                if not force and stale:
                    created = member.created_at
                    if created is not None and created <= edition.due_at:
                        rows.append(_stale_row(member, edition, now))
                        report.skipped_stale += 1
                    else:
                        report.not_due += 1
                    continue
                row = plan_member(
                    member,
                    edition,
                    past.last_window_end,
                    index,
                    now,
                    limits,
                    past.earliest_untaken_start,
                    owed_from=past.owed_from,
                    delivered=past.delivered,
                )
                rows.append(row)
                if row.status == "planned":
                    report.planned += 1
                else:
                    report.skipped_empty += 1
                if dry_run:
                    report.items.append(
                        PlanItem(
                            member.email,
                            row.edition,
                            row.status,
                            row.error,
                            tuple(by_id[i] for i in row.article_ids),
                        )
                    )
            if not dry_run:
                ledger.insert_rows(session, rows, settings.from_domain, now)
            else:
                session.rollback()
        if progress:
            progress(len(batch))
    log.info(
        "planned %d editions (%d empty, %d stale skipped, %d already planned) for %d members",
        report.planned,
        report.skipped_empty,
        report.skipped_stale,
        report.already_planned,
        report.members,
    )
    return report


_NO_HISTORY = ledger.History()


def _stale_row(member: MemberView, edition: Edition, now: datetime) -> ledger.PlannedRow:
    return ledger.PlannedRow(
        subscriber_id=member.id,
        edition=edition.key,
        status="skipped",
        due_at=edition.due_at,
        window_start=edition.due_at,
        window_end=edition.due_at,
        article_ids=(),
        error=f"stale: due {edition.due_at.isoformat()}, not sent in time; "
        "its articles stay eligible for the next edition",
    )


# ------------------------------------------------------------------ render


class Editions:
    """Turns (member, edition, articles) into the message: used by sending and by preview."""

    def __init__(self, settings: Settings, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer.from_settings(settings)
        self.signer = TokenSigner(settings.secret_key)
        self.dkim = signer_from_settings(settings)

    def issue(
        self, member: MemberView, edition: str, articles: Sequence[ArticleView], now: datetime
    ) -> DigestIssue:
        links = member_links(
            self.signer,
            self.settings.base_url,
            member,
            now,
            self.settings.effective_unsubscribe_mailto,
        )
        return DigestIssue(
            member=member,
            edition=edition,
            edition_label=edition_label(edition),
            groups=group_by_topic(member, articles),
            links=links,
            site_name=self.settings.site_name,
            base_url=self.settings.base_url,
        )

    def message_for(
        self,
        member: MemberView,
        edition: str,
        articles: Sequence[ArticleView],
        message_id: str,
        now: datetime,
    ) -> tuple[Rendered, bytes]:
        issue = self.issue(member, edition, articles, now)
        rendered = self.renderer.render_digest(issue)
        data = compose_message(
            rendered,
            from_address=self.settings.from_address,
            to_email=member.email,
            to_name=member.name,
            message_id=message_id,
            date=now,
            list_id=self.settings.effective_list_id,
            unsubscribe_url=issue.links.unsubscribe_url,
            unsubscribe_mailto_url=issue.links.unsubscribe_mailto,
            reply_to=self.settings.reply_to,
            signer=self.dkim,
        )
        return rendered, data


# ------------------------------------------------------------------ send


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
    errors: list[str] = field(default_factory=list)


def _envelope_sender(from_address: str) -> str:
    from email.utils import parseaddr

    return parseaddr(from_address)[1]


TransportFactory = Callable[[], Transport]


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
    ) -> None:
        self.engine, self.settings, self.editions = engine, settings, editions
        self.transports, self.clock = transports, clock
        self.worker_id = worker_id or worker_name()
        self.subscriber_ids = subscriber_ids  # None: everyone's ready deliveries
        self.limiter = limiter or RateLimiter(settings.rate_per_second, settings.rate_per_hour)
        self.breaker = breaker or CircuitBreaker(settings.max_consecutive_errors)
        self.sender = _envelope_sender(settings.from_address)
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
        most = max(1, self.settings.smtp_pool_size)
        stop = lambda: should_stop() or self.breaker.open  # noqa: E731
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
        if self.breaker.open:
            report.paused_reason = (
                f"{self.breaker.consecutive} consecutive send errors, "
                f"last: {self.breaker.last_error}"
            )
            log.error("sending paused: %s", report.paused_reason)
        log.log(
            logging.INFO if report.claimed else logging.DEBUG,  # an idle worker's poll: quiet
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
                with self._writing:
                    claimed = ledger.claim(
                        self.engine,
                        worker_id,
                        self.clock(),
                        self.settings.claim_size,
                        self.lease,
                        self.subscriber_ids,
                    )
                if not claimed:
                    return
                with self._lock:
                    report.claimed += len(claimed)
                members = self._load(claimed)
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

    def _renew(
        self, rest: Sequence[ledger.Claimed], worker_id: str, now: datetime
    ) -> tuple[set[int], datetime]:
        with self._writing:
            held = ledger.renew(self.engine, [d.id for d in rest], worker_id, now, self.lease)
        return held, now + self.lease

    def _release(self, rest: Sequence[ledger.Claimed], worker_id: str, report: SendReport) -> None:
        ids = [d.id for d in rest if d.id is not None]
        with self._writing:
            ledger.release(self.engine, ids, worker_id, self.clock())
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
        with self._writing:
            changed = recorder.record([outcome], worker_id, self.clock())
        if not changed:
            log.error(
                "delivery %s (%s): the outcome could not be recorded, its claim was lost "
                "while the message was in flight; raise lease_seconds",
                delivery.id,
                outcome.status,
            )
        with self._lock:
            _tally(report, outcome, delivery)
        if progress:
            progress(1)

    def _load(self, claimed: Sequence[ledger.Claimed]) -> dict[int, MemberView]:
        with self.engine.connect() as conn:
            members = catalog.members_by_id(conn, {d.subscriber_id for d in claimed}, self._topics)
        with self._lock:
            missing = {i for d in claimed for i in d.article_ids} - self._articles.keys()
        if missing:
            with Session(self.engine) as session:
                found = catalog.articles_by_id(session, missing)
            with self._lock:
                self._articles.update(found)
        return members

    def _prepare(
        self, delivery: ledger.Claimed, members: dict[int, MemberView]
    ) -> tuple[MemberView, bytes, datetime] | ledger.Outcome:
        """The message's bytes, or the failure that stops it before sending."""
        assert delivery.id is not None
        member = members.get(delivery.subscriber_id)
        if member is None or member.status != "active":
            status = member.status if member else "deleted"
            return ledger.Outcome(delivery.id, "failed", error=f"member is {status}; not sent")
        chosen = [self._articles[i] for i in delivery.article_ids if i in self._articles]
        if not chosen:
            return ledger.Outcome(delivery.id, "failed", error="its articles no longer exist")
        now = self.clock()
        try:
            _, data = self.editions.message_for(
                member, delivery.edition, chosen, delivery.message_id, now
            )
        except UnmailableAddress as exc:  # an old row's address: this delivery fails, clearly
            log.warning("delivery %s not composed: %s", delivery.id, exc)
            return ledger.Outcome(delivery.id, "failed", error=f"address not mailable: {exc}")
        except Exception as exc:  # a template bug fails this delivery, not the whole run
            log.exception("render failed for delivery %s", delivery.id)
            return ledger.Outcome(delivery.id, "failed", error=f"render failed: {exc}")
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
        finish = begin_send(transport, self.sender, member.email, data, delivery.message_id)
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
            log.debug("delivery %s to %s sent: %s", delivery.id, member.email, result.reply)
            return ledger.Outcome(delivery.id, "sent", result.code, result.reply, size_bytes=size)
        reason = f"{result.code or ''} {result.reply}".strip()
        if result.code in (421, 451):
            self.limiter.pushback()
        if not (result.permanent and result.code is not None):
            self.breaker.failure(reason)  # server or network trouble, not one bad address
        else:
            self.breaker.success()
        if result.permanent or delivery.attempts >= self.settings.max_attempts:
            log.warning("delivery %s to %s failed: %s", delivery.id, member.email, reason)
            return ledger.Outcome(
                delivery.id,
                "failed",
                result.code,
                result.reply,
                error=reason if result.permanent else f"attempts exhausted: {reason}",
                suppress_member="bounced" if result.hard_bounce else None,
                subscriber_id=delivery.subscriber_id,
            )
        retry_at = now + ledger.backoff(delivery.attempts, self.base)
        log.info(
            "delivery %s to %s will retry at %s: %s",
            delivery.id,
            member.email,
            retry_at.isoformat(),
            reason,
        )
        return ledger.Outcome(
            delivery.id, "retry", result.code, result.reply, error=reason, next_attempt_at=retry_at
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


def _tally(report: SendReport, outcome: ledger.Outcome, delivery: ledger.Claimed) -> None:
    if outcome.status == "sent":
        report.sent += 1
    elif outcome.status == "retry":
        report.retry += 1
    else:
        report.failed += 1
        report.errors.append(f"{delivery.edition} #{delivery.id}: {outcome.error}")
    if outcome.suppress_member == "bounced":
        report.bounced += 1


# ------------------------------------------------------------------ preview


@dataclass(frozen=True)
class Preview:
    member: MemberView
    edition: str
    articles: tuple[ArticleView, ...]
    rendered: Rendered
    message: bytes


def preview(
    engine: Engine,
    settings: Settings,
    editions: Editions,
    email: str,
    now: datetime,
    edition: str | None = None,
) -> Preview | None:
    """What ``email`` would get if their digest went out now; nothing is written.

    A planned but unsent edition is shown as planned; otherwise the next edition is selected
    exactly as planning would select it. With ``edition``, that recorded edition is rendered
    again (what the member got, or will get).
    """
    with Session(engine) as session:
        row = get_member(session, email)
        if row is None:
            raise LookupError(f"no such subscriber: {email}")
        member = catalog.member_views(session, [row])[0]
        query = select(Delivery).where(Delivery.subscriber_id == member.id)
        if edition is not None:
            query = query.where(Delivery.edition == edition)
        else:
            query = query.where(col(Delivery.status).in_(("planned", "retry", "sending")))
        pending = session.exec(query.order_by(col(Delivery.id))).first()
        if edition is not None and pending is None:
            raise LookupError(f"{email} has no edition {edition}")
        if pending is not None:
            articles = tuple(catalog.articles_by_id(session, pending.article_ids).values())
            articles = tuple(sorted(articles, key=lambda a: pending.article_ids.index(a.id)))
            edition_key, message_id = pending.edition, pending.message_id
        else:
            limits = limits_from(settings)
            candidates = catalog.candidate_articles(session, now, now - limits.max_age)
            past = ledger.member_history(session, [member.id]).get(member.id, ledger.History())
            upcoming = current_edition(member, now, settings, force=True)
            row_plan = plan_member(
                member,
                upcoming,
                past.last_window_end,
                candidates,
                now,
                limits,
                past.earliest_untaken_start,
                owed_from=past.owed_from,
                delivered=past.delivered,
            )
            by_id = {a.id: a for a in candidates}
            articles = tuple(by_id[i] for i in row_plan.article_ids)
            edition_key = upcoming.key
            message_id = ledger.new_message_id(f"preview.{upcoming.key}", settings.from_domain)
    if not articles:
        return None
    rendered, data = editions.message_for(member, edition_key, articles, message_id, now)
    return Preview(member, edition_key, articles, rendered, data)
