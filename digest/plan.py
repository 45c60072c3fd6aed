"""Planning: which edition each due member gets, with which articles, written to the ledger.

Selection and scheduling decisions are pure functions (``schedule``, ``selection``); this
stage reads the candidates and members (``catalog``), the members' history and writes the
planned rows (``ledger``). Members are streamed in batches: memory holds one batch whatever
their number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from digest import catalog, ledger
from digest.content import ArticleView, MemberView
from digest.db import session_scope
from digest.members.rules import lookup_emails
from digest.schedule import PERIODS, Edition, current_edition, is_stale, too_soon
from digest.selection import CandidateIndex, Limits, select_articles, window_start_for
from digest.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PlanItem:
    email: str
    edition: str
    status: str  # ledger.PLANNED or ledger.SKIPPED
    reason: str | None
    articles: tuple[ArticleView, ...]

    @property
    def planned(self) -> bool:
        """Whether the edition goes out (else it is skipped, ``reason`` says why)."""
        return self.status == ledger.PLANNED


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

    #: The counts a summary shows, in this order.
    def summary(self) -> dict[str, int]:
        """What the run did, for logs and the scheduler's record of its runs."""
        return {
            "members": self.members,
            ledger.PLANNED: self.planned,
            "skipped_empty": self.skipped_empty,
            "skipped_stale": self.skipped_stale,
        }


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
            edition = current_edition(
                member.frequency,
                member.timezone,
                member.send_hour,
                self.now,
                self.settings.weekly_weekday,
                force=self.force,
            )
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
        status=ledger.PLANNED if articles else ledger.SKIPPED,
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
    # the stored forms of each address, however it was typed (case, Unicode or ASCII domain)
    stored = None if emails is None else [f for e in emails for f in lookup_emails(e)]
    for batch in catalog.member_batches(engine, settings.batch_size, emails=stored):
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
                if row.status == ledger.PLANNED:
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
        status=ledger.SKIPPED,
        due_at=edition.due_at,
        window_start=edition.due_at,
        window_end=edition.due_at,
        article_ids=(),
        error=f"stale: due {edition.due_at.isoformat()}, not sent in time; "
        "its articles stay eligible for the next edition",
    )
