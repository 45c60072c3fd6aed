"""Search on SQLite (FTS5) and PostgreSQL (tsvector): found, ranked, highlighted, paginated,
members-only text kept out of visitors' snippets, any query safe."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from digest.archive import search, store
from tests.archive_helpers import KEY_POINT_WORD, NOW, other, seed_archive

HOSTILE = [
    '"', '""', "'", "*", "NEAR", "NEAR(a b, 2)", "-", "- -", "-stem", "a OR", "AND", "NOT x",
    "\x00", "stem\x00cells", "x" * 10_000, "title:x", "^x", "(", ")", "{x}", "[x]", ":", "\\",
    "%_", "\u0000\u0001\u001f", "\ue000mark\ue001", "🙂", "!!!", "stem*", '"stem cells"',
]  # fmt: skip


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    extra = [other(n, ["Space"], []) for n in range(3, 30)]
    extra.append(
        {
            **other(40, ["Space"], []),
            "title": "Regeneration of the spinal cord",
            "key_points": ["Spinal cord regeneration in fish."],
        }
    )
    seed_archive(engine, extra)
    return engine


def test_a_key_point_word_finds_its_article_and_members_see_it_marked(seeded: Engine) -> None:
    with Session(seeded) as session:
        member = search.search(session, KEY_POINT_WORD, member=True, limit=10)
        visitor = search.search(session, KEY_POINT_WORD, member=False, limit=10)
    assert [h.article_id for h in member.hits] == [1] and member.total == 1
    assert f"<mark>{KEY_POINT_WORD}</mark>" in member.hits[0].snippet
    assert [h.article_id for h in visitor.hits] == [1]  # found, but not shown
    assert KEY_POINT_WORD not in visitor.hits[0].snippet


def test_results_are_ranked_paginated_and_escaped(seeded: Engine) -> None:
    with Session(seeded) as session:
        ranked = search.search(session, "spinal cord regeneration", member=True, limit=10)
        assert ranked.total == 2
        assert ranked.hits[0].article_id == 31  # the words in its title rank it first
        titles = [str(h.title) for h in ranked.hits]
        assert any("<mark>" in t for t in titles)
        pages = [
            [
                h.article_id
                for h in search.search(session, "story", member=True, limit=10, offset=o).hits
            ]
            for o in (0, 10, 20)
        ]
        total = search.search(session, "story", member=True, limit=10).total
    assert total == 30 and [len(p) for p in pages] == [10, 10, 10]
    assert len({i for p in pages for i in p}) == 30  # no article on two pages
    assert str(search.marked("<b>\ue000x\ue001</b>")) == "&lt;b&gt;<mark>x</mark>&lt;/b&gt;"
    assert str(search.marked("\ue000open")) == "<mark>open</mark>"


@pytest.mark.parametrize("query", HOSTILE)
def test_any_query_is_safe(seeded: Engine, query: str) -> None:
    with Session(seeded) as session:
        found = search.search(session, query, member=False, limit=10)
    assert found.total >= 0 and len(found.hits) <= 10


def test_operators_are_only_text_on_every_store(seeded: Engine) -> None:
    """A '-' or 'OR' excludes or widens on neither engine: the same words, the same answer."""
    with Session(seeded) as session:

        def found(query: str) -> list[int]:
            return [h.article_id for h in search.search(session, query, member=True, limit=10).hits]

        assert found(f"-{KEY_POINT_WORD}") == found(f'"{KEY_POINT_WORD}"') == [1]
        assert found(f"{KEY_POINT_WORD} OR zzyzxq") == []  # every word, as typed
        assert found(f"{KEY_POINT_WORD} -zzyzxq") == []


def test_renamed_and_merged_resources_are_searchable_by_their_names(seeded: Engine) -> None:
    with Session(seeded) as session:
        keio = store.find_resource(session, "keio university")
        assert keio is not None
        store.rename(session, keio, "Mita Campus", NOW)  # rewrites the search rows itself
        session.commit()
        found = search.search(session, "mita", member=False, limit=10)
    assert sorted(h.article_id for h in found.hits) == [1, 2]
    with Session(seeded) as session:
        okafor = store.find_resource(session, "mara okafor")
        mita = store.find_resource(session, "mita campus")
        assert okafor and mita
        store.merge(session, okafor, mita, NOW)
        session.commit()
        merged = search.search(session, "mita", member=False, limit=10)
    assert sorted(h.article_id for h in merged.hits) == [1, 2, 3]


def test_the_query_words_are_bounded() -> None:
    assert search.query_words("a " * 100) == ["a"] * search.MAX_QUERY_WORDS
    assert search.fts5_query('he said "NEAR" -x*') == '"he" "said" "NEAR" "x"'
    assert search.clean_query("\x00a\r\nb\t") == "a b"
    assert len(search.clean_query("y" * 10_000)) == search.MAX_QUERY_CHARS


def test_held_and_retracted_articles_are_neither_found_nor_counted(seeded: Engine) -> None:
    # "1 result" with nothing shown would tell that an embargoed article holds the word
    from datetime import timedelta

    from digest import catalog

    with Session(seeded) as session:
        catalog.hold_article(session, 31, NOW + timedelta(days=1), NOW)
        catalog.retract_article(session, 1, NOW)
        session.commit()
        for member in (True, False):
            for word in ("spinal", KEY_POINT_WORD):
                found = search.search(session, word, member=member, limit=10, shown_at=NOW)
                assert (found.total, found.hits) == (0, ()), (word, member)
        later = NOW + timedelta(days=1, minutes=1)
        found = search.search(session, "spinal", member=False, limit=10, shown_at=later)
        assert [h.article_id for h in found.hits] == [31] and found.total == 1
        now_shown = search.search(session, "story", member=True, limit=10, shown_at=NOW)
        assert now_shown.total == 29 and 31 not in {h.article_id for h in now_shown.hits}
        found = search.search(session, "story", member=True, limit=10, shown_at=later)
        assert found.total == 30
