"""Member rules: validation and normalisation of every field, pure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
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


def test_parse_member_defaults_and_normalisation() -> None:
    record = members.parse_member(
        {
            "email": " Ann.Lee@Example.ORG ",
            "name": " Ann\r\n  Lee\t",
            "topics": "stem  cells; Stem Cells;;Space",
        },
        "x.csv: line 2",
    )
    assert record == members.MemberRecord(
        email="ann.lee@example.org",
        name="Ann Lee",
        topics=("stem cells", "Space"),
        frequency="daily",
        timezone="UTC",
        send_hour=7,
    )
    record = members.parse_member(
        {
            "email": "b@example.com",
            "frequency": "WEEKLY",
            "timezone": "europe/london",
            "send_hour": "0",
        },
        "w",
    )
    assert (record.frequency, record.timezone, record.send_hour) == ("weekly", "Europe/London", 0)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("email", "not-an-address", "field 'email': invalid address 'not-an-address'"),
        ("email", "", "field 'email': missing"),
        ("timezone", "Mars/Olympus", "field 'timezone': unknown time zone 'Mars/Olympus'"),
        ("send_hour", "24", "field 'send_hour': 24 is not a whole hour"),
        ("send_hour", "7.5", "field 'send_hour': '7.5' is not a whole hour"),
        ("frequency", "hourly", "field 'frequency': 'hourly' is not one of daily, weekly"),
        ("name", "x" * 201, "field 'name': longer than 200 characters"),
    ],
)
def test_parse_member_errors(field: str, value: str, fragment: str) -> None:
    row = {"email": "ok@example.org", field: value}
    with pytest.raises(members.MemberError) as info:
        members.parse_member(row, "members.csv: line 4")
    assert str(info.value).startswith("members.csv: line 4: ")
    assert fragment in str(info.value)
    assert info.value.field == field
