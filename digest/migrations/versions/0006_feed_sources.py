"""feed sources added from the newsroom

Revision ID: 0006_feed_sources
Revises: 0005_archive
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import digest.models

revision = "0006_feed_sources"
down_revision = "0005_archive"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_source",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("added_by", sa.String(length=320), nullable=False),
        sa.Column("added_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )


def downgrade() -> None:
    op.drop_table("feed_source")
