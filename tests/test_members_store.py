"""Members in the store: add, list, remove, addresses in every stored form, on every backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest import members
from digest.db import session_scope
from digest.members import store
from digest.models import Delivery, SubscriberTopic
from tests.member_helpers import EXAMPLE, HEADER, NOW, T0, stored, topics_of, write


def test_add_and_list_json(cli, engine: Engine) -> None:
    result = cli(
        "subscribers",
        "add",
        "Ann@Example.org",
        "--name",
        "Ann",
        "--topic",
        "Space;climate",
        "--topic",
        "Genetics",
        "--frequency",
        "weekly",
        "--timezone",
        "Asia/Kolkata",
        "--send-hour",
        "6",
        "--now",
        NOW,
    )
    assert result.exit_code == 0, result.output
    assert "Added ann@example.org" in result.output
    assert (
        cli(
            "subscribers", "add", "zed@example.com", "--topic", "Space", "--status", "pending"
        ).exit_code
        == 0
    )

    result = cli("subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["email"] for r in rows] == ["ann@example.org", "zed@example.com"]
    assert set(rows[0]) == {
        "email",
        "name",
        "status",
        "topics",
        "follows",
        "frequency",
        "timezone",
        "send_hour",
        "created_at",
    }
    assert rows[0] == {
        "email": "ann@example.org",
        "name": "Ann",
        "status": "active",
        "topics": ["climate", "Genetics", "Space"],
        "follows": [],
        "frequency": "weekly",
        "timezone": "Asia/Kolkata",
        "send_hour": 6,
        "created_at": "2025-03-01T09:00:00+00:00",
    }
    pending = cli("subscribers", "list", "--json", "--status", "pending").stdout.splitlines()
    assert [json.loads(x)["email"] for x in pending] == ["zed@example.com"]
    genetics = cli("subscribers", "list", "--json", "--topic", "GENETICS").stdout.splitlines()
    assert [json.loads(x)["email"] for x in genetics] == ["ann@example.org"]
    table = cli("subscribers", "list")
    assert "ann@example.org" in table.stdout and "zed@example.com" in table.stdout

    # Updating only touches the fields given.
    assert cli("subscribers", "add", "ann@example.org", "--send-hour", "9").exit_code == 0
    ann = stored(engine)["ann@example.org"]
    assert (ann.name, ann.frequency, ann.send_hour) == ("Ann", "weekly", 9)
    assert topics_of(engine, "ann@example.org") == {"space", "climate", "genetics"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-email", "--topic", "Space"], "field 'email': invalid address"),
        (
            ["a@example.org", "--topic", "Space", "--timezone", "Mars/Olympus"],
            "unknown time zone 'Mars/Olympus'",
        ),
        (["a@example.org", "--topic", "Space", "--send-hour", "24"], "24 is not a whole hour"),
        (["a@example.org"], "a new member needs at least one --topic"),
    ],
)
def test_add_bad_input(cli, engine: Engine, args: list[str], message: str) -> None:
    result = cli("subscribers", "add", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert stored(engine) == {}


@pytest.mark.parametrize(
    ("typed", "stored_as"),
    [
        ("Ann@xn--BCHER-kva.example", "ann@xn--bcher-kva.example"),
        ("ann@Bücher.example", "ann@xn--bcher-kva.example"),
    ],
)
def test_domain_is_stored_in_ascii_form(cli, engine: Engine, typed: str, stored_as: str) -> None:
    """A Unicode domain is kept as IDNA, the form the composer and SMTP can write."""
    result = cli("subscribers", "add", typed, "--topic", "Space")
    assert result.exit_code == 0, result.output
    assert list(stored(engine)) == [stored_as]
    assert members.normalize_email(typed) == stored_as
    assert cli("subscribers", "add", "ann@bücher.example", "--send-hour", "9").exit_code == 0
    assert list(stored(engine)) == [stored_as]  # the same member, however it is spelled


def test_non_ascii_local_part_is_refused_everywhere(cli, engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(members.MemberError) as info:
        members.normalize_email("josé@example.org", "x.csv: line 2")
    assert info.value.field == "email"
    assert "non-ASCII characters before the '@'" in str(info.value)
    result = cli("subscribers", "add", "josé@example.org", "--topic", "Space")
    assert result.exit_code == 2
    assert "field 'email': 'josé@example.org' has non-ASCII characters" in result.output
    path = write(tmp_path, HEADER + "a@example.org,A,Space,,,\nJosé@example.org,J,Space,,,\n")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "members.csv: line 3: field 'email': 'José@example.org' has non-ASCII" in result.output
    assert stored(engine) == {}


def _legacy_member(engine: Engine, email: str, status: str) -> None:
    """A row as stored before domains were kept in ASCII (straight in, past validation)."""
    with session_scope(engine) as session:
        member = store._new_member(members.MemberRecord(email=email), status, T0)
        session.add(member)


def test_rows_stored_with_a_unicode_domain_are_still_the_same_member(
    cli, engine: Engine, tmp_path: Path
) -> None:
    _legacy_member(engine, "gone@bücher.example", "unsubscribed")
    _legacy_member(engine, "here@bücher.example", "active")
    path = write(
        tmp_path,
        HEADER + "gone@xn--bcher-kva.example,G,Space,,,\nhere@xn--bcher-kva.example,H,Space,,,\n",
    )
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "(0 new, 1 updated, 1 suppressed left unchanged)" in result.output
    rows = stored(engine)
    assert set(rows) == {"gone@bücher.example", "here@xn--bcher-kva.example"}  # repaired
    assert rows["gone@bücher.example"].status == "unsubscribed"  # the "no" holds
    assert rows["here@xn--bcher-kva.example"].name == "H"
    result = cli("subscribers", "add", "gone@xn--bcher-kva.example", "--topic", "Space")
    assert result.exit_code == 2 and "unsubscribed" in result.output
    with Session(engine) as session:
        found = members.get_member(session, "Gone@Bücher.example")
        assert found is not None and found.email == "gone@bücher.example"


def test_add_refuses_to_reactivate_without_flag(cli, engine: Engine) -> None:
    assert cli("subscribers", "add", "a@example.org", "--topic", "Space").exit_code == 0
    assert cli("subscribers", "remove", "a@example.org", "--now", NOW).exit_code == 0
    result = cli("subscribers", "add", "a@example.org", "--topic", "Climate")
    assert result.exit_code == 2
    assert "unsubscribed" in result.output and "--reactivate" in result.output
    assert stored(engine)["a@example.org"].status == "unsubscribed"
    assert topics_of(engine, "a@example.org") == {"space"}
    result = cli("subscribers", "add", "a@example.org", "--topic", "Climate", "--reactivate")
    assert result.exit_code == 0, result.output
    member = stored(engine)["a@example.org"]
    assert member.status == "active" and member.unsubscribed_at is None
    assert topics_of(engine, "a@example.org") == {"climate"}


def test_remove_unsubscribes_and_forget_erases(cli, engine: Engine) -> None:
    assert cli("subscribers", "import", str(EXAMPLE), "--now", NOW).exit_code == 0
    result = cli("subscribers", "remove", "Bob.Nguyen@example.com", "--now", "2025-03-05T00:00:00Z")
    assert result.exit_code == 0, result.output
    bob = stored(engine)["bob.nguyen@example.com"]
    assert bob.status == "unsubscribed"
    assert bob.unsubscribed_at == datetime(2025, 3, 5, tzinfo=UTC)

    with session_scope(engine) as session:
        alice = members.get_member(session, "alice.hart@example.org")
        assert alice is not None and alice.id is not None
        alice_id = alice.id
        session.add(
            Delivery(
                subscriber_id=alice_id,
                edition="daily:2025-03-01",
                message_id="<m1@example.org>",
                due_at=T0,
                window_start=T0,
                window_end=T0,
                planned_at=T0,
                updated_at=T0,
            )
        )
    result = cli("subscribers", "remove", "alice.hart@example.org", "--forget")
    assert result.exit_code == 0, result.output
    assert "alice.hart@example.org" not in stored(engine)
    with Session(engine) as session:
        assert session.exec(select(Delivery).where(Delivery.subscriber_id == alice_id)).all() == []
        assert (
            session.exec(
                select(SubscriberTopic).where(SubscriberTopic.subscriber_id == alice_id)
            ).all()
            == []
        )
    assert len(stored(engine)) == 5

    result = cli("subscribers", "remove", "nobody@example.org")
    assert result.exit_code == 2
    assert "no such subscriber" in result.output
