"""Resources in the store: made from mentions, found by any name, merged, renamed, followed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.archive import store
from digest.catalog import articles_by_id
from digest.ingest import upsert_articles
from digest.ingest.records import build_record
from digest.models import Mention, Subscriber, SubscriberResource

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)


def record(n: int, mentions: list[dict[str, Any]], **extra: Any) -> Any:
    rec, errors = build_record(
        {
            "url": f"https://news.example.org/{n}",
            "title": f"Article {n}",
            "published_at": (NOW - timedelta(days=n)).isoformat(),
            "key_points": [f"Point of article {n}."],
            "topics": ["Science"],
            "mentions": mentions,
            **extra,
        }
    )
    assert not errors and rec is not None
    return rec


def member(session: Session, email: str) -> int:
    row = Subscriber(email=email, created_at=NOW, updated_at=NOW)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def test_the_same_name_in_two_articles_is_one_resource_with_the_latest_description(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        upsert_articles(
            session,
            [
                record(1, [{"name": "Keio University", "description": "A university."}]),
                record(
                    2,
                    [
                        {
                            "name": "keio  university",
                            "description": "Private university in Tokyo, Japan.",
                            "kind": "organization",
                            "url": "https://www.keio.ac.jp/en/",
                        },
                        {"name": "Hideyuki Okano", "kind": "person"},
                    ],
                ),
                record(3, [{"name": "KEIO UNIVERSITY", "description": ""}]),
            ],
            NOW,
        )
        session.commit()
        rows = {r.slug: r for r in store.list_resources(session)}
    assert set(rows) == {"keio-university", "hideyuki-okano"}
    keio = rows["keio-university"]
    assert keio.name == "Keio University" and keio.articles == 3
    assert keio.description == "Private university in Tokyo, Japan."  # an empty one never wins
    assert keio.kind == "organisation" and keio.url == "https://www.keio.ac.jp/en/"
    assert rows["hideyuki-okano"].kind == "person" and rows["hideyuki-okano"].articles == 1


def test_slugs_stay_unique_for_names_that_only_look_alike(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_articles(session, [record(1, [{"name": "Jose Ruiz"}, {"name": "José Ruiz"}])], NOW)
        session.commit()
        slugs = sorted(r.slug for r in store.list_resources(session))
    assert slugs == ["jose-ruiz", "jose-ruiz-2"]


def test_merge_moves_articles_followers_names_and_slug(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_articles(
            session,
            [
                record(1, [{"name": "Keio Univ.", "description": "Old text."}]),
                record(2, [{"name": "Keio University"}, {"name": "Keio Univ."}]),
            ],
            NOW,
        )
        a, b = member(session, "a@example.org"), member(session, "b@example.org")
        source = store.find_resource(session, "keio univ.")
        target = store.find_resource(session, "Keio University")
        assert source and target and source.id and target.id
        store.set_follows(session, {a: [source.id], b: [source.id, target.id]})
        moved = store.merge(session, source, target, NOW)
        session.commit()
        assert sorted(moved) == sorted(store.mentioned_article_ids(session, [target.id]))
        follows = session.exec(select(SubscriberResource)).all()
        assert sorted((f.subscriber_id, f.resource_id) for f in follows) == [
            (a, target.id),
            (b, target.id),
        ]
        assert {m.resource_id for m in session.exec(select(Mention))} == {target.id}
        # the old name and the old slug lead to the merged resource
        assert store.find_resource(session, "KEIO UNIV.").id == target.id  # type: ignore[union-attr]
        assert store.find_resource(session, "keio-univ").id == target.id  # type: ignore[union-attr]
        row = store.resource_row(session, target)
        assert row.articles == 2 and row.description == "Old text."
        # an article naming both lists the resource once
        views = articles_by_id(session, store.article_ids(session, target.id)[0])
        assert all(len(v.mentions) == 1 for v in views.values())
        # a later import of the old name joins the merged resource, no new one
        upsert_articles(session, [record(3, [{"name": "Keio Univ."}])], NOW)
        session.commit()
        assert [r.slug for r in store.list_resources(session)] == ["keio-university"]
        with pytest.raises(store.ResourceError):
            store.merge(session, target, target, NOW)


def test_rename_keeps_the_slug_and_the_old_name_and_refuses_a_clash(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_articles(session, [record(1, [{"name": "H. Okano"}, {"name": "Keio"}])], NOW)
        okano = store.find_resource(session, "H. Okano")
        assert okano is not None
        store.rename(session, okano, "  Hideyuki   Okano ", NOW)
        session.commit()
        found = store.find_resource(session, "h. okano")
        assert found is not None and found.name == "Hideyuki Okano" and found.slug == "h-okano"
        with pytest.raises(store.ResourceError, match="merge"):
            store.rename(session, okano, "KEIO", NOW)
        with pytest.raises(store.ResourceError, match="empty"):
            store.rename(session, okano, "  ", NOW)


def test_follow_and_unfollow_one(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_articles(session, [record(1, [{"name": "Keio"}])], NOW)
        keio = store.find_resource(session, "keio")
        assert keio and keio.id
        m = member(session, "a@example.org")
        assert store.follow(session, m, keio.id) is True
        assert store.follow(session, m, keio.id) is False
        assert [r.name for r in store.follows_of(session, [m])[m]] == ["Keio"]
        assert store.follower_count(session, keio.id) == 1
        assert store.follow(session, m, keio.id, on=False) is True
        assert store.follows_of(session, [m]) == {}
        assert store.resolve_names(session, ["keio", "nobody", "KEIO"]) == ([keio.id], ["nobody"])
