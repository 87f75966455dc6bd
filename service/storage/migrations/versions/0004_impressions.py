"""impressions: one row per item shown by POST /v1/suggestions and POST /v1/opportunities/{id}/candidates

Revision ID: 0004_impressions
Revises: 0003
Create Date: 2026-11-30 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_impressions"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "impressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("impression_id", sa.String(length=36), nullable=False),
        sa.Column("surface", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("opportunity_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("explored", sa.Boolean(), nullable=False),
        sa.Column("reference_date", sa.Date(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_impressions")),
    )
    with op.batch_alter_table("impressions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_impressions_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_impressions_impression_id"), ["impression_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_impressions_shown_at"), ["shown_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("impressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_impressions_shown_at"))
        batch_op.drop_index(batch_op.f("ix_impressions_impression_id"))
        batch_op.drop_index(batch_op.f("ix_impressions_client_id"))
    op.drop_table("impressions")
