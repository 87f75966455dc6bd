"""allocation: congestion price runs (price_runs) and prices per item and run (item_prices)

Revision ID: 0005
Revises: 0004_impressions
Create Date: 2026-11-30 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_impressions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("reference_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("solver", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_pairs", sa.Integer(), nullable=False),
        sa.Column("total_value", sa.Float(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_price_runs")),
    )
    with op.batch_alter_table("price_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_price_runs_centre"), ["centre"], unique=False)
        batch_op.create_index(batch_op.f("ix_price_runs_created_at"), ["created_at"], unique=False)
    op.create_table(
        "item_prices",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("opportunity_id", sa.String(length=64), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("allocated", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["price_runs.run_id"],
            name=op.f("fk_item_prices_run_id_price_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "opportunity_id", name=op.f("pk_item_prices")),
    )


def downgrade() -> None:
    op.drop_table("item_prices")
    with op.batch_alter_table("price_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_price_runs_created_at"))
        batch_op.drop_index(batch_op.f("ix_price_runs_centre"))
    op.drop_table("price_runs")
