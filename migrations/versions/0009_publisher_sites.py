"""Publisher sites: the profile's website becomes the main site, more can be added and
verified; slots may name their site.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "publisher_sites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("publisher_id", sa.Uuid(), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("domain", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("main", sa.Boolean(), nullable=False),
        sa.Column("verified_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("verified_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["publisher_id"], ["publisher_profiles.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("publisher_id", "domain", name="uq_publisher_sites_domain"),
    )
    op.create_index(op.f("ix_publisher_sites_domain"), "publisher_sites", ["domain"])
    op.create_index(op.f("ix_publisher_sites_publisher_id"), "publisher_sites", ["publisher_id"])
    # every existing profile's website becomes its main site
    op.execute(
        """
        INSERT INTO publisher_sites (id, publisher_id, url, domain, category, main, created_at)
        SELECT gen_random_uuid(), id, website_url,
               regexp_replace(lower(split_part(split_part(website_url, '://', 2), '/', 1)),
                              '^www\\.|:[0-9]+$', '', 'g'),
               category, true, created_at
        FROM publisher_profiles
        """
    )
    op.add_column("ad_slots", sa.Column("site_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_ad_slots_site_id"), "ad_slots", ["site_id"])
    op.create_foreign_key(None, "ad_slots", "publisher_sites", ["site_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint("ad_slots_site_id_fkey", "ad_slots", type_="foreignkey")
    op.drop_index(op.f("ix_ad_slots_site_id"), table_name="ad_slots")
    op.drop_column("ad_slots", "site_id")
    op.drop_index(op.f("ix_publisher_sites_publisher_id"), table_name="publisher_sites")
    op.drop_index(op.f("ix_publisher_sites_domain"), table_name="publisher_sites")
    op.drop_table("publisher_sites")
