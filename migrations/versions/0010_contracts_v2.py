"""Contracts v2: payout roots, claims and proofs keyed by root id; a root's status is
pending, current, superseded or revoked; spends record what was asked and what was charged,
and skipped spends; campaigns carry their max spend per epoch; contract configuration.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UINT256 = sa.Numeric(precision=78, scale=0)

# current = the newest matured, unrevoked root: the only one claims verify against; an
# older matured root is superseded (its proofs pay nothing). Maturity is judged by the
# indexed head's timestamp, the chain's clock as far as the indexer has seen it.
ROOT_STATUS_V2 = """
    CREATE VIEW payout_root_status AS
    SELECT r.*,
           CASE WHEN r.revoked THEN 'revoked'
                WHEN c.block_timestamp IS NULL OR r.claimable_at > c.block_timestamp
                    THEN 'pending'
                WHEN r.root_id = max(r.root_id) FILTER (
                        WHERE NOT r.revoked AND r.claimable_at <= c.block_timestamp
                     ) OVER (PARTITION BY r.chain_id)
                    THEN 'current'
                ELSE 'superseded' END AS status
    FROM payout_roots r
    LEFT JOIN indexer_checkpoints c ON c.chain_id = r.chain_id
"""

ROOT_STATUS_V1 = """
    CREATE VIEW payout_root_status AS
    SELECT r.*,
           CASE WHEN r.revoked THEN 'revoked'
                WHEN r.claimable_at <= c.block_timestamp THEN 'claimable'
                ELSE 'pending' END AS status
    FROM payout_roots r
    LEFT JOIN indexer_checkpoints c ON c.chain_id = r.chain_id
"""

# the max in force now: the newest from its effective epoch on, the one before it until then
# (the current epoch from the registry's clock and the indexed head's timestamp)
CAMPAIGN_MAX_SPEND = """
    CREATE VIEW campaign_max_spend AS
    SELECT c.chain_id, c.campaign_id, e.epoch AS current_epoch,
           CASE WHEN e.epoch IS NULL THEN NULL
                WHEN e.epoch >= c.max_spend_effective_epoch THEN c.max_spend_per_epoch
                ELSE c.previous_max_spend_per_epoch END AS max_spend_now,
           c.max_spend_per_epoch, c.max_spend_effective_epoch
    FROM campaigns_onchain c
    LEFT JOIN LATERAL (
        SELECT CASE WHEN k.block_timestamp < (s.args->>'genesis')::bigint THEN 0
                    ELSE (k.block_timestamp - (s.args->>'genesis')::bigint)
                         / (s.args->>'epoch_length')::bigint + 1 END AS epoch
        FROM chain_config s
        JOIN indexer_checkpoints k ON k.chain_id = s.chain_id
        WHERE s.chain_id = c.chain_id AND s.contract = 'CampaignRegistry'
          AND s.event = 'EpochClockSet'
    ) e ON true
"""


def upgrade() -> None:
    op.execute("DROP VIEW payout_root_status")
    op.alter_column("payout_roots", "epoch", new_column_name="root_id")
    op.alter_column("payout_proofs", "epoch", new_column_name="root_id")
    op.alter_column("payout_claims", "epoch", new_column_name="root_id")
    op.add_column(
        "payout_claims",
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.execute("UPDATE payout_claims SET recipient = account")
    op.alter_column("payout_claims", "recipient", nullable=False)
    op.execute(ROOT_STATUS_V2)

    op.add_column("payout_funding", sa.Column("registered", sa.Boolean(), nullable=True))
    op.execute("UPDATE payout_funding SET registered = true")
    op.alter_column("payout_funding", "registered", nullable=False)

    op.alter_column("epoch_spends", "amount", new_column_name="charged")
    op.add_column("epoch_spends", sa.Column("asked", UINT256, nullable=True))
    op.execute("UPDATE epoch_spends SET asked = charged")
    op.alter_column("epoch_spends", "asked", nullable=False)
    op.create_table(
        "epoch_spend_skips",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("asked", UINT256, nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "tx_hash", "log_index"),
    )
    op.create_index(
        "ix_epoch_spend_skips_epoch", "epoch_spend_skips", ["chain_id", "epoch", "campaign_id"]
    )

    for column in ("max_spend_per_epoch", "previous_max_spend_per_epoch"):
        op.add_column(
            "campaigns_onchain",
            sa.Column(column, UINT256, nullable=False, server_default="0"),
        )
        op.alter_column("campaigns_onchain", column, server_default=None)
    op.add_column(
        "campaigns_onchain",
        sa.Column("max_spend_effective_epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.alter_column("campaigns_onchain", "max_spend_effective_epoch", server_default=None)

    op.create_table(
        "chain_config",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "contract", "event"),
    )
    op.execute(CAMPAIGN_MAX_SPEND)


def downgrade() -> None:
    op.execute("DROP VIEW campaign_max_spend")
    op.drop_table("chain_config")
    op.drop_column("campaigns_onchain", "max_spend_effective_epoch")
    op.drop_column("campaigns_onchain", "previous_max_spend_per_epoch")
    op.drop_column("campaigns_onchain", "max_spend_per_epoch")
    op.drop_index("ix_epoch_spend_skips_epoch", table_name="epoch_spend_skips")
    op.drop_table("epoch_spend_skips")
    op.drop_column("epoch_spends", "asked")
    op.alter_column("epoch_spends", "charged", new_column_name="amount")
    op.drop_column("payout_funding", "registered")
    op.execute("DROP VIEW payout_root_status")
    op.drop_column("payout_claims", "recipient")
    op.alter_column("payout_claims", "root_id", new_column_name="epoch")
    op.alter_column("payout_proofs", "root_id", new_column_name="epoch")
    op.alter_column("payout_roots", "root_id", new_column_name="epoch")
    op.execute(ROOT_STATUS_V1)
