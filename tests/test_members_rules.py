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


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("Ann@Mail.TEST", "ann@mail.test"), ("bo@y.invalid", "bo@y.invalid"),
     ("cy@z.localhost", "cy@z.localhost"), ("dee@localhost", "dee@localhost")],
)  # fmt: skip
def test_reserved_names_that_reach_nobody_are_members_too(typed: str, stored: str) -> None:
    """The names the postal-address rule exempts (what tests and demos send to) are taken,
    though the validator refuses them for real mail."""
    assert members.normalize_email(typed) == stored


@pytest.mark.parametrize(
    "typed",
    ["two..dots@mail.test", "a b@mail.test", "x@.test", "@mail.test", "x@[127.0.0.1]",
     "x@mail.onion", "x@intranet", "x@mail.local"],
)  # fmt: skip
def test_reserved_names_get_every_other_check(typed: str) -> None:
    with pytest.raises(members.MemberError, match="invalid address"):
        members.normalize_email(typed)


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


def test_a_member_has_at_most_max_topics() -> None:
    names = [f"Topic {i}" for i in range(51)]
    assert len(members.parse_topics(names[:50])) == 50  # the default limit
    with pytest.raises(members.MemberError) as caught:
        members.parse_topics(names, "m.csv: line 2")
    assert str(caught.value) == (
        "m.csv: line 2: field 'topics': 51 topics; a member has at most 50 "
        "(setting max_topics_per_member)"
    )
    assert len(members.parse_topics(names, max_topics=60)) == 51
    row = {"email": "a@example.org", "topics": "; ".join(names[:3])}
    with pytest.raises(members.MemberError, match="at most 2"):
        members.parse_member(row, "line 2", max_topics=2)
    with pytest.raises(members.MemberError, match="at most 2"):
        members.parse_changes("a@example.org", "add", topics=names[:3], max_topics=2)
    offered = {f"t{i}": f"Topic {i}" for i in range(5)}
    form = {"email": "a@example.org"}
    record, errors = members.parse_profile(form, list(offered), offered, 4)
    assert record is None and [(e.field, e.code) for e in errors] == [("topics", "too_many_topics")]
    assert "at most 4" in errors[0].message
