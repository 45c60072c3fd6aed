"""Schema upgrades keep the data: a store made by the previous revision, with rows, upgraded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from digest.db import (
    SchemaOutOfDate,
    create_schema,
    current_revision,
    head_revision,
    make_engine,
    upgrade_schema,
)
from digest.models import Delivery, Subscriber
from tests.conftest import CLI

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)


def fill_revision_0001(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriber (id, email, name, status, frequency, timezone, send_hour,"
                " created_at, updated_at) VALUES (1, 'ada@example.org', 'Ada', 'active', 'daily',"
                " 'UTC', 7, :now, :now)"
            ),
            {"now": NOW.replace(tzinfo=None)},
        )
        conn.execute(
            text(
                "INSERT INTO delivery (id, subscriber_id, edition, status, message_id, due_at,"
                " window_start, window_end, article_ids, attempts, planned_at, updated_at)"
                " VALUES (1, 1, 'daily:2026-11-24', 'sent', '<m1@example.org>', :now, :now,"
                " :now, '[3, 4]', 1, :now, :now)"
            ),
            {"now": NOW.replace(tzinfo=None)},
        )


def test_upgrade_from_previous_revision_keeps_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_schema(engine, "0001")
    assert current_revision(engine) == "0001"
    assert "size_bytes" not in {c["name"] for c in inspect(engine).get_columns("delivery")}
    fill_revision_0001(engine)
    # The current code refuses to work on an old schema, and says what to do.
    with pytest.raises(SchemaOutOfDate, match="digest db upgrade"):
        create_schema(engine)
    before, after = upgrade_schema(engine)
    assert (before, after) == ("0001", head_revision(engine))
    with Session(engine) as session:
        member = session.exec(select(Subscriber)).one()
        delivery = session.exec(select(Delivery)).one()
    assert member.email == "ada@example.org"
    assert delivery.article_ids == [3, 4] and delivery.status == "sent"
    assert delivery.message_id == "<m1@example.org>" and delivery.size_bytes is None
    assert inspect(engine).has_table("scheduler_state")
    engine.dispose()


def test_db_upgrade_command(cli: CLI, db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_schema(engine, "0001")
    engine.dispose()
    blocked = cli("deliveries", "list")
    assert blocked.exit_code == 2 and "digest db upgrade" in blocked.output
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "from 0001 to" in result.stdout
    assert cli("db", "upgrade").stdout.strip().endswith(f"already at {head_revision(engine)}")
    assert cli("db", "status").exit_code == 0
    bogus = cli("db", "upgrade", "--revision", "bogus")
    assert bogus.exit_code == 2 and "--revision bogus: Can't locate revision" in bogus.output


def test_processes_starting_together_on_a_fresh_store_all_get_the_schema(db_url: str) -> None:
    """Four workers started at once on an empty database: one creates it, the rest wait."""
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        engine = make_engine(db_url)
        try:
            create_schema(engine)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "schema creation deadlocked"
    assert errors == []
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


def test_upgrade_to_delivery_events_keeps_rows(db_url: str) -> None:
    """A store at 0002 (scheduler state, sizes) with rows gains the event, nonce and brake
    tables; its members and deliveries are as they were, and events can name them."""
    from datetime import timedelta

    from digest.feedback import store
    from digest.models import HARD_BOUNCE

    engine = make_engine(db_url)
    upgrade_schema(engine, "0002")
    fill_revision_0001(engine)
    assert not inspect(engine).has_table("delivery_event")
    upgrade_schema(engine)
    assert {"delivery_event", "webhook_nonce", "sending_state"} <= set(
        inspect(engine).get_table_names()
    )
    with Session(engine) as session:
        delivery = session.exec(select(Delivery)).one()
        assert delivery.message_id == "<m1@example.org>" and delivery.status == "sent"
        found = store.delivery_by_message_id(session, "m1@example.org")
        assert found is not None and found.email == "ada@example.org"
        event_id = store.insert_event(
            session,
            store.NewEvent("mail:abc", HARD_BOUNCE, "smtp", NOW, NOW + timedelta(hours=1), 1, 1),
        )
        session.commit()
        assert event_id is not None
        assert store.events_by_delivery(session, [1])[1][0].kind == HARD_BOUNCE
    engine.dispose()


def test_upgrade_to_the_archive_makes_resources_and_search_rows_from_existing_mentions(
    db_url: str,
) -> None:
    """A store at 0004 with articles and mentions: each name becomes one resource (the last
    non-empty description wins), mentions link to it, and every article is searchable."""
    from digest.archive import search, store

    engine = make_engine(db_url)
    upgrade_schema(engine, "0004_newsroom")
    naive = NOW.replace(tzinfo=None)
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO article (id, url, title, published_at, first_seen_at, updated_at,"
                    " key_points, summary, content_hash) VALUES (:id, :url, :title, :now, :now,"
                    " :now, :points, 'A summary', '')"
                ),
                {
                    "id": n,
                    "url": f"https://e.example/{n}",
                    "title": f"Article {n}",
                    "now": naive,
                    "points": '["First point.", "Second point about immunosuppressants."]',
                },
            )
        conn.execute(
            text(
                "INSERT INTO mention (article_id, position, name, description) VALUES"
                " (1, 0, 'Keio University', 'Old.'), (2, 0, 'keio  university', 'In Tokyo.'),"
                " (2, 1, 'Keio University', '')"
            )
        )
    upgrade_schema(engine)
    with Session(engine) as session:
        rows = store.list_resources(session)
        assert [(r.slug, r.name, r.description, r.articles) for r in rows] == [
            ("keio-university", "Keio University", "In Tokyo.", 2)
        ]
        found = search.search(session, "immunosuppressants", member=True, limit=10)
        assert sorted(h.article_id for h in found.hits) == [1, 2]
        assert search.search(session, "keio", member=False, limit=10).total == 2
    engine.dispose()
