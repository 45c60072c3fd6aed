"""Planning at scale gives what the simple definitions give, on a random store.

``plan`` reads members as plain rows in id ranges and selects through ``CandidateIndex``;
here both are checked against the straightforward versions (ORM reads, the full scan of
``select_articles``) on members with every kind of history, zone, rhythm and topic set.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from digest import plan as planning
from digest.content import ArticleView, MemberView
from digest.selection import Limits, select_articles
from digest.settings import Settings
from tests.random_store import NOW, seed_random


class ScanIndex:
    """``CandidateIndex``'s interface over the plain scan: the definition of a selection."""

    def __init__(self, candidates: list[ArticleView]) -> None:
        self.candidates = list(candidates)

    def select(
        self, member: MemberView, start: datetime, end: datetime, now: datetime, limits: Limits
    ) -> tuple[ArticleView, ...]:
        return select_articles(member, self.candidates, start, end, now, limits)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_plan_selects_what_the_scan_selects(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch, force: bool, seed: int
) -> None:
    seed_random(engine, seed)
    settings = settings.replace(batch_size=50, max_items=4)
    reports: list[Any] = []
    for index in (planning.CandidateIndex, ScanIndex):
        monkeypatch.setattr(planning, "CandidateIndex", index)
        for now in (NOW, NOW + timedelta(hours=9)):
            reports.append(planning.plan(engine, settings, now, dry_run=True, force=force))
    indexed, scanned = reports[:2], reports[2:]
    assert indexed == scanned
    items = [item for report in indexed for item in report.items]
    assert sum(report.planned for report in indexed) > 30
    sizes = {len(item.articles) for item in items}
    assert 4 in sizes and sizes & {1, 2, 3}  # capped selections and short ones
    if not force:
        assert sum(r.not_due + r.too_soon + r.skipped_stale for r in indexed) > 0
