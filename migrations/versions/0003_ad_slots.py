"""API tables: ad slots with their x402 prices.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ad_slots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("publisher_id", sa.Uuid(), nullable=False),
        sa.Column("slot_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("agent_price", sa.BigInteger(), nullable=True),
        sa.Column("ad_free_price", sa.BigInteger(), nullable=True),
        sa.Column("no_fill_price", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher_profiles.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_ad_slots_publisher_id"), "ad_slots", ["publisher_id"], unique=False)
    op.create_index(op.f("ix_ad_slots_slot_id"), "ad_slots", ["slot_id"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_ad_slots_slot_id"), table_name="ad_slots")
    op.drop_index(op.f("ix_ad_slots_publisher_id"), table_name="ad_slots")
    op.drop_table("ad_slots")
