"""What the member tests share: the example list, a CSV writer and readers of stored rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from digest import members
from digest.models import Subscriber

EXAMPLE = Path(__file__).resolve().parent.parent / "subscribers" / "example.csv"
NOW = "2025-03-01T09:00:00Z"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HEADER = "email,name,topics,frequency,timezone,send_hour\n"


def write(tmp_path: Path, text: str, name: str = "members.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def stored(engine: Engine) -> dict[str, Subscriber]:
    with Session(engine) as session:
        return {m.email: m for m in session.exec(select(Subscriber))}


def topics_of(engine: Engine, email: str) -> set[str]:
    with Session(engine) as session:
        member = members.get_member(session, email)
        assert member is not None and member.id is not None
        return members.member_topic_slugs(session, [member.id]).get(member.id, set())
