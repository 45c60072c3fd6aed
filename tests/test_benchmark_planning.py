"""The planning benchmark's own parts: sizes, the synthetic store, one result per size."""

from __future__ import annotations

import argparse
import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, func, select

from benchmarks import send
from digest.db import create_schema, make_engine
from digest.models import Subscriber, SubscriberTopic, Topic


def test_plan_sizes_take_one_count_or_a_list() -> None:
    assert send.plan_sizes("100000") == [100000]
    assert send.plan_sizes("10000,100000,1_000_000") == [10000, 100000, 1000000]
    with pytest.raises(argparse.ArgumentTypeError):
        send.plan_sizes("10,0")
    with pytest.raises(ValueError):
        send.plan_sizes("ten")


def _listed_topic_sets(rng: random.Random, members: int) -> list[tuple[str, ...]]:
    """The generator as it was (one list, weights recomputed per draw): the data must not move."""
    names, weights = send.topic_names(), send._zipf_weights(send.TOPICS)
    out = []
    for _ in range(members):
        k, chosen = rng.randint(1, 6), set()
        while len(chosen) < k:
            chosen.add(rng.choices(names, weights)[0])
        out.append(tuple(sorted(chosen)))
    return out


def test_seeded_members_are_the_same_data_streamed(tmp_path: Path) -> None:
    members = send.SEED_CHUNK + 1234  # more than one chunk
    engine = send.make_store(tmp_path / "store.db", members, distinct=False)
    rng = random.Random(20261124)
    fresh = make_engine(f"sqlite:///{tmp_path / 'articles.db'}")
    create_schema(fresh)
    send.seed_articles(fresh, rng)  # the draws make_store takes before the members'
    fresh.dispose()
    expected = _listed_topic_sets(rng, members)
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == members
        created = session.exec(select(func.min(Subscriber.created_at))).one()
        assert created == send.NOW - timedelta(days=30)  # stored as the ORM stores it
        last = session.exec(select(Subscriber).order_by(col(Subscriber.id).desc())).first()
        assert last is not None and last.email == f"m{members - 1:07d}@example.org"
        topic_names = dict(session.exec(select(Topic.id, Topic.name)).all())
        got: dict[int, list[str]] = {}
        for member_id, topic_id in session.exec(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_id)
        ):
            got.setdefault(member_id, []).append(topic_names[topic_id])
    assert [tuple(sorted(got[i + 1])) for i in range(members)] == expected
    engine.dispose()


def test_measure_planning_reports_each_size(tmp_path: Path) -> None:
    results = send.measure_planning([300, 900], False, tmp_path, port=25)
    assert [r["members"] for r in results] == [300, 900]
    for r in results:
        assert r["planned"] + r["skipped_empty"] == r["members"]
        assert r["members_per_s"] > 0 and r["peak_rss_mib"] > 0
    assert not list(tmp_path.glob("plan-*"))  # each store is removed once measured


def test_planning_with_follows_seeds_people_and_plans_them(tmp_path: Path) -> None:
    """The follows option: articles mention resources, a share of members follow some, and
    the members' topics are the very data they are without follows."""
    from digest.models import Mention, SubscriberResource

    plain = send.make_store(tmp_path / "plain.db", 2000, distinct=False)
    people = send.make_store(tmp_path / "people.db", 2000, distinct=False, follows=0.5)
    with Session(plain) as a, Session(people) as b:
        topics = select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_id)
        assert sorted(a.exec(topics).all()) == sorted(b.exec(topics).all())
        followers = b.exec(
            select(func.count(func.distinct(SubscriberResource.subscriber_id)))
        ).one()
        assert 800 < followers < 1200
        assert b.exec(select(func.count()).select_from(Mention)).one() > send.ARTICLES
    plain.dispose()
    people.dispose()
    results = send.measure_planning([600], False, tmp_path, port=25, follows=0.5)
    assert results[0]["follows"] == 0.5
    assert results[0]["planned"] + results[0]["skipped_empty"] == 600
