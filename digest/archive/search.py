"""Full-text search over the archive: the index's rows, and ranked, highlighted queries.

The store module for ``article_search``. Each article has one row: its title, the text a
visitor may read (summary, first key point, the names of what it mentions) and the text
only members may (the other key points), split by ``archive.access``. The engine does the
rest: SQLite's FTS5 (an external-content table the migration keeps in step with triggers;
Porter stemming, diacritics folded) or PostgreSQL's ``tsvector`` (a generated column with a
GIN index; the ``english`` configuration). Ranking is the engine's (bm25, ts_rank_cd).

Whatever bytes a visitor types, the query is rebuilt from its words (``query_words``), so
both engines answer the same question, every word: SQLite gets each word as a quoted phrase
and PostgreSQL the words through ``plainto_tsquery``, so ``"``, ``*``, ``NEAR``, ``-`` or
``OR`` are only text on either (no operator means something on one store and nothing on
the other). NUL and other control characters are dropped and the length is bounded first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import delete, func, literal_column, text
from sqlalchemy import select as sql_select
from sqlalchemy import table as sql_table
from sqlmodel import Session, col, select

from digest.archive.access import open_and_closed
from digest.catalog import on_show
from digest.db import chunks
from digest.models import Article, ArticleSearch, Mention, Resource

#: Characters of a query looked at (the rest is ignored), and words kept of them.
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 12
#: Highlight markers the engines put around matches: private-use characters, removed from
#: every indexed text, so only the engine can have put them there.
_START, _STOP = "\ue000", "\ue001"
_WORD = re.compile(r"\w+", re.UNICODE)


def _plain(value: str) -> str:
    """Indexed text: no markers, no control characters."""
    return "".join(
        " " if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch
        for ch in value.replace(_START, "").replace(_STOP, "")
    )


def clean_query(raw: str) -> str:
    """A query as the engines get it: control characters gone, bounded, single spaces."""
    kept = "".join(
        " " if unicodedata.category(ch)[0] in "CZ" else ch for ch in raw[: MAX_QUERY_CHARS * 4]
    )
    return " ".join(_plain(kept).split())[:MAX_QUERY_CHARS]


def query_words(raw: str) -> list[str]:
    """The words of a query (letters and digits of any script), at most ``MAX_QUERY_WORDS``."""
    return _WORD.findall(clean_query(raw))[:MAX_QUERY_WORDS]


def fts5_query(raw: str) -> str:
    """An FTS5 MATCH expression that means "all these words": each word a quoted string."""
    return " ".join(f'"{word}"' for word in query_words(raw))


# ---------------------------------------------------------------- the index


def index_articles(session: Session, article_ids: Iterable[int]) -> None:
    """(Re)write the search rows of these articles from their current text and mentions."""
    ids = sorted(set(article_ids))
    for part in chunks(ids):
        articles = session.exec(select(Article).where(col(Article.id).in_(part))).all()
        names: dict[int, list[str]] = {}
        rows = session.exec(
            select(Mention.article_id, Mention.name, Resource.name)
            .outerjoin(Resource, col(Resource.id) == col(Mention.resource_id))
            .where(col(Mention.article_id).in_(part))
            .order_by(col(Mention.article_id), col(Mention.position))
        )
        for article_id, mention_name, resource_name in rows:
            found = names.setdefault(article_id, [])
            for name in (resource_name, mention_name):
                if name and name not in found:
                    found.append(name)
        session.execute(delete(ArticleSearch).where(col(ArticleSearch.article_id).in_(part)))
        session.flush()
        for article in articles:
            assert article.id is not None
            shown, closed = open_and_closed(tuple(article.key_points))
            lead = [article.summary or "", *shown, *names.get(article.id, [])]
            session.add(
                ArticleSearch(
                    article_id=article.id,
                    title=_plain(article.title),
                    lead=_plain("\n".join(p for p in lead if p)),
                    more=_plain("\n".join(closed)),
                )
            )
        session.flush()


# ---------------------------------------------------------------- querying


@dataclass(frozen=True)
class Hit:
    """One result: the article, its title and a snippet with the matches marked."""

    article_id: int
    title: Markup
    snippet: Markup


@dataclass(frozen=True)
class Results:
    hits: tuple[Hit, ...]
    total: int


def marked(value: str | None) -> Markup:
    """Engine output as safe HTML: everything escaped, the engine's markers made <mark>."""
    safe = str(escape(value or ""))
    opened = 0
    out: list[str] = []
    for ch in safe:
        if ch == _START and not opened:
            out.append("<mark>")
            opened = 1
        elif ch == _STOP and opened:
            out.append("</mark>")
            opened = 0
        elif ch not in (_START, _STOP):
            out.append(ch)
    if opened:
        out.append("</mark>")
    return Markup("".join(out))


#: Visitors' snippets come from what they may read (column 1, ``lead``) only; members' from
#: every column (-1).
def _sqlite_columns(snippet_column: int) -> tuple[str, ...]:
    return (
        "article_fts.rowid",
        "highlight(article_fts, 0, :a, :b)",
        f"snippet(article_fts, {snippet_column}, :a, :b, '…', 32)",
    )


_SQLITE_ORDER = "bm25(article_fts, 10.0, 4.0, 1.0), article_fts.rowid DESC"
_PG_QUERY = "plainto_tsquery('english', :q)"
_PG_OPTIONS = "StartSel=\ue000, StopSel=\ue001, MaxWords=40, MinWords=15, MaxFragments=2"


def _pg_columns(snippet_of: str) -> tuple[str, ...]:
    return (
        "article_search.article_id",
        f"ts_headline('english', title, {_PG_QUERY},"
        " 'StartSel=\ue000, StopSel=\ue001, HighlightAll=true')",
        f"ts_headline('english', {snippet_of}, {_PG_QUERY}, '{_PG_OPTIONS}')",
    )


_PG_MEMBER = _pg_columns("lead || E'\\n' || more")
_PG_VISITOR = _pg_columns("lead")


def search(
    session: Session,
    raw: str,
    *,
    member: bool,
    limit: int,
    offset: int = 0,
    shown_at: datetime | None = None,
) -> Results:
    """The page of results for ``raw`` (any text), best first; empty when it has no words.

    ``shown_at``: only articles the archive shows then (``catalog.on_show``), counted too, so
    a held or retracted article's words are not even a result count."""
    if session.get_bind().dialect.name == "postgresql":
        q = " ".join(query_words(raw))
        if not q:
            return Results((), 0)
        table, key = "article_search", "article_search.article_id"
        match = f"document @@ {_PG_QUERY}"
        columns = _PG_MEMBER if member else _PG_VISITOR
        order = f"ts_rank_cd(document, {_PG_QUERY}) DESC, article_search.article_id DESC"
        params: dict[str, object] = {"q": q}
    else:
        q = fts5_query(raw)
        if not q:
            return Results((), 0)
        table, key, match = "article_fts", "article_fts.rowid", "article_fts MATCH :q"
        columns = _sqlite_columns(-1 if member else 1)
        order = _SQLITE_ORDER
        params = {"q": q, "a": _START, "b": _STOP}
    where: list[Any] = [text(match)]
    if shown_at is not None:
        where.append(literal_column(key).in_(select(Article.id).where(on_show(shown_at))))
    counted = sql_select(func.count()).select_from(sql_table(table)).where(*where)
    total = int(session.execute(counted, params).scalar_one())
    rows: Sequence[Any] = []
    if total > offset:
        page = (
            sql_select(*(text(c) for c in columns))
            .select_from(sql_table(table))
            .where(*where)
            .order_by(text(order))
            .limit(limit)
            .offset(offset)
        )
        rows = session.execute(page, params).all()
    hits = tuple(Hit(int(r[0]), marked(r[1]), marked(r[2])) for r in rows)
    return Results(hits, total)


def indexed_ids(session: Session, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` have a search row (for checks and the backfill)."""
    found: set[int] = set()
    for part in chunks(list(ids)):
        found.update(
            session.exec(
                select(ArticleSearch.article_id).where(col(ArticleSearch.article_id).in_(part))
            ).all()
        )
    return found
