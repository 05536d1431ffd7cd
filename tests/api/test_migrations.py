"""The one migration history builds exactly the tables the models describe."""

from __future__ import annotations

import psycopg
from alembic import command

import api.ads.models
import api.analytics.models
import api.campaigns.models
import api.publishers.models
import api.settlement.models
import api.tracking.models  # noqa: F401
import indexer.models  # noqa: F401
from migrations import alembic_config, libpq_url, upgrade


def test_migrations_match_the_models(database_url):
    upgrade(database_url)
    command.check(alembic_config(database_url))  # raises when a model and the schema differ


def test_day_partitions_are_not_schema_drift(database_url):
    """The writer and the scheduler add a partition per day; `alembic check` ignores them."""
    upgrade(database_url)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ad_events_p20261206 PARTITION OF ad_events"
            " FOR VALUES FROM ('2026-12-06') TO ('2026-12-07')"
        )
    command.check(alembic_config(database_url))


def test_migrations_go_down_and_up_again(database_url):
    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    upgrade(database_url)
    command.check(alembic_config(database_url))
