"""Analytics: running totals at the campaign, publisher and slot grains, so a report's top
performers and IVT rows over any range of whole hours read at most four rows per campaign,
publisher or slot (the totals before its end minus those before its start) instead of one per
day or hour: `analytics_daily_running` (totals through each day since the first) and
`analytics_hourly_running` (totals within a day through each hour).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
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


def _running(name: str, bucket: sa.Column) -> None:
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
        sa.Column("active_hours", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain", "chain_id", "campaign_id", "publisher", "slot_id", bucket.name
        ),
    )
    op.create_index(f"ix_{name}_{bucket.name}", name, ["grain", "chain_id", bucket.name])


def upgrade() -> None:
    _running("analytics_daily_running", sa.Column("day", sa.Date(), nullable=False))
    _running(
        "analytics_hourly_running", sa.Column("hour", sa.DateTime(timezone=True), nullable=False)
    )


def downgrade() -> None:
    op.drop_table("analytics_hourly_running")
    op.drop_table("analytics_daily_running")
