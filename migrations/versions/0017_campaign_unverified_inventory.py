"""Campaigns choose whether they serve on sites whose domain is not verified (off by
default: the ad server fills only verified sites' slots otherwise).

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaign_drafts",
        sa.Column("unverified_inventory", sa.Boolean(), server_default="false", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("campaign_drafts", "unverified_inventory")
