"""API tables: x402 payments (one row per EIP-3009 authorization settled for an ad slot).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "x402_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("payload_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("slot_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pay_to", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("asset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("authorization_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("receipt", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("valid_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "payer", "nonce", name="uq_x402_payments_authorization"),
    )
    op.create_index(op.f("ix_x402_payments_slot_key"), "x402_payments", ["slot_key"], unique=False)
    op.create_index(op.f("ix_x402_payments_state"), "x402_payments", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_x402_payments_state"), table_name="x402_payments")
    op.drop_index(op.f("ix_x402_payments_slot_key"), table_name="x402_payments")
    op.drop_table("x402_payments")
