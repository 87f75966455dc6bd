"""store version counters (catalogue and clients per centre) so requests need no table scan

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 17:00:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_versions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_versions")),
    )
    now = datetime.now(UTC)
    conn = op.get_bind()
    rows = [{"name": "catalogue", "version": 1, "changed_at": now}]
    centres = conn.execute(sa.text("SELECT DISTINCT centre FROM clients")).scalars().all()
    rows += [{"name": f"clients:{c}", "version": 1, "changed_at": now} for c in centres]
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("store_versions")
