"""The ledger is the queue: unique editions, claims with leases, outcomes only by the holder."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from digest import ledger
from digest.db import session_scope
from digest.models import Delivery, Subscriber

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def add_member(engine: Engine, email: str = "a@example.org") -> int:
    with session_scope(engine) as session:
        m = Subscriber(email=email, name="A", created_at=NOW, updated_at=NOW)
        session.add(m)
        session.flush()
        assert m.id is not None
        return m.id


def row(
    member_id: int, edition: str = "daily:2026-11-24", ids: tuple[int, ...] = (1, 2)
) -> ledger.PlannedRow:
    return ledger.PlannedRow(
        subscriber_id=member_id,
        edition=edition,
        status="planned",
        due_at=NOW,
        window_start=NOW - timedelta(days=1),
        window_end=NOW,
        article_ids=ids,
    )


def test_edition_unique_per_member_in_the_schema(engine: Engine) -> None:
    member_id = add_member(engine)
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(member_id)], "example.org", NOW)
    # insert_rows ignores the duplicate ...
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(member_id)], "example.org", NOW)
    # ... because the database refuses it, not because Python checked first.
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(
            Delivery(
                subscriber_id=member_id,
                edition="daily:2026-11-24",
                message_id="<x@y>",
                due_at=NOW,
                window_start=NOW,
                window_end=NOW,
                planned_at=NOW,
                updated_at=NOW,
            )
        )
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert len(rows) == 1
    assert rows[0].article_ids == [1, 2]
    assert rows[0].message_id.endswith("@example.org>")
    assert rows[0].window_end == NOW  # aware UTC round trip


def test_claim_lease_expiry_and_holder_only_records(engine: Engine) -> None:
    member_id = add_member(engine)
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(member_id)], "example.org", NOW)
    first = ledger.claim(engine, "w1", NOW, 10, LEASE)
    assert [d.status for d in first] == ["sending"] and first[0].attempts == 1
    assert ledger.claim(engine, "w2", NOW + timedelta(minutes=1), 10, LEASE) == []
    # w1 "crashes"; once the lease has expired w2 takes the delivery with the same Message-ID.
    second = ledger.claim(engine, "w2", NOW + timedelta(minutes=6), 10, LEASE)
    assert [d.id for d in second] == [first[0].id]
    assert second[0].message_id == first[0].message_id and second[0].attempts == 2
    # The late w1 cannot overwrite what w2 now holds.
    ledger.record(engine, [ledger.Outcome(first[0].id, "failed", error="late")], "w1", NOW)
    ledger.record(engine, [ledger.Outcome(first[0].id, "sent", 250, "ok")], "w2", NOW)
    with Session(engine) as session:
        d = session.get(Delivery, first[0].id)
        assert d is not None and d.status == "sent" and d.error is None and d.sent_at == NOW


def test_recorder_writes_what_record_writes_and_only_for_the_holder(engine: Engine) -> None:
    """The lanes' driver-level writer and the Core ``record`` leave identical rows."""
    ids = [add_member(engine, f"m{i}@example.org") for i in range(4)]
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(i) for i in ids], "example.org", NOW)
    claimed = ledger.claim(engine, "w", NOW, 10, LEASE)
    later = NOW + timedelta(minutes=10)
    outcomes = [
        ledger.Outcome(0, "sent", 250, "queued", size_bytes=1234),
        ledger.Outcome(0, "retry", 451, "try later", "451 try later", later),
    ]
    recorder = ledger.Recorder(engine)
    try:
        for i, o in enumerate(outcomes):
            a, b = claimed[2 * i], claimed[2 * i + 1]
            ledger.record(engine, [replace(o, delivery_id=a.id)], "w", NOW)
            recorder.record([replace(o, delivery_id=b.id)], "w", NOW)
        recorder.record([ledger.Outcome(claimed[0].id, "failed", error="late")], "other", NOW)
    finally:
        recorder.close()

    def shape(d: Delivery) -> tuple[object, ...]:
        return (d.status, d.smtp_code, d.smtp_reply, d.error, d.lease_until,
                d.next_attempt_at, d.sent_at, d.updated_at, d.size_bytes)  # fmt: skip

    with Session(engine) as session:
        rows = {d.id: d for d in session.exec(select(Delivery)).all()}
        got = [shape(rows[c.id]) for c in claimed]
    assert got[0] == got[1] == ("sent", 250, "queued", None, None, None, NOW, NOW, 1234)
    assert got[2] == got[3] == ("retry", 451, "try later", "451 try later", None, later, None,
                                NOW, None)  # fmt: skip
    assert rows[claimed[0].id].sent_at.tzinfo is not None


def test_retry_waits_for_backoff_and_release_returns_claims(engine: Engine) -> None:
    member_id = add_member(engine)
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(member_id)], "example.org", NOW)
    (d,) = ledger.claim(engine, "w", NOW, 10, LEASE)
    later = NOW + timedelta(minutes=10)
    ledger.record(engine, [ledger.Outcome(d.id, "retry", 451, "try later", "451", later)], "w", NOW)
    assert ledger.claim(engine, "w", NOW + timedelta(minutes=9), 10, LEASE) == []
    (again,) = ledger.claim(engine, "w", later, 10, LEASE)
    ledger.release(engine, [again.id], "w", later)
    with Session(engine) as session:
        back = session.get(Delivery, d.id)
        assert back is not None and back.status == "planned" and back.attempts == 1


def test_last_window_end_ignores_failed_and_skipped(engine: Engine) -> None:
    member_id = add_member(engine)
    with session_scope(engine) as session:
        ledger.insert_rows(
            session, [row(member_id, "daily:2026-11-23")], "example.org", NOW - timedelta(days=1)
        )
        session.exec(select(Delivery)).one().status = "failed"
    with Session(engine) as session:
        history = ledger.member_history(session, [member_id])
        assert history[member_id].last_window_end is None


def test_backoff_grows_and_is_bounded() -> None:
    import random

    rng = random.Random(1)
    base = timedelta(seconds=60)
    waits = [ledger.backoff(n, base, rng) for n in range(1, 6)]
    for n, wait in enumerate(waits, start=1):
        ceiling = base * 2 ** (n - 1)
        assert ceiling / 2 <= wait <= ceiling
    assert ledger.backoff(40, base, rng) <= timedelta(days=1)


def test_insert_rows_writes_every_column_and_counts_only_new_rows(engine: Engine) -> None:
    """The bulk insert converts each value as the ORM would, shared values included."""
    members = [add_member(engine, f"m{i}@example.org") for i in range(3)]
    east = timezone(timedelta(hours=5))
    rows = [
        row(members[0], ids=(3, 1, 2)),
        row(members[1], ids=(3, 1, 2)),  # the same selection and times as the first
        ledger.PlannedRow(
            members[2],
            "weekly:2026-W48",
            "skipped",
            due_at=(NOW - timedelta(hours=1)).astimezone(east),
            window_start=NOW - timedelta(days=7, microseconds=5),
            window_end=NOW,
            article_ids=(),
            error="empty: nothing",
        ),
    ]
    with session_scope(engine) as session:
        assert ledger.insert_rows(session, rows, "example.org", NOW) == 3
    with session_scope(engine) as session:
        again = [*rows, row(members[2])]
        assert ledger.insert_rows(session, again, "example.org", NOW) == 1
    with Session(engine) as session:
        got = {(d.subscriber_id, d.edition): d for d in session.exec(select(Delivery)).all()}
    assert len(got) == 4
    first, second = got[members[0], "daily:2026-11-24"], got[members[1], "daily:2026-11-24"]
    for d in (first, second):
        assert (d.status, d.article_ids, d.error, d.attempts) == ("planned", [3, 1, 2], None, 0)
        assert (d.due_at, d.window_start, d.window_end) == (NOW, NOW - timedelta(days=1), NOW)
        assert d.next_attempt_at == NOW and d.planned_at == NOW and d.updated_at == NOW
    assert first.message_id != second.message_id
    skipped = got[members[2], "weekly:2026-W48"]
    assert skipped.status == "skipped" and skipped.article_ids == []
    assert skipped.error == "empty: nothing" and skipped.next_attempt_at is None
    assert skipped.due_at == NOW - timedelta(hours=1) and skipped.due_at.tzinfo == UTC
    assert skipped.window_start == NOW - timedelta(days=7, microseconds=5)


def test_history_and_existing_editions_for_sparse_and_dense_ids(engine: Engine) -> None:
    """A run of ids is read as one range, scattered ids by IN; both keep only what was asked."""
    members = [add_member(engine, f"m{i}@example.org") for i in range(6)]
    with session_scope(engine) as session:
        ledger.insert_rows(session, [row(m) for m in members], "example.org", NOW)
    pairs = [(m, "daily:2026-11-24") for m in members]
    with Session(engine) as session:
        for chosen in (members[1:4], members[0:4:2], [members[0], members[5]], [members[5]], []):
            wanted = [p for p in pairs if p[0] in chosen] + [(members[2], "daily:2026-11-25")]
            expected = {p for p in wanted if p[1] == "daily:2026-11-24"}
            assert ledger.existing_editions(session, wanted) == expected
            history = ledger.member_history(session, chosen)
            assert set(history) == set(chosen)
            assert all(h.last_window_end == NOW for h in history.values())


def test_message_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    """Time-ordered ids keep the unique index appending at its end (a million-row plan)."""
    ticks = iter(range(10**12, 10**12 + 10**9, 250_000))  # a quarter of a millisecond apart
    ids = [
        ledger.new_message_id("daily:2026-11-24", "example.org", lambda: next(ticks))
        for _ in range(400)
    ]
    assert len(set(ids)) == 400
    assert all(re.fullmatch(r"<daily\.2026-11-24\.[0-9a-f]{32}@example\.org>", i) for i in ids)
    # Across milliseconds the time decides the order; within one, the random part does.
    assert ids[::4] == sorted(ids[::4])
    assert len({i[:30] for i in ids}) == 100


def test_delivery_edition_names_what_a_delivery_is(engine: Engine) -> None:
    with session_scope(engine) as session:
        member = Subscriber(email="ann@example.org", created_at=NOW, updated_at=NOW)
        session.add(member)
        session.flush()
        rows = []
        for edition, status in (("daily:2026-11-23", "sent"), ("daily:2026-11-24", "skipped")):
            row = Delivery(
                subscriber_id=member.id, edition=edition, status=status,
                message_id=f"<{edition}@x>", due_at=NOW, window_start=NOW, window_end=NOW,
                article_ids=[3, 1], planned_at=NOW, updated_at=NOW,
            )  # fmt: skip
            session.add(row)
            rows.append(row)
        session.flush()
        sent_id, skipped_id, member_id = rows[0].id, rows[1].id, member.id
    with Session(engine) as session:
        found = ledger.delivery_edition(session, sent_id)
        assert found == ledger.RecordedEdition(
            "daily:2026-11-23", "<daily:2026-11-23@x>", (3, 1), sent_id, member_id
        )
        assert ledger.delivery_edition(session, skipped_id) is None  # never went out
        assert ledger.delivery_edition(session, 10_000) is None
