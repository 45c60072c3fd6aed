"""The audit log: entries in order, bounded details, CSV-ready rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from digest.db import session_scope
from digest.editors import audit

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_record_and_read_back_newest_first(engine: Engine) -> None:
    with session_scope(engine) as session:
        audit.record(session, "a@example.org", "article-edit", "https://x.example/1", NOW, "title")
        audit.record(
            session, "b@example.org", "article-retract", "https://x.example/2",
            NOW + timedelta(minutes=1), "y" * 5000,
        )  # fmt: skip
    with Session(engine) as session:
        entries = audit.recent(session)
        rows = list(audit.rows(session))
    assert [e.action for e in entries] == ["article-retract", "article-edit"]
    assert len(entries[0].detail) == audit.MAX_DETAIL
    assert rows[1] == (
        NOW.isoformat(),
        "a@example.org",
        "article-edit",
        "https://x.example/1",
        "title",
    )
