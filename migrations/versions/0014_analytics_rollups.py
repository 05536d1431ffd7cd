"""Analytics: hourly and daily rollups of the tracked events and settled x402 payments, at
the grains campaign×publisher×slot, campaign, publisher, slot and network, and the rollup's
watermark; an index on x402_payments.created_at (reports read the payments since the
watermark).

Revision ID: 0014
Revises: 0013 (the lead sets 0013 at merge, once tracking's 0013 is in)
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = (
    "bot",
    "datacenter",
    "rate_ip",
    "rate_publisher",
    "duplicate",
    "expired",
    "forged",
    "click_without_impression",
    "too_fast",
    "not_served",
    "other",
)


def _rollup(name: str, bucket: sa.Column) -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    counts = [
        sa.Column(column, sa.BigInteger(), nullable=False)
        for column in ("impressions", "verified_impressions", "clicks", "verified_clicks")
    ]
    ivt = [sa.Column(f"ivt_{reason}", sa.BigInteger(), nullable=False) for reason in REASONS]
    op.create_table(
        name,
        sa.Column("grain", string(length=3), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("publisher", string(), nullable=False),
        sa.Column("slot_id", string(), nullable=False),
        *counts,
        sa.Column("spend", sa.Numeric(precision=78, scale=0), nullable=False),
        *ivt,
        sa.Column("x402_payments", sa.BigInteger(), nullable=False),
        sa.Column("x402_revenue", sa.Numeric(precision=78, scale=0), nullable=False),
        bucket,
        sa.PrimaryKeyConstraint(
            "grain", "chain_id", "campaign_id", "publisher", "slot_id", bucket.name
        ),
    )
    op.create_index(f"ix_{name}_publisher", name, ["chain_id", "publisher", bucket.name])
    op.create_index(f"ix_{name}_{bucket.name}", name, ["grain", "chain_id", bucket.name])


def upgrade() -> None:
    _rollup("analytics_hourly", sa.Column("hour", sa.DateTime(timezone=True), nullable=False))
    _rollup("analytics_daily", sa.Column("day", sa.Date(), nullable=False))
    op.create_table(
        "analytics_watermark",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("rolled_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_x402_payments_created_at", "x402_payments", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_x402_payments_created_at", table_name="x402_payments")
    op.drop_table("analytics_watermark")
    op.drop_table("analytics_daily")
    op.drop_table("analytics_hourly")
