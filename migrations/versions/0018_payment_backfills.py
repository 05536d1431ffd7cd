"""The indexer follows the payment token by the payment wallets it knows: a table of wallets
whose history is still to be read, and the token's earlier rows under its new name.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_backfills",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sa.String(), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column("created_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "wallet"),
    )
    # the x402 projection reads the token's logs as `PaymentToken`, whatever its name
    op.execute("UPDATE chain_events SET contract = 'PaymentToken' WHERE contract = 'TestUSDC'")


def downgrade() -> None:
    op.execute("UPDATE chain_events SET contract = 'TestUSDC' WHERE contract = 'PaymentToken'")
    op.drop_table("payment_backfills")
