"""Member rules: validation and normalisation of every field, pure."""

from __future__ import annotations

import pytest

from digest import members
from digest.members import parse_profile


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


def test_a_form_reports_every_field_it_refuses() -> None:
    record, errors = parse_profile(
        dict(
            name="", frequency="", email="not an address", timezone="Mars/Olympus", send_hour="25"
        ),
        ["nope"],
        {"space": "Space"},
    )
    assert record is None
    assert {e.field for e in errors} == {"email", "topics", "timezone", "send_hour"}
