"""indexes for the newsroom's reports: deliveries by status and day, and by edition

Revision ID: 0008_report_indexes
Revises: 0007_process_state
"""

from __future__ import annotations

from alembic import op

revision = "0008_report_indexes"
down_revision = "0007_process_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_status_sent", "delivery", ["status", "sent_at"])
    op.create_index("ix_delivery_status_updated", "delivery", ["status", "updated_at"])
    op.create_index("ix_delivery_edition", "delivery", ["edition", "planned_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_edition", table_name="delivery")
    op.drop_index("ix_delivery_status_updated", table_name="delivery")
    op.drop_index("ix_delivery_status_sent", table_name="delivery")
