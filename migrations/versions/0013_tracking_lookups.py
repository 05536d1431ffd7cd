"""Tracking lookups: a click finds its campaign's landing URL by on-chain id
(`campaign_drafts.onchain_id`), and the redemption pruning job deletes by age
(`ad_event_redemptions.redeemed_at`).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_campaign_drafts_onchain_id", "campaign_drafts", ["onchain_id"])
    op.create_index("ix_ad_event_redemptions_redeemed_at", "ad_event_redemptions", ["redeemed_at"])


def downgrade() -> None:
    op.drop_index("ix_ad_event_redemptions_redeemed_at", table_name="ad_event_redemptions")
    op.drop_index("ix_campaign_drafts_onchain_id", table_name="campaign_drafts")
