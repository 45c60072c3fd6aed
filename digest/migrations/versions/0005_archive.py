"""the archive: resources and their aliases, follows, the search index, sign-in links

Existing mentions become resources (one per normalised name; the last non-empty
description and URL win) and every article gets its search row. The search index is the
engine's own: on SQLite an FTS5 table over ``article_search`` kept in step by triggers (a
later batch migration that rebuilds ``article_search`` must create them again); on
PostgreSQL a generated ``tsvector`` column with a GIN index.

Revision ID: 0005_archive
Revises: 0004_newsroom
Create Date: 2026-12-06 08:11:19.675828
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import digest.models

revision = "0005_archive"
down_revision = "0004_newsroom"
branch_labels = None
depends_on = None

_FTS = (
    "CREATE VIRTUAL TABLE article_fts USING fts5(title, lead, more,"
    " content='article_search', content_rowid='article_id',"
    " tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER article_search_ai AFTER INSERT ON article_search BEGIN"
    " INSERT INTO article_fts(rowid, title, lead, more)"
    " VALUES (new.article_id, new.title, new.lead, new.more); END",
    "CREATE TRIGGER article_search_ad AFTER DELETE ON article_search BEGIN"
    " INSERT INTO article_fts(article_fts, rowid, title, lead, more)"
    " VALUES ('delete', old.article_id, old.title, old.lead, old.more); END",
    "CREATE TRIGGER article_search_au AFTER UPDATE ON article_search BEGIN"
    " INSERT INTO article_fts(article_fts, rowid, title, lead, more)"
    " VALUES ('delete', old.article_id, old.title, old.lead, old.more);"
    " INSERT INTO article_fts(rowid, title, lead, more)"
    " VALUES (new.article_id, new.title, new.lead, new.more); END",
)
_TSVECTOR = (
    "ALTER TABLE article_search ADD COLUMN document tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', lead), 'B') || "
    "setweight(to_tsvector('english', more), 'C')) STORED",
    "CREATE INDEX ix_article_search_document ON article_search USING GIN (document)",
)


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("updated_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "article_search",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("lead", sa.Text(), nullable=False),
        sa.Column("more", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("article_id"),
    )
    op.create_table(
        "resource_alias",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=1500), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["resource_id"], ["resource.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("kind", "value"),
    )
    with op.batch_alter_table("resource_alias", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resource_alias_resource_id"), ["resource_id"], unique=False
        )
    op.create_table(
        "signin_link",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("created_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", digest.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nonce"),
    )
    with op.batch_alter_table("signin_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signin_link_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_signin_link_subscriber_id"), ["subscriber_id"], unique=False
        )
    op.create_table(
        "subscriber_resource",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["resource_id"], ["resource.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "resource_id"),
    )
    with op.batch_alter_table("subscriber_resource", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriber_resource_resource_id"), ["resource_id"], unique=False
        )
    with op.batch_alter_table("mention", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_mention_resource_id"), ["resource_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_mention_resource_id", "resource", ["resource_id"], ["id"], ondelete="CASCADE"
        )
    bind = op.get_bind()
    for statement in _TSVECTOR if bind.dialect.name == "postgresql" else _FTS:
        op.execute(statement)
    _backfill(bind)


# ------------------------------------------------------------------ the backfill
# The rules are copied here as they were when this revision was written (``digest.topics``
# and ``digest.archive.names``), so later changes to those modules never change this step.


def _clean(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in name)
    return " ".join(name.split())


def _slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", _clean(name).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    slug = re.sub(r"[^\w]+|_+", "-", unicodedata.normalize("NFC", text)).strip("-")
    return slug[:80].strip("-") or "resource"


def _plain(value: str) -> str:
    value = value.replace("\ue000", "").replace("\ue001", "")
    return "".join(
        " " if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch for ch in value
    )


def _backfill(bind: sa.Connection) -> None:
    now = datetime.now(UTC).replace(tzinfo=None) if bind.dialect.name == "sqlite" else None
    mentions = bind.execute(
        sa.text("SELECT id, article_id, name, description, url FROM mention ORDER BY id")
    ).all()
    by_key: dict[str, dict[str, object]] = {}
    for mention_id, _article, name, description, url in mentions:
        key = _clean(name).casefold()
        if not key:
            continue
        found = by_key.setdefault(
            key, {"name": _clean(name), "description": "", "url": None, "mentions": []}
        )
        found["description"] = description or found["description"]
        found["url"] = url or found["url"]
        found["mentions"].append(mention_id)  # type: ignore[attr-defined]
    slugs: set[str] = set()
    stamp = now if now is not None else datetime.now(UTC)
    for key, found in by_key.items():
        base, n = _slugify(str(found["name"])), 1
        slug = base
        while slug in slugs:
            n += 1
            slug = f"{base}-{n}"
        slugs.add(slug)
        resource_id = bind.execute(
            sa.text(
                "INSERT INTO resource (slug, name, kind, description, url, updated_at)"
                " VALUES (:slug, :name, 'other', :description, :url, :now) RETURNING id"
            ),
            {
                "slug": slug,
                "name": found["name"],
                "description": found["description"],
                "url": found["url"],
                "now": stamp,
            },
        ).scalar_one()
        bind.execute(
            sa.text(
                "INSERT INTO resource_alias (kind, value, resource_id) VALUES ('name', :k, :r)"
            ),
            {"k": key, "r": resource_id},
        )
        bind.execute(
            sa.text("UPDATE mention SET resource_id = :r WHERE id = :m"),
            [{"r": resource_id, "m": m} for m in found["mentions"]],  # type: ignore[attr-defined]
        )
    names: dict[int, list[str]] = {}
    for _mention, article_id, name, _d, _u in mentions:
        names.setdefault(article_id, []).append(name)
    rows = []
    for article_id, title, summary, key_points in bind.execute(
        sa.text("SELECT id, title, summary, key_points FROM article")
    ):
        points = key_points if isinstance(key_points, list) else json.loads(key_points or "[]")
        lead = [summary or "", *points[:1], *names.get(article_id, [])]
        rows.append(
            {
                "a": article_id,
                "t": _plain(title),
                "l": _plain("\n".join(p for p in lead if p)),
                "m": _plain("\n".join(points[1:])),
            }
        )
    if rows:
        bind.execute(
            sa.text(
                "INSERT INTO article_search (article_id, title, lead, more) VALUES (:a, :t, :l, :m)"
            ),
            rows,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("article_search_ai", "article_search_ad", "article_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS article_fts")
    with op.batch_alter_table("mention", schema=None) as batch_op:
        batch_op.drop_constraint("fk_mention_resource_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_mention_resource_id"))
        batch_op.drop_column("resource_id")
    with op.batch_alter_table("subscriber_resource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_resource_resource_id"))
    op.drop_table("subscriber_resource")
    with op.batch_alter_table("signin_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signin_link_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_signin_link_created_at"))
    op.drop_table("signin_link")
    with op.batch_alter_table("resource_alias", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_alias_resource_id"))
    op.drop_table("resource_alias")
    op.drop_table("article_search")
    op.drop_table("resource")
