"""The audit log: who changed what, when. Every change an editor makes is written here in
the same transaction as the change itself, so there is no change without its entry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlmodel import Session, col, select

from digest.models import AuditEntry

#: Longest detail kept: a note, not a copy of the data.
MAX_DETAIL = 2000

AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail")


def record(
    session: Session, actor: str, action: str, target: str, now: datetime, detail: str = ""
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor[:320],
            action=action[:50],
            target=target[:2048],
            detail=detail[:MAX_DETAIL],
        )
    )


def recent(session: Session, limit: int | None = 200) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def rows(session: Session) -> Iterator[tuple[str, str, str, str, str]]:
    """Every entry, newest first, as CSV-ready rows (``AUDIT_COLUMNS``)."""
    for entry in session.exec(
        select(AuditEntry).order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
    ).yield_per(1000):
        yield (entry.at.isoformat(), entry.actor, entry.action, entry.target, entry.detail)
