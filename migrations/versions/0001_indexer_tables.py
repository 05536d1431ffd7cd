"""Indexer tables: raw chain events, the block window, the checkpoint and the projections.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns_onchain",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("advertiser", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("bid_model", sa.Integer(), nullable=False),
        sa.Column("bid", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("metadata_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "campaign_id"),
    )
    op.create_index(
        op.f("ix_campaigns_onchain_advertiser"), "campaigns_onchain", ["advertiser"], unique=False
    )
    op.create_table(
        "chain_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tx_index", sa.Integer(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("canonical", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_chain_events_block", "chain_events", ["chain_id", "block_number"], unique=False
    )
    op.create_index(
        "ix_chain_events_subject",
        "chain_events",
        ["chain_id", "subject"],
        unique=False,
        postgresql_where=sa.text("canonical"),
    )
    op.create_index(
        "uq_chain_events_block_log",
        "chain_events",
        ["chain_id", "block_hash", "log_index"],
        unique=True,
    )
    op.create_index(
        "uq_chain_events_canonical",
        "chain_events",
        ["chain_id", "tx_hash", "log_index"],
        unique=True,
        postgresql_where=sa.text("canonical"),
    )
    op.create_table(
        "epoch_spends",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("publisher_share", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("fee", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "epoch", "campaign_id"),
    )
    op.create_table(
        "escrow_balances",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("deposited", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("withdrawn", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("spent", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("balance", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("last_spent_epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "campaign_id", "token"),
    )
    op.create_table(
        "indexed_blocks",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("parent_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number"),
    )
    op.create_table(
        "indexer_checkpoints",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("finalized_block", sa.BigInteger(), nullable=False),
        sa.Column("head_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id"),
    )
    op.create_table(
        "payout_claims",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("cumulative_amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "tx_hash", "log_index"),
    )
    op.create_index(op.f("ix_payout_claims_account"), "payout_claims", ["account"], unique=False)
    op.create_table(
        "payout_funding",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("total_funded", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "token"),
    )
    op.create_table(
        "payout_roots",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("root", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("claimable_at", sa.BigInteger(), nullable=False),
        sa.Column("totals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("artefact_uri", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("posted_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "epoch"),
    )
    op.create_table(
        "publishers_onchain",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pub_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("payment_wallet", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("quality_score", sa.Integer(), nullable=False),
        sa.Column("domain_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "wallet"),
    )
    op.create_index(
        op.f("ix_publishers_onchain_payment_wallet"),
        "publishers_onchain",
        ["payment_wallet"],
        unique=False,
    )
    op.create_index(
        op.f("ix_publishers_onchain_pub_id"), "publishers_onchain", ["pub_id"], unique=False
    )
    op.create_table(
        "withdraw_requests",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("available_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("paid", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "campaign_id"),
    )
    op.create_table(
        "x402_payments_onchain",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pay_to", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "payer", "nonce"),
    )
    op.create_index(
        op.f("ix_x402_payments_onchain_pay_to"), "x402_payments_onchain", ["pay_to"], unique=False
    )
    # pending vs claimable depends on chain time: the indexed head's timestamp
    op.execute(
        """
        CREATE VIEW payout_root_status AS
        SELECT r.*,
               CASE WHEN r.revoked THEN 'revoked'
                    WHEN r.claimable_at <= c.block_timestamp THEN 'claimable'
                    ELSE 'pending' END AS status
        FROM payout_roots r
        LEFT JOIN indexer_checkpoints c ON c.chain_id = r.chain_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW payout_root_status")
    op.drop_index(op.f("ix_x402_payments_onchain_pay_to"), table_name="x402_payments_onchain")
    op.drop_table("x402_payments_onchain")
    op.drop_table("withdraw_requests")
    op.drop_index(op.f("ix_publishers_onchain_pub_id"), table_name="publishers_onchain")
    op.drop_index(op.f("ix_publishers_onchain_payment_wallet"), table_name="publishers_onchain")
    op.drop_table("publishers_onchain")
    op.drop_table("payout_roots")
    op.drop_table("payout_funding")
    op.drop_index(op.f("ix_payout_claims_account"), table_name="payout_claims")
    op.drop_table("payout_claims")
    op.drop_table("indexer_checkpoints")
    op.drop_table("indexed_blocks")
    op.drop_table("escrow_balances")
    op.drop_table("epoch_spends")
    op.drop_index(
        "uq_chain_events_canonical",
        table_name="chain_events",
        postgresql_where=sa.text("canonical"),
    )
    op.drop_index("uq_chain_events_block_log", table_name="chain_events")
    op.drop_index(
        "ix_chain_events_subject", table_name="chain_events", postgresql_where=sa.text("canonical")
    )
    op.drop_index("ix_chain_events_block", table_name="chain_events")
    op.drop_table("chain_events")
    op.drop_index(op.f("ix_campaigns_onchain_advertiser"), table_name="campaigns_onchain")
    op.drop_table("campaigns_onchain")
