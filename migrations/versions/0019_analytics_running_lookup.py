"""Analytics: the running totals' bucket indexes also hold the publisher and the campaign, so
a report's running totals of one publisher's slots (or one campaign) at an hour or a day are
an index lookup of those rows, not a scan of every slot's row at that hour filtered by
publisher (511 rows read for 1 at 1,000,000 events; 4.2 ms of a 21 ms report).

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = (("analytics_daily_running", "day"), ("analytics_hourly_running", "hour"))


def upgrade() -> None:
    for table, bucket in BUCKETS:
        op.drop_index(f"ix_{table}_{bucket}", table_name=table)
        op.create_index(
            f"ix_{table}_{bucket}", table, ["grain", "chain_id", bucket, "publisher", "campaign_id"]
        )


def downgrade() -> None:
    for table, bucket in BUCKETS:
        op.drop_index(f"ix_{table}_{bucket}", table_name=table)
        op.create_index(f"ix_{table}_{bucket}", table, ["grain", "chain_id", bucket])
