"""Campaign drafts: the off-chain daily budget gives way to the max spend per epoch the
registration puts on-chain. An existing draft keeps its daily budget as that max, or, without
one, its total budget (nothing held it to less per day before).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_SPEND_LIMIT = 2**128 - 1  # CampaignRegistry refuses a larger max


def upgrade() -> None:
    op.add_column(
        "campaign_drafts",
        sa.Column("max_spend_per_epoch", sa.Numeric(precision=78, scale=0), nullable=True),
    )
    op.execute(
        "UPDATE campaign_drafts SET max_spend_per_epoch ="
        f" least(coalesce(daily_budget, total_budget), {MAX_SPEND_LIMIT})"
    )
    op.alter_column("campaign_drafts", "max_spend_per_epoch", nullable=False)
    op.drop_column("campaign_drafts", "daily_budget")


def downgrade() -> None:
    op.add_column(
        "campaign_drafts",
        sa.Column("daily_budget", sa.Numeric(precision=78, scale=0), nullable=True),
    )
    op.execute(
        "UPDATE campaign_drafts SET daily_budget = max_spend_per_epoch"
        " WHERE max_spend_per_epoch < total_budget"
    )
    op.drop_column("campaign_drafts", "max_spend_per_epoch")
