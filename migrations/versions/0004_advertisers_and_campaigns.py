"""API tables: advertiser profiles and campaign drafts.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "advertiser_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("wallet", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("company_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("website_url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_advertiser_profiles_wallet"), "advertiser_profiles", ["wallet"], unique=True
    )
    op.create_table(
        "campaign_drafts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("advertiser_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("objective", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("bid_model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("bid", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("total_budget", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("daily_budget", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("targeting", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("landing_url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("start_date", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("end_date", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("metadata_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("onchain_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["advertiser_id"],
            ["advertiser_profiles.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_campaign_drafts_advertiser_id"), "campaign_drafts", ["advertiser_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_campaign_drafts_advertiser_id"), table_name="campaign_drafts")
    op.drop_table("campaign_drafts")
    op.drop_index(op.f("ix_advertiser_profiles_wallet"), table_name="advertiser_profiles")
    op.drop_table("advertiser_profiles")
