"""Settlement: each epoch's state and inputs, per-campaign charges, per-wallet allocations,
the transactions settlement signed (kept before they are sent), the roots it built, the
pushes it made with `claim_many`, and each publisher's push-payout choice.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UINT256 = sa.Numeric(precision=78, scale=0)
STRING = sqlmodel.sql.sqltypes.AutoString


def _updated_at() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "settlement_epochs",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("state", STRING(), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", STRING(), nullable=False),
        sa.Column("end_block", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("inputs_hash", STRING(), nullable=False),
        sa.Column("root_id", sa.BigInteger(), nullable=True),
        sa.Column("note", STRING(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("chain_id", "epoch"),
    )
    op.create_table(
        "settlement_steps",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("subject", STRING(), nullable=False),
        sa.Column("step", STRING(), nullable=False),
        sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "done_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("chain_id", "subject", "step"),
    )
    op.create_table(
        "settlement_charges",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("token", STRING(), nullable=False),
        sa.Column("bid_model", STRING(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("bid_sum", UINT256, nullable=False),
        sa.Column("billed", UINT256, nullable=False),
        sa.Column("amount", UINT256, nullable=False),
        sa.Column("asked", UINT256, nullable=False),
        sa.Column("charged", UINT256, nullable=True),
        sa.Column("publisher_share", UINT256, nullable=True),
        sa.Column("fee", UINT256, nullable=True),
        sa.Column("written_off", UINT256, nullable=True),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "epoch", "campaign_id"),
    )
    op.create_table(
        "settlement_allocations",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("account", STRING(), nullable=False),
        sa.Column("token", STRING(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("weight", UINT256, nullable=False),
        sa.Column("amount", UINT256, nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "epoch", "campaign_id", "account"),
    )
    op.create_index(
        "ix_settlement_allocations_account", "settlement_allocations", ["chain_id", "account"]
    )
    op.create_table(
        "settlement_txs",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("step", STRING(), nullable=False),
        sa.Column("sender", STRING(), nullable=False),
        sa.Column("tx_hash", STRING(), nullable=False),
        sa.Column("signed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", STRING(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("error", STRING(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("chain_id", "step"),
    )
    op.create_table(
        "settlement_roots",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.BigInteger(), nullable=False),
        sa.Column("state", STRING(), nullable=False),
        sa.Column("root", STRING(), nullable=False),
        sa.Column("previous_root_id", sa.BigInteger(), nullable=True),
        sa.Column("epochs", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("totals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("leaves", sa.BigInteger(), nullable=False),
        sa.Column("artefact_path", STRING(), nullable=False),
        sa.Column("artefact_uri", STRING(), nullable=False),
        sa.Column("note", STRING(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("chain_id", "root_id"),
    )

    op.create_table(
        "settlement_pushes",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.BigInteger(), nullable=False),
        sa.Column("account", STRING(), nullable=False),
        sa.Column("token", STRING(), nullable=False),
        sa.Column("amount", UINT256, nullable=False),
        sa.Column("status", STRING(), nullable=False),
        sa.Column("reason", STRING(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("tx_hash", STRING(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("chain_id", "root_id", "account", "token"),
    )
    op.add_column(
        "publisher_profiles",
        sa.Column("push_payouts", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column(
        "publisher_profiles",
        sa.Column("push_threshold", UINT256, server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("publisher_profiles", "push_threshold")
    op.drop_column("publisher_profiles", "push_payouts")
    op.drop_table("settlement_pushes")
    op.drop_table("settlement_roots")
    op.drop_table("settlement_txs")
    op.drop_index("ix_settlement_allocations_account", table_name="settlement_allocations")
    op.drop_table("settlement_allocations")
    op.drop_table("settlement_charges")
    op.drop_table("settlement_steps")
    op.drop_table("settlement_epochs")
