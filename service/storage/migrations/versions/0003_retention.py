"""retention: feedback de-identification (recorded_by nullable, deidentified_at) and an index on received_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback_events", schema=None) as batch_op:
        batch_op.alter_column("recorded_by", existing_type=sa.String(length=128), nullable=True)
        batch_op.add_column(sa.Column("deidentified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_feedback_events_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_events_received_at"))
        batch_op.drop_column("deidentified_at")
        batch_op.alter_column("recorded_by", existing_type=sa.String(length=128), nullable=False)
