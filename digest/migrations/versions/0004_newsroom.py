"""the newsroom: editor accounts, sessions, audit log, click counters, article hold/retract

Revision ID: 0004_newsroom
Revises: 0003_delivery_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import digest.models

revision = "0004_newsroom"
down_revision = "0003_delivery_events"
branch_labels = None
depends_on = None

UTC = digest.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_until", UTC(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retracted_at", UTC(timezone=True), nullable=True))

    op.create_table(
        "editor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("login_nonce", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("last_login_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "editor_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["editor_id"], ["editor.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("editor_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_editor_session_editor_id"), ["editor_id"], unique=False
        )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=2048), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "click_count",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("edition", sa.String(length=40), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("discounted", sa.Integer(), nullable=False),
        sa.Column("last_click_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("article_id", "edition", "topic"),
    )
    with op.batch_alter_table("click_count", schema=None) as batch_op:
        batch_op.create_index("ix_click_count_edition", ["edition"], unique=False)

    op.create_table(
        "member_click",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("edition", sa.String(length=40), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("last_click_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "article_id", "edition"),
    )


def downgrade() -> None:
    op.drop_table("member_click")
    with op.batch_alter_table("click_count", schema=None) as batch_op:
        batch_op.drop_index("ix_click_count_edition")
    op.drop_table("click_count")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
    op.drop_table("audit_log")
    with op.batch_alter_table("editor_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_editor_session_editor_id"))
    op.drop_table("editor_session")
    op.drop_table("editor")
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_column("retracted_at")
        batch_op.drop_column("held_until")
