"""Tracking: every impression and click, valid or not, in `ad_events` range-partitioned by
day on `occurred_at` (partitions are created ahead by the scheduler and on demand by the
writer, and are not part of the models); single use of each token in
`ad_event_redemptions`.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ad_events (
            event_id VARCHAR NOT NULL,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
            kind VARCHAR NOT NULL,
            verified BOOLEAN NOT NULL,
            reason VARCHAR,
            chain_id INTEGER NOT NULL,
            serve_id VARCHAR,
            campaign_id BIGINT,
            slot_id VARCHAR,
            publisher VARCHAR,
            token VARCHAR,
            bid_model VARCHAR,
            bid NUMERIC(78, 0),
            price NUMERIC(78, 0) NOT NULL,
            served_at TIMESTAMP WITH TIME ZONE,
            ip_prefix VARCHAR,
            visitor VARCHAR,
            device VARCHAR,
            geo VARCHAR,
            PRIMARY KEY (event_id, occurred_at)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute("CREATE INDEX ix_ad_events_occurred_at ON ad_events USING brin (occurred_at)")
    op.execute(
        """
        CREATE TABLE ad_event_redemptions (
            token_id VARCHAR NOT NULL PRIMARY KEY,
            event_id VARCHAR NOT NULL,
            redeemed_at TIMESTAMP WITH TIME ZONE NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ad_event_redemptions")
    op.execute("DROP TABLE ad_events")  # and its partitions
