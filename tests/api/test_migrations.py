"""The one migration history builds exactly the tables the models describe."""

from __future__ import annotations

from alembic import command

import api.ads.models
import api.campaigns.models
import api.publishers.models
import api.settlement.models  # noqa: F401
import indexer.models  # noqa: F401
from migrations import alembic_config, upgrade


def test_migrations_match_the_models(database_url):
    upgrade(database_url)
    command.check(alembic_config(database_url))  # raises when a model and the schema differ


def test_migrations_go_down_and_up_again(database_url):
    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    upgrade(database_url)
    command.check(alembic_config(database_url))
