"""process heartbeats: each scheduler's and worker's state, last error and counters

Revision ID: 0007_process_state
Revises: 0006_feed_sources
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import digest.models

revision = "0007_process_state"
down_revision = "0006_feed_sources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "process_state",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=60), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", digest.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("started_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("process_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_process_state_updated_at"), ["updated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("process_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_process_state_updated_at"))
    op.drop_table("process_state")
